package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAlertSocketOriginScheme: the WebSocket's Origin must match the server's scheme as well as
// its host and port (issue 7, item 6); behind a trusted TLS proxy, https is the server's scheme.
func TestAlertSocketOriginScheme(t *testing.T) {
	t.Parallel()
	direct := newEnv(t, func(c *Config) { c.CORSOrigins = []string{"https://dash.example.com", "http://*.lab.example"} })
	proxied := newEnv(t, func(c *Config) { c.Edge.TrustedProxies = []string{"127.0.0.0/8"} })

	tests := []struct {
		name   string
		e      *env
		header http.Header
		want   int // 101: accepted
	}{
		{"own origin", direct, http.Header{"Origin": {"http://" + direct.g.Addr()}}, 101},
		{"own host, https", direct, http.Header{"Origin": {"https://" + direct.g.Addr()}}, 403},
		{"own host, other port", direct, http.Header{"Origin": {"http://127.0.0.1:1"}}, 403},
		{"own host, ws scheme", direct, http.Header{"Origin": {"ws://" + direct.g.Addr()}}, 403},
		{"forged X-Forwarded-Proto from an untrusted peer", direct, http.Header{"Origin": {"https://" + direct.g.Addr()}, "X-Forwarded-Proto": {"https"}}, 403},
		{"configured origin", direct, http.Header{"Origin": {"https://dash.example.com"}}, 101},
		{"configured origin, default port", direct, http.Header{"Origin": {"https://dash.example.com:443"}}, 403},
		{"configured origin, other scheme", direct, http.Header{"Origin": {"http://dash.example.com"}}, 403},
		{"configured pattern", direct, http.Header{"Origin": {"http://grafana.lab.example"}}, 101},
		{"configured pattern, other scheme", direct, http.Header{"Origin": {"https://grafana.lab.example"}}, 403},
		{"no origin (not a browser)", direct, nil, 101},
		{"TLS proxy: https origin", proxied, http.Header{"Origin": {"https://" + proxied.g.Addr()}, "X-Forwarded-Proto": {"https"}}, 101},
		{"TLS proxy: http origin", proxied, http.Header{"Origin": {"http://" + proxied.g.Addr()}, "X-Forwarded-Proto": {"https"}}, 403},
	}
	tokens := map[*env]string{direct: direct.adminToken(), proxied: proxied.adminToken()}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, res, err := dialWS(t, tt.e.wsURL("token="+tokens[tt.e]), tt.header) //nolint:bodyclose // websocket.Dial closes the handshake response's body itself
			if tt.want == 101 {
				if err != nil {
					t.Fatalf("dial with %v = %v (answer %v), want accepted", tt.header, err, statusOf(res))
				}
				if m := mustReadWS(t, conn); m.Type != "snapshot" {
					t.Errorf("first message = %+v, want a snapshot", m)
				}
				return
			}
			if err == nil || res == nil || res.StatusCode != tt.want {
				t.Fatalf("dial with %v = %v (answer %v), want %d", tt.header, err, statusOf(res), tt.want)
			}
			body, _ := io.ReadAll(res.Body)
			if !strings.Contains(string(body), "Origin") {
				t.Errorf("refusal body %q does not name the Origin", body)
			}
		})
	}
}
