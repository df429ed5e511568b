package ops_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestOpsServer(t *testing.T) {
	down := errors.New("connection refused")
	var fail bool
	srv := ops.NewServer("127.0.0.1:0", ops.NewRegistry(), map[string]ops.Check{
		"db": func(context.Context) error {
			if fail {
				return down
			}
			return nil
		},
	}, logging.New(io.Discard, logging.Config{Level: "info", Format: "json"}, "test"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Addr() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	base := "http://" + srv.Addr()
	if code, _ := testenv.Get(t, base+"/healthz"); code != 200 {
		t.Errorf("GET /healthz = %d, want 200", code)
	}
	if code, _ := testenv.Get(t, base+"/readyz"); code != 200 {
		t.Errorf("GET /readyz = %d, want 200", code)
	}
	fail = true
	if code, body := testenv.Get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "db: connection refused") {
		t.Errorf("GET /readyz with db down = %d %s, want 503 naming db", code, body)
	}
	if code, body := testenv.Get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics = %d, want 200 with runtime metrics", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
}

// startOps runs srv until the test ends and returns its base URL.
func startOps(t *testing.T, srv *ops.Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() after cancel = %v, want nil", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for srv.Addr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("ops server did not listen within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "http://" + srv.Addr()
}

// TestOpsPprof: /debug/pprof is not served unless enabled (OPS_PPROF), and serves the index,
// the named profiles and a short CPU profile once it is.
func TestOpsPprof(t *testing.T) {
	logger := logging.New(io.Discard, logging.Config{Level: "info", Format: "json"}, "test")

	off := startOps(t, ops.NewServer("127.0.0.1:0", ops.NewRegistry(), nil, logger))
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		if code, _ := testenv.Get(t, off+path); code != http.StatusNotFound {
			t.Errorf("GET %s without EnablePprof = %d, want 404", path, code)
		}
	}

	srv := ops.NewServer("127.0.0.1:0", ops.NewRegistry(), nil, logger)
	srv.EnablePprof()
	on := startOps(t, srv)
	if code, body := testenv.Get(t, on+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ with EnablePprof = %d, want 200 listing the profiles", code)
	}
	for _, path := range []string{"/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=0.1"} {
		if code, body := testenv.Get(t, on+path); code != http.StatusOK || body == "" {
			t.Errorf("GET %s with EnablePprof = %d (%d bytes), want 200 with a body", path, code, len(body))
		}
	}
	if code, _ := testenv.Get(t, on+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz with EnablePprof = %d, want 200", code)
	}
}
