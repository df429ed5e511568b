package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestLocalURL(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{":8080", "http://127.0.0.1:8080"},
		{"0.0.0.0:8080", "http://127.0.0.1:8080"},
		{"localhost:9101", "http://127.0.0.1:9101"},
		{"10.0.0.5:8080", "http://10.0.0.5:8080"},
		{"[::1]:8080", "http://[::1]:8080"},
	} {
		if got := localURL(tt.addr); got != tt.want {
			t.Errorf("localURL(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// pidOf trusts a pid file only while that process runs with the expected command line.
func TestPidOf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	self := write("self.pid", strconv.Itoa(os.Getpid())+"\n")
	me := filepath.Base(os.Args[0])
	for _, tt := range []struct {
		name, file, cmd string
		want            bool
	}{
		{"this process", self, me, true},
		{"another command line", self, "redis-server", false},
		{"missing file", filepath.Join(dir, "none.pid"), me, false},
		{"garbage", write("bad.pid", "12ab"), me, false},
		{"dead pid", write("dead.pid", "999999999"), me, false},
	} {
		if _, got := pidOf(tt.file, tt.cmd); got != tt.want {
			t.Errorf("%s: pidOf(%s, %q) ok = %v, want %v", tt.name, tt.file, tt.cmd, got, tt.want)
		}
	}
}

// isInfluxd18 tells the influxd 1.8.10 module's binary from any other.
func TestIsInfluxd18(t *testing.T) {
	bin, err := stack.InfluxdBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !isInfluxd18(bin, false) {
		t.Errorf("isInfluxd18(%s) = false, want true", bin)
	}
	if isInfluxd18(os.Args[0], false) {
		t.Errorf("isInfluxd18(the test binary) = true, want false")
	}
}

// ensurePostgres on a server that answers creates the URL's database, once.
func TestEnsurePostgresCreatesDatabase(t *testing.T) {
	server := os.Getenv("TEST_DATABASE_URL")
	if server == "" {
		server = testenv.DefaultPostgresURL
	}
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	name := "devstack_test_" + strings.ToLower(rand.Text()[:10])
	admin := *u
	admin.Path = "/postgres"
	conn, err := sql.Open("postgres", admin.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := conn.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
		conn.Close()
	})
	u.Path = "/" + name
	d := newDev(config{data: t.TempDir()})
	for i := range 2 {
		if err := d.ensurePostgres(context.Background(), u.String()); err != nil {
			t.Fatalf("ensurePostgres (call %d): %v", i+1, err)
		}
		var n int
		if err := conn.QueryRow("SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil || n != 1 {
			t.Fatalf("after ensurePostgres (call %d): %d databases named %s (%v), want 1", i+1, n, name, err)
		}
	}
}
