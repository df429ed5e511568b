package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// TestSessionsOnCluster runs the session lifecycle against Redis Cluster, where a session
// (keyed by its token) and its user's index land in different slots: login, a password change
// that ends the other sessions, logout, and the deletion of a user ending the rest.
func TestSessionsOnCluster(t *testing.T) {
	t.Parallel()
	e, _ := newClusterEnv(t, nil)

	admin := e.adminToken()
	// The pipeline page reads every master's INFO.
	r := e.do(req{method: "GET", path: "/api/v1/pipeline", auth: bearer(admin)})
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/pipeline on a cluster = %s, want 200", r)
	}
	view := decode[pipelineView](t, r)
	redisInfo := view.Stores["redis"]
	masters := 0
	for k := range redisInfo.Info {
		if strings.HasSuffix(k, " used_memory_human") {
			masters++
		}
	}
	if !redisInfo.OK || masters != 3 {
		t.Errorf("pipeline view's redis = %+v, want the INFO of 3 masters", redisInfo)
	}
	first := e.userToken(admin, "alice", "viewer")
	second := e.login("alice", "password-of-user")
	third := e.login("alice", "password-of-user")
	for _, tok := range []string{first, second, third} {
		if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(tok)}); r.status != http.StatusOK {
			t.Fatalf("GET /api/v1/agents with a fresh session = %s, want 200", r)
		}
	}
	r = e.do(req{method: "POST", path: "/api/v1/auth/password", auth: bearer(first),
		body: map[string]string{"current_password": "password-of-user", "new_password": "another-password"}})
	if r.status != http.StatusNoContent {
		t.Fatalf("changing the password = %s, want 204", r)
	}
	for tok, want := range map[string]int{first: 200, second: 401, third: 401} {
		if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(tok)}); r.status != want {
			t.Errorf("a session after the password change = %s, want %d", r, want)
		}
	}
	fourth := e.login("alice", "another-password")
	if r := e.do(req{method: "POST", path: "/api/v1/auth/logout", auth: bearer(fourth)}); r.status != http.StatusNoContent {
		t.Fatalf("logout = %s, want 204", r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(fourth)}); r.status != http.StatusUnauthorized {
		t.Errorf("a session after logout = %s, want 401", r)
	}
	e.deleteUser(admin, "alice", first)
}
