package stack_test

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

func TestPrivateRedisKeepsAcknowledgedWritesAcrossSIGKILL(t *testing.T) {
	r, err := stack.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	cfg, err := c.ConfigGet(ctx, "appendonly").Result()
	if err != nil || cfg["appendonly"] != "yes" {
		t.Fatalf("CONFIG GET appendonly = %v, %v; want yes", cfg, err)
	}
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []string{"k", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // appendfsync everysec: the write is on disk after a second
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.XLen(ctx, "s").Result(); err != nil || n != 1 {
		t.Errorf("XLEN s after SIGKILL and restart = %d, %v; want 1", n, err)
	}
}

func TestPrivatePostgresStopsAndStarts(t *testing.T) {
	if _, err := stack.PostgresBinDir(); err != nil {
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("", "agentmonitor-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p, err := stack.StartPostgres(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if err := p.CreateDatabase("faults"); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", p.URL("faults"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (v int); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err == nil {
		t.Fatal("Ping with the cluster stopped = nil, want an error")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRow(`SELECT v FROM t`).Scan(&v); err != nil || v != 1 {
		t.Errorf("SELECT v after restart = %d, %v; want 1", v, err)
	}
}
