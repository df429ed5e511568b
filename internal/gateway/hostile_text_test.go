package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestTextThatPostgresRefusesIs400 sends NUL bytes and invalid UTF-8 wherever text reaches
// PostgreSQL: each is a 400 naming the field, never a 5xx (issue 7, item 5).
func TestTextThatPostgresRefusesIs400(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	agent := e.register(admin, "text-agent")

	tests := []struct {
		name      string
		r         req
		wantInMsg string
	}{
		{"login username", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"adm\u0000in","password":"whatever-pw"}`}, `"/username"`},
		{"login password", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","password":"x\u0000y-password"}`}, `"/password"`},
		{"login raw invalid UTF-8", req{method: "POST", path: "/api/v1/auth/login", body: []byte("{\"username\":\"adm\xffin\",\"password\":\"whatever-pw\"}")}, "UTF-8"},
		{"login escaped lone surrogate", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"adm\ud800in","password":"whatever-pw"}`}, `"/username"`},
		{"create user", req{method: "POST", path: "/api/v1/users", auth: bearer(admin), body: `{"username":"bob\u0000","password":"long-enough-pw","role":"viewer"}`}, `"/username"`},
		{"delete user", req{method: "DELETE", path: "/api/v1/users/bob%00", auth: bearer(admin)}, `"username"`},
		{"delete user invalid UTF-8", req{method: "DELETE", path: "/api/v1/users/bob%ff", auth: bearer(admin)}, "UTF-8"},
		{"agent name", req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: `{"name":"web\u0000"}`}, `"/name"`},
		{"label key", req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: `{"name":"web","labels":{"e\u0000nv":"x"}}`}, `"/labels/e`},
		{"label value", req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: `{"name":"web","labels":{"env":"x\u0000"}}`}, `"/labels/env"`},
		{"agent id", req{method: "GET", path: "/api/v1/agents/%00", auth: bearer(admin)}, `"id"`},
		{"rule id", req{method: "GET", path: "/api/v1/alert-rules/a%00b", auth: bearer(admin)}, `"id"`},
		{"silence id", req{method: "DELETE", path: "/api/v1/silences/a%00b", auth: bearer(admin)}, `"id"`},
		{"channel id", req{method: "GET", path: "/api/v1/notification-channels/a%00b", auth: bearer(admin)}, `"id"`},
		{"query parameter", req{method: "GET", path: "/api/v1/alerts/history?agent=a%00b", auth: bearer(admin)}, `"agent"`},
		{"query parameter invalid UTF-8", req{method: "GET", path: "/api/v1/alerts?rule=%ff", auth: bearer(admin)}, `"rule"`},
		{"malformed query escape", req{method: "GET", path: "/api/v1/alerts?agent=%zz", auth: bearer(admin)}, "malformed query string"},
		{"metric query", req{method: "GET", path: "/api/v1/agents/" + agent.ID + "/metrics/latest?metric=cpu%00", auth: bearer(admin)}, `"metric"`},
		{"rule name", req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(admin), body: `{"name":"r\u0000"}`}, `"/name"`},
		{"silence comment", req{method: "POST", path: "/api/v1/silences", auth: bearer(admin), body: `{"comment":"\u0000"}`}, `"/comment"`},
		{"channel name", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(admin), body: `{"name":"\u0000"}`}, `"/name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.r)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s %s = %s, want 400", tt.r.method, tt.r.path, r)
			}
			if msg := r.errorMessage(t); !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("%s %s: error %q does not name %s", tt.r.method, tt.r.path, msg, tt.wantInMsg)
			}
		})
	}
	// The admin can still log in: nothing above counted against it or broke the store.
	e.adminToken()
}

// TestPostgresTextErrorIs400 checks the safety net: PostgreSQL refusing text (SQLSTATE 22021) is
// answered 400 even when it comes wrapped in a 503, as a store failure would be.
func TestPostgresTextErrorIs400(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// A NUL that no edge check sees: sent straight to the store, as a missed field would be.
	_, _, err := e.g.users.Credentials(t.Context(), "nul\x00user")
	if err == nil {
		t.Fatal("Credentials with a NUL byte succeeded; PostgreSQL should refuse it")
	}
	for _, wrapped := range []error{err, unavailable("user store", err)} {
		status, body, _, internal := answer(wrapped)
		if status != http.StatusBadRequest || internal || !strings.Contains(body.Error, "NUL") {
			t.Errorf("answer(%v) = %d %q internal=%v, want 400 naming NUL", wrapped, status, body.Error, internal)
		}
	}
}

// TestInvisibleCharactersInNames refuses names that hide or reorder what operators read:
// bidirectional overrides and isolates, zero-width characters, the BOM, control characters.
func TestInvisibleCharactersInNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	bad := []struct{ name, s string }{
		{"RLO", "\u202Egnp.exe"},
		{"LRE", "a\u202Ab"},
		{"PDF", "a\u202Cb"},
		{"LRO", "a\u202Db"},
		{"LRI", "a\u2066b"},
		{"PDI", "a\u2069b"},
		{"ZWSP", "a\u200Bb"},
		{"ZWNJ", "a\u200Cb"},
		{"ZWJ", "a\u200Db"},
		{"LRM", "a\u200Eb"},
		{"RLM", "a\u200Fb"},
		{"BOM", "\uFEFFweb"},
		{"soft hyphen", "a\u00ADb"},
		{"ESC", "a\u001b[31mb"},
		{"tab", "a\tb"},
		{"C1 NEL", "a\u0085b"},
		{"line separator", "a\u2028b"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			cases := []struct {
				what string
				r    req
				want string
			}{
				{"agent name", req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: map[string]any{"name": tt.s}}, "name must not contain control characters"},
				{"label value", req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: map[string]any{"name": "web", "labels": map[string]string{"env": tt.s}}}, `labels: value of "env" must not contain`},
				{"label key", req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: map[string]any{"name": "web", "labels": map[string]string{tt.s: "x"}}}, "labels: key"},
				{"username", req{method: "POST", path: "/api/v1/users", auth: bearer(admin), body: map[string]string{"username": tt.s, "password": "long-enough-pw", "role": "viewer"}}, "username"},
			}
			for _, c := range cases {
				e.refused(t, fmt.Sprintf("%s %q", c.what, tt.s), c.r, http.StatusBadRequest, c.want)
			}
		})
	}
	// Names in any script, with emoji and inner spaces, are fine.
	for _, ok := range []string{"Zoë's laptop", "日本のサーバー", "сервер-1", "web ☃ 01"} {
		r := e.do(req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: map[string]any{"name": ok, "labels": map[string]string{"owner": ok}}})
		if r.status != http.StatusCreated {
			t.Errorf("agent name %q = %s, want 201", ok, r)
		}
	}
}
