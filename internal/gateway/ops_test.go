package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// TestOpsListener: with OPS_ADDR the gateway serves /healthz, /readyz and /metrics on a second
// listener, and /debug/pprof there only with OPS_PPROF; the API listener never serves profiles.
func TestOpsListener(t *testing.T) {
	t.Run("pprof", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.OpsAddr, c.Pprof = "127.0.0.1:0", true })
		ops := "http://" + e.g.OpsAddr()
		if e.g.OpsAddr() == "" {
			t.Fatal("OpsAddr() is empty with OPS_ADDR set")
		}
		if code, body := testenv.Get(t, ops+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
			t.Errorf("ops GET /debug/pprof/ = %d, want 200 listing the profiles", code)
		}
		if code, _ := testenv.Get(t, ops+"/debug/pprof/heap"); code != http.StatusOK {
			t.Errorf("ops GET /debug/pprof/heap = %d, want 200", code)
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, _ := testenv.Get(t, ops+path); code != http.StatusOK {
				t.Errorf("ops GET %s = %d, want 200", path, code)
			}
		}
		if code, body := testenv.Get(t, ops+"/metrics"); code != http.StatusOK || !strings.Contains(body, "agentmonitor_gateway_") {
			t.Errorf("ops GET /metrics = %d, want 200 with the gateway's metrics", code)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
			if code, _ := testenv.Get(t, e.url+path); code != http.StatusNotFound {
				t.Errorf("API GET %s = %d, want 404: profiles are never on the API listener", path, code)
			}
		}
	})
	t.Run("no pprof", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.OpsAddr = "127.0.0.1:0" })
		ops := "http://" + e.g.OpsAddr()
		if code, _ := testenv.Get(t, ops+"/debug/pprof/"); code != http.StatusNotFound {
			t.Errorf("ops GET /debug/pprof/ without OPS_PPROF = %d, want 404", code)
		}
		if code, _ := testenv.Get(t, ops+"/healthz"); code != http.StatusOK {
			t.Errorf("ops GET /healthz = %d, want 200", code)
		}
	})
	t.Run("default", func(t *testing.T) {
		e := newEnv(t, nil)
		if got := e.g.OpsAddr(); got != "" {
			t.Errorf("OpsAddr() without OPS_ADDR = %q, want no ops listener", got)
		}
		if code, _ := testenv.Get(t, e.url+"/debug/pprof/"); code != http.StatusNotFound {
			t.Errorf("API GET /debug/pprof/ = %d, want 404", code)
		}
	})
}
