package stack_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
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
	cfg, err := c.ConfigGet(ctx, "append*").Result()
	if err != nil || cfg["appendonly"] != "yes" || cfg["appendfsync"] != "always" {
		t.Fatalf("CONFIG GET append* = %v, %v; want appendonly yes, appendfsync always", cfg, err)
	}
	// Kill right after the last answer: with appendfsync always every answered write is on disk.
	const n = 500
	for i := range n {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"k", i}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.XLen(ctx, "s").Result(); err != nil || got != n {
		t.Errorf("XLEN s after SIGKILL and restart = %d, %v; want %d", got, err, n)
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

// TestPrivateClusterFailsOver starts a private cluster, finds the master of a key, SIGKILLs it
// and waits for MasterOf to name its promoted replica; the killed node then rejoins.
func TestPrivateClusterFailsOver(t *testing.T) {
	ctx := context.Background()
	c, err := stack.StartCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	key := "metrics:{0}"
	master, err := c.MasterOf(ctx, key)
	if err != nil || c.Node(master) == nil {
		t.Fatalf("MasterOf(%q) = %q, %v; want one of %v", key, master, err, c.Addrs())
	}
	if err := c.Node(master).Kill(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() string {
		now, err := c.MasterOf(ctx, key)
		if err != nil || now == master || c.Node(now) == nil {
			return fmt.Sprintf("MasterOf(%q) = %q, %v; want the promoted replica of the killed %s", key, now, err, master)
		}
		return ""
	})
	if err := c.Node(master).Start(); err != nil {
		t.Fatalf("restarting the killed node: %v", err)
	}
	if err := stack.WaitCluster(ctx, c.Addrs(), time.Minute); err != nil {
		t.Errorf("the cluster is not healthy again after the killed node rejoined: %v", err)
	}
}
