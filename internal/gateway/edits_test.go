package gateway

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestPatchAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "web-1")
	e.register(admin, "web-2")
	viewer := e.userToken(admin, "vera", "viewer")
	path := "/api/v1/agents/" + a.ID

	r := e.do(req{method: "PATCH", path: path, auth: bearer(admin), body: map[string]any{"labels": map[string]string{"env": "prod", "team": "web"}}})
	if r.status != http.StatusOK {
		t.Fatalf("PATCH labels = %s, want 200", r)
	}
	got := decode[agentView](t, r)
	if got.Name != "web-1" || got.Labels["env"] != "prod" || got.Labels["team"] != "web" || len(got.Labels) != 2 {
		t.Errorf("PATCH labels answer = %+v, want web-1 with env=prod team=web", got)
	}
	r = e.do(req{method: "PATCH", path: path, auth: bearer(admin), body: `{"name":"web-1a"}`})
	if got := decode[agentView](t, r); r.status != http.StatusOK || got.Name != "web-1a" || got.Labels["env"] != "prod" {
		t.Errorf("PATCH name = %s, want web-1a keeping its labels", r)
	}
	if got := decode[agentView](t, e.do(req{method: "GET", path: path, auth: bearer(admin)})); got.Name != "web-1a" || got.Labels["team"] != "web" {
		t.Errorf("GET after PATCH = %+v", got)
	}
	// The key still works: an edit is not a new registration.
	if r := e.do(req{method: "POST", path: path + "/metrics", auth: bearer(a.APIKey), body: `{"points":[{"measurement":"m","fields":{"v":1}}]}`}); r.status != http.StatusNoContent {
		t.Errorf("ingest after PATCH = %s, want 204", r)
	}

	for _, tc := range []struct {
		name string
		auth string
		body string
		want int
		msg  string
	}{
		{"empty", admin, `{}`, 400, "nothing to change"},
		{"blank name", admin, `{"name":""}`, 400, "name is required"},
		{"bad label key", admin, `{"labels":{"1x":"a"}}`, 400, "labels: key"},
		{"unknown member", admin, `{"title":"x"}`, 400, "title"},
		{"taken name", admin, `{"name":"web-2"}`, 409, "already exists"},
		{"viewer", viewer, `{"name":"x"}`, 403, ""},
	} {
		r := e.do(req{method: "PATCH", path: path, auth: bearer(tc.auth), body: tc.body})
		if r.status != tc.want || (tc.msg != "" && !strings.Contains(r.errorMessage(t), tc.msg)) {
			t.Errorf("%s: PATCH %s = %s, want %d naming %q", tc.name, tc.body, r, tc.want, tc.msg)
		}
	}
	if r := e.do(req{method: "PATCH", path: "/api/v1/agents/00000000-0000-4000-8000-000000000000", auth: bearer(admin), body: `{"name":"x"}`}); r.status != 404 {
		t.Errorf("PATCH unknown agent = %s, want 404", r)
	}
	if got := decode[agentView](t, e.do(req{method: "GET", path: path, auth: bearer(admin)})); got.Name != "web-1a" || len(got.Labels) != 2 {
		t.Errorf("refused PATCHes changed the agent: %+v", got)
	}
	if got, want := e.auditActions(admin, "agent.update"), []string{"admin agent.update", "admin agent.update"}; !slices.Equal(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
	entries := decode[auditList](t, e.do(req{method: "GET", path: "/api/v1/audit?limit=1", auth: bearer(admin)})).Entries
	if len(entries) != 1 || entries[0].Target != a.ID || entries[0].Details["previous_name"] != "web-1" || entries[0].Details["name"] != "web-1a" {
		t.Errorf("newest audit entry = %+v, want agent.update of %s from web-1 to web-1a", entries, a.ID)
	}
}

func TestPatchUserRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	olga := e.userToken(admin, "olga", "operator")
	viewer := e.userToken(admin, "vera", "viewer")

	if r := e.do(req{method: "PATCH", path: "/api/v1/users/olga", auth: bearer(viewer), body: `{"role":"admin"}`}); r.status != 403 {
		t.Errorf("viewer PATCH user = %s, want 403", r)
	}
	if r := e.do(req{method: "PATCH", path: "/api/v1/users/olga", auth: bearer(olga), body: `{"role":"admin"}`}); r.status != 403 {
		t.Errorf("operator promoting themself = %s, want 403", r)
	}
	r := e.do(req{method: "PATCH", path: "/api/v1/users/olga", auth: bearer(admin), body: `{"role":"viewer"}`})
	if got := decode[userView](t, r); r.status != 200 || got.Role != "viewer" || got.Username != "olga" {
		t.Fatalf("PATCH role = %s, want 200 with role viewer", r)
	}
	// olga's session held the operator role: it ended; her new one is a viewer's.
	if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(olga)}); r.status != http.StatusUnauthorized {
		t.Errorf("session from before the role change = %s, want 401", r)
	}
	olga = e.login("olga", "password-of-user")
	if r := e.do(req{method: "POST", path: "/api/v1/agents", auth: bearer(olga), body: `{"name":"x"}`}); r.status != 403 {
		t.Errorf("demoted user registering an agent = %s, want 403", r)
	}
	for _, tc := range []struct{ path, body string }{
		{"/api/v1/users/olga", `{"role":"root"}`},
		{"/api/v1/users/olga", `{}`},
		{"/api/v1/users/olga", `{"role":"admin","x":1}`},
	} {
		if r := e.do(req{method: "PATCH", path: tc.path, auth: bearer(admin), body: tc.body}); r.status != 400 {
			t.Errorf("PATCH %s %s = %s, want 400", tc.path, tc.body, r)
		}
	}
	if r := e.do(req{method: "PATCH", path: "/api/v1/users/nobody", auth: bearer(admin), body: `{"role":"viewer"}`}); r.status != 404 {
		t.Errorf("PATCH unknown user = %s, want 404", r)
	}
	// The only admin cannot demote themself.
	if r := e.do(req{method: "PATCH", path: "/api/v1/users/admin", auth: bearer(admin), body: `{"role":"operator"}`}); r.status != 409 {
		t.Errorf("demoting the last admin = %s, want 409", r)
	}
	if got, want := e.auditActions(admin, "user.update"), []string{"admin user.update"}; !slices.Equal(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
	entries := decode[auditList](t, e.do(req{method: "GET", path: "/api/v1/audit?limit=1", auth: bearer(admin)})).Entries
	if len(entries) != 1 || entries[0].Target != "olga" || entries[0].Details["role"] != "viewer" || entries[0].Details["previous_role"] != "operator" {
		t.Errorf("newest audit entry = %+v, want user.update of olga from operator to viewer", entries)
	}
}

func TestChangeOwnPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	const old = "password-of-user"
	s1 := e.userToken(admin, "vera", "viewer")
	s2 := e.login("vera", old)
	change := func(token, cur, next string) resp {
		return e.do(req{method: "POST", path: "/api/v1/auth/password", auth: bearer(token),
			body: map[string]string{"current_password": cur, "new_password": next}})
	}
	for _, tc := range []struct {
		cur, next string
		want      int
	}{
		{"wrong-password", "new-password-1", 403},
		{"", "new-password-1", 400},
		{old, "short", 400},
		{old, old, 400},
	} {
		if r := change(s1, tc.cur, tc.next); r.status != tc.want {
			t.Errorf("change(%q -> %q) = %s, want %d", tc.cur, tc.next, r, tc.want)
		}
	}
	if r := e.do(req{method: "POST", path: "/api/v1/auth/password", body: `{"current_password":"x","new_password":"yyyyyyyyyy"}`}); r.status != 401 {
		t.Errorf("change without a session = %s, want 401", r)
	}
	if r := change(s1, old, "new-password-1"); r.status != http.StatusNoContent {
		t.Fatalf("change = %s, want 204", r)
	}
	// The session that changed it stays; the other one ended.
	if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(s1)}); r.status != 200 {
		t.Errorf("the changing session afterwards = %s, want 200", r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(s2)}); r.status != 401 {
		t.Errorf("another session afterwards = %s, want 401", r)
	}
	if r := e.do(req{method: "POST", path: "/api/v1/auth/login", body: map[string]string{"username": "vera", "password": old}}); r.status != 401 {
		t.Errorf("login with the old password = %s, want 401", r)
	}
	e.login("vera", "new-password-1")
	if got, want := e.auditActions(admin, "user.change_password"), []string{"vera user.change_password"}; !slices.Equal(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
}

// TestAuditRecordsClientAddress: audit rows carry the client's address: the TCP peer, and
// behind a trusted proxy the address its X-Forwarded-For names, never a forged one.
func TestAuditRecordsClientAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Edge.TrustedProxies = []string{"127.0.0.2"} })
	admin := e.adminToken()
	create := func(from, name, xff string) {
		t.Helper()
		hr, err := http.NewRequest(http.MethodPost, e.url+"/api/v1/agents", strings.NewReader(`{"name":"`+name+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", bearer(admin))
		if xff != "" {
			hr.Header.Set("X-Forwarded-For", xff)
		}
		res, err := clientFrom(from).Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("creating %s = %d, want 201", name, res.StatusCode)
		}
	}
	create("127.0.0.1", "direct", "")
	create("127.0.0.1", "forged", "203.0.113.9")   // not a trusted proxy: its header is ignored
	create("127.0.0.2", "proxied", "198.51.100.7") // the trusted proxy names the client
	want := map[string]string{"direct": "127.0.0.1", "forged": "127.0.0.1", "proxied": "198.51.100.7"}
	got := map[string]string{}
	for _, en := range decode[auditList](t, e.do(req{method: "GET", path: "/api/v1/audit?limit=100", auth: bearer(admin)})).Entries {
		if en.Action == "agent.create" {
			got[en.Details["name"].(string)] = en.ClientAddr
		}
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("audit client_addr of %s = %q, want %q", name, got[name], w)
		}
	}
}
