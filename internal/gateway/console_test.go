package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/console"
)

// TestConsoleServed: the gateway serves the console at / and /assets/{file} with the console's own
// CSP (the API's "default-src 'none'" would block its scripts) and caching, without a session.
func TestConsoleServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		path, wantType string
		wantStatus     int
	}{
		{"/", "text/html; charset=utf-8", 200},
		{"/assets/app.js", "text/javascript; charset=utf-8", 200},
		{"/assets/vendor/uPlot.esm.js", "text/javascript; charset=utf-8", 200},
		{"/assets/vendor/uPlot.min.css", "text/css; charset=utf-8", 200},
		{"/assets/vendor/app.js", "text/plain; charset=utf-8", 404},
		{"/assets/style.css", "text/css; charset=utf-8", 200},
		{"/assets/missing.js", "text/plain; charset=utf-8", 404},
	}
	for _, tt := range tests {
		r := e.do(req{method: "GET", path: tt.path, headers: map[string]string{"Accept-Encoding": "gzip"}})
		if r.status != tt.wantStatus || r.header.Get("Content-Type") != tt.wantType {
			t.Errorf("GET %s = %d %q, want %d %q", tt.path, r.status, r.header.Get("Content-Type"), tt.wantStatus, tt.wantType)
		}
		if csp := r.header.Get("Content-Security-Policy"); csp != console.CSP {
			t.Errorf("GET %s: CSP %q, want the console's %q", tt.path, csp, console.CSP)
		}
		if tt.wantStatus == 200 && (r.header.Get("Cache-Control") != "no-cache" || r.header.Get("ETag") == "") {
			t.Errorf("GET %s: Cache-Control %q, ETag %q; want no-cache and an ETag", tt.path, r.header.Get("Cache-Control"), r.header.Get("ETag"))
		}
		if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: the gateway's security headers are missing: %v", tt.path, r.header)
		}
	}
	// The API keeps its own policy.
	if r := e.do(req{method: "GET", path: "/api/v1/openapi.yaml"}); !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("GET /api/v1/openapi.yaml: CSP %q, want the API's default-src 'none'", r.header.Get("Content-Security-Policy"))
	}
	if r := e.do(req{method: "POST", path: "/"}); r.status != http.StatusMethodNotAllowed && r.status != http.StatusNotFound {
		t.Errorf("POST / = %s, want 405 or 404", r)
	}
}
