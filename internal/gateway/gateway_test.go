package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

const testAdminPassword = "admin-password-1"

// env is one gateway running on 127.0.0.1:0 against its own PostgreSQL database and Redis prefix.
type env struct {
	t      testing.TB
	g      *Gateway
	url    string
	rdb    *redis.Client
	prefix string
	db     *sqlx.DB
	dbURL  string
	cfg    Config
}

func redisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return testenv.DefaultRedisURL
}

// testConfig is DefaultConfig made fast and isolated for one test.
func testConfig(prefix, dbURL string) Config {
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Redis.URL = redisURL()
	cfg.Redis.Prefix = prefix
	cfg.Postgres.URL = dbURL
	// Not the default 127.0.0.1:8086: an InfluxDB a developer runs there (go tool task up) would
	// seed the field-type registry with its own data. Tests that need one start their own.
	cfg.Influx.URL = "http://127.0.0.1:1"
	cfg.AdminPassword = testAdminPassword
	cfg.BcryptCost = bcrypt.MinCost
	cfg.Publish.Shards = 2
	cfg.Backlog.Interval = 20 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	// Tests read what they have just written; TestLatestReadCache covers the read cache.
	cfg.LatestReadMaxAge = 0
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newEnv starts a gateway with its own database and key prefix; mutate adjusts the config.
func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	e := startEnv(t, redisURL(), prefix, mutate)
	e.rdb = rdb
	return e
}

// newClusterEnv is newEnv on the shared Redis Cluster (testenv.RedisCluster), whose client it
// returns beside the env (e.rdb is nil).
func newClusterEnv(t testing.TB, mutate func(*Config)) (*env, *redis.ClusterClient) {
	t.Helper()
	rdb, prefix := testenv.RedisCluster(t)
	return startEnv(t, testenv.RedisClusterURL(), prefix, mutate), rdb
}

// startEnv starts a gateway on the Redis at redisURL with its keys under prefix, and with a
// database of its own; mutate adjusts the config.
func startEnv(t testing.TB, redisURL, prefix string, mutate func(*Config)) *env {
	t.Helper()
	db, dbURL := testenv.Postgres(t)
	cfg := testConfig(prefix, dbURL)
	cfg.Redis.URL = redisURL
	if mutate != nil {
		mutate(&cfg)
	}
	e := &env{t: t, prefix: prefix, db: db, dbURL: dbURL, cfg: cfg}
	e.g, e.url = startGateway(t, cfg)
	return e
}

// startGateway runs New and Run for cfg and stops the gateway in t.Cleanup.
func startGateway(t testing.TB, cfg Config) (*Gateway, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g, err := New(ctx, cfg, testLogger(t))
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for g.Addr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("gateway did not start listening within 5s")
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return g, "http://" + g.Addr()
}

// req describes one HTTP request of a test.
type req struct {
	method, path string
	auth         string // full Authorization header value
	body         any    // []byte or string sent as is; anything else as JSON
	contentType  string // default application/json when body is set
	headers      map[string]string
}

// resp is an answer read in full.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// errorMessage returns the "error" member of an error answer.
func (r resp) errorMessage(t testing.TB) string {
	t.Helper()
	var eb struct {
		Error   string   `json:"error"`
		Details []string `json:"details"`
	}
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error == "" {
		t.Fatalf("answer %d is not an error body {\"error\": ...}: %q (%v)", r.status, r.body, err)
	}
	return eb.Error
}

// refused does r and checks that the answer has status and an error message containing msg,
// naming the request what in failures; it returns the answer.
func (e *env) refused(t testing.TB, what string, r req, status int, msg string) resp {
	t.Helper()
	got := e.do(r)
	if got.status != status {
		t.Errorf("%s = %s, want %d", what, got, status)
		return got
	}
	if m := got.errorMessage(t); !strings.Contains(m, msg) {
		t.Errorf("%s: error %q, want it to contain %q", what, m, msg)
	}
	return got
}

func (e *env) do(r req) resp {
	e.t.Helper()
	return doHTTP(e.t, e.url, r)
}

func doHTTP(t testing.TB, base string, r req) resp {
	t.Helper()
	var body io.Reader
	ct := r.contentType
	switch b := r.body.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(b)
	case string:
		body = strings.NewReader(b)
	case io.Reader:
		body = b // no Content-Length: sent chunked
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encoding request body: %v", err)
		}
		body = bytes.NewReader(j)
	}
	if body != nil && ct == "" {
		ct = "application/json"
	}
	hr, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	if ct != "" {
		hr.Header.Set("Content-Type", ct)
	}
	if r.auth != "" {
		hr.Header.Set("Authorization", r.auth)
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading answer of %s %s: %v", r.method, r.path, err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// serve runs one request through the gateway's handler in the calling goroutine, for tests that
// change the gateway's parts first.
func (e *env) serve(r req) resp {
	e.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case []byte:
		body = bytes.NewReader(b)
	case string:
		body = strings.NewReader(b)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	if r.auth != "" {
		hr.Header.Set("Authorization", r.auth)
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.g.Handler().ServeHTTP(rec, hr)
	return resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func decode[T any](t testing.TB, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding answer %s: %v", r, err)
	}
	return v
}

func bearer(token string) string { return "Bearer " + token }

// login logs in and returns the session token.
func (e *env) login(username, password string) string {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/api/v1/auth/login", body: map[string]string{"username": username, "password": password}})
	if r.status != http.StatusOK {
		e.t.Fatalf("login %s = %s, want 200", username, r)
	}
	return decode[struct {
		Token string `json:"token"`
	}](e.t, r).Token
}

func (e *env) adminToken() string {
	e.t.Helper()
	return e.login("admin", testAdminPassword)
}

// userToken creates a user with role and returns a session token of it.
func (e *env) userToken(admin, username, role string) string {
	e.t.Helper()
	const pw = "password-of-" + "user"
	r := e.do(req{method: "POST", path: "/api/v1/users", auth: bearer(admin), body: map[string]string{"username": username, "password": pw, "role": role}})
	if r.status != http.StatusCreated {
		e.t.Fatalf("creating user %s = %s, want 201", username, r)
	}
	return e.login(username, pw)
}

// deleteUser deletes username as admin and checks that session, one of that user's sessions, is
// refused at once after: deleting a user ends its sessions.
func (e *env) deleteUser(admin, username, session string) {
	e.t.Helper()
	if r := e.do(req{method: "DELETE", path: "/api/v1/users/" + username, auth: bearer(admin)}); r.status != http.StatusNoContent {
		e.t.Fatalf("deleting %s = %s, want 204", username, r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(session)}); r.status != http.StatusUnauthorized {
		e.t.Errorf("a session of %s after deleting %s = %s, want 401", username, username, r)
	}
}

type registered struct {
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	APIKey string            `json:"api_key"`
}

// register registers an agent and returns its id and key.
func (e *env) register(token, name string) registered {
	e.t.Helper()
	r := e.do(req{method: "POST", path: "/api/v1/agents", auth: bearer(token), body: map[string]any{"name": name, "labels": map[string]string{"env": "test"}}})
	if r.status != http.StatusCreated {
		e.t.Fatalf("registering agent %s = %s, want 201", name, r)
	}
	return decode[registered](e.t, r)
}

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)

	r := e.do(req{method: "POST", path: "/api/v1/auth/login", body: map[string]string{"username": "admin", "password": testAdminPassword}})
	if r.status != http.StatusOK {
		t.Fatalf("login = %s, want 200", r)
	}
	lr := decode[struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
		Role      string    `json:"role"`
	}](t, r)
	if !strings.HasPrefix(lr.Token, sessionTokenPrefix) || lr.Role != "admin" {
		t.Errorf("login answer = %+v, want an ams_ token and role admin", lr)
	}
	if d := time.Until(lr.ExpiresAt); d < 11*time.Hour || d > 13*time.Hour {
		t.Errorf("expires_at %v is %v from now, want about SESSION_TTL (12h)", lr.ExpiresAt, d)
	}
	// Only the hash of the token is stored.
	keys, err := e.rdb.Keys(context.Background(), e.prefix+"session:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != e.prefix+"session:"+hashToken(lr.Token) {
		t.Errorf("session keys = %v, want one under the token's sha256", keys)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(lr.Token)}); r.status != http.StatusOK {
		t.Errorf("GET /api/v1/agents with the token = %s, want 200", r)
	}

	tests := []struct {
		name string
		r    req
		want int
		msg  string
	}{
		{"wrong password", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","password":"wrong-password"}`}, 401, "invalid username or password"},
		{"unknown user", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"nobody","password":"wrong-password"}`}, 401, "invalid username or password"},
		{"unknown key", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","password":"x","remember":true}`}, 400, `unknown field "/remember"`},
		{"duplicate key", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","username":"root","password":"x"}`}, 400, `duplicate field`},
		{"trailing data", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","password":"x"} {}`}, 400, "trailing data"},
		{"invalid UTF-8", req{method: "POST", path: "/api/v1/auth/login", body: "{\"username\":\"adm\xffin\",\"password\":\"x\"}"}, 400, `"/username" (byte 16): invalid UTF-8`},
		{"case-folded key", req{method: "POST", path: "/api/v1/auth/login", body: `{"Username":"admin","password":"x"}`}, 400, `unknown field "/Username"`},
		{"wrong type", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":1,"password":"x"}`}, 400, `"/username"`},
		{"not JSON", req{method: "POST", path: "/api/v1/auth/login", body: `username=admin`, contentType: "application/x-www-form-urlencoded"}, 415, "Content-Type must be application/json"},
		{"missing password", req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin"}`}, 400, "password are required"},
		{"no token", req{method: "GET", path: "/api/v1/agents"}, 401, "missing session token"},
		{"garbage token", req{method: "GET", path: "/api/v1/agents", auth: "Bearer nonsense"}, 401, "invalid or expired"},
		{"unknown token", req{method: "GET", path: "/api/v1/agents", auth: "Bearer ams_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 401, "invalid or expired"},
		{"agent key as session", req{method: "GET", path: "/api/v1/agents", auth: "Bearer amk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 401, "invalid or expired"},
		{"basic auth", req{method: "GET", path: "/api/v1/agents", auth: "Basic YWRtaW46eA=="}, 401, `Authorization scheme "Basic" is not accepted here, want Bearer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.refused(t, tt.r.method+" "+tt.r.path, tt.r, tt.want, tt.msg)
			if tt.want == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}

	// Logout ends the session.
	if r := e.do(req{method: "POST", path: "/api/v1/auth/logout", auth: bearer(lr.Token)}); r.status != http.StatusNoContent {
		t.Fatalf("logout = %s, want 204", r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(lr.Token)}); r.status != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/agents after logout = %s, want 401", r)
	}
}

func TestLoginRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.LoginAttemptsPerMinute = 3 })
	t.Cleanup(func() { e.rdb.Del(context.Background(), "rate:"+e.prefix+"login:"+hashToken("admin")) })
	for i := range 3 {
		r := e.do(req{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","password":"wrong-password"}`})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d = %s, want 401", i+1, r)
		}
	}
	// Even the right password is refused once the username is over its rate.
	r := e.do(req{method: "POST", path: "/api/v1/auth/login", body: map[string]string{"username": "admin", "password": testAdminPassword}})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("4th attempt = %s, want 429", r)
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q, want a positive number of seconds", ra)
	}
}

func TestSessionExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SessionTTL = time.Second })
	token := e.adminToken()
	// Sliding: used every 600ms, the session outlives its 1s TTL.
	for i := range 3 {
		time.Sleep(600 * time.Millisecond)
		if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(token)}); r.status != http.StatusOK {
			t.Fatalf("use %d after %dms = %s, want 200 (the TTL slides)", i+1, (i+1)*600, r)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(token)})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("GET after 1.5s unused = %s, want 401", r)
	}
	if msg := r.errorMessage(t); !strings.Contains(msg, "expired") {
		t.Errorf("error = %q, want it to say the session expired", msg)
	}
}

func TestRoles(t *testing.T) {
	t.Parallel()
	e, admin, operator, viewer := newRolesEnv(t)
	agent := e.register(admin, "roles-host")

	tests := []struct {
		token  string
		who    string
		r      req
		status int
	}{
		// Viewers read.
		{viewer, "viewer", req{method: "GET", path: "/api/v1/agents"}, 200},
		{viewer, "viewer", req{method: "GET", path: "/api/v1/agents/" + agent.ID}, 200},
		{viewer, "viewer", req{method: "GET", path: "/api/v1/agents/" + agent.ID + "/metrics/latest"}, 200},
		{viewer, "viewer", req{method: "GET", path: "/api/v1/agents/" + agent.ID + "/metrics/recent?metric=cpu.usage"}, 200},
		// ... and write nothing.
		{viewer, "viewer", req{method: "POST", path: "/api/v1/agents", body: `{"name":"x"}`}, 403},
		{viewer, "viewer", req{method: "POST", path: "/api/v1/agents/" + agent.ID + "/rotate-key"}, 403},
		{viewer, "viewer", req{method: "DELETE", path: "/api/v1/agents/" + agent.ID}, 403},
		{viewer, "viewer", req{method: "GET", path: "/api/v1/users"}, 403},
		{viewer, "viewer", req{method: "POST", path: "/api/v1/users", body: `{"username":"x","password":"password-1","role":"admin"}`}, 403},
		{viewer, "viewer", req{method: "DELETE", path: "/api/v1/users/op"}, 403},
		{viewer, "viewer", req{method: "GET", path: "/api/v1/audit"}, 403},
		// Operators manage agents, not users.
		{operator, "operator", req{method: "POST", path: "/api/v1/agents", body: `{"name":"by-operator"}`}, 201},
		{operator, "operator", req{method: "GET", path: "/api/v1/users"}, 403},
		{operator, "operator", req{method: "POST", path: "/api/v1/users", body: `{"username":"x","password":"password-1","role":"admin"}`}, 403},
		{operator, "operator", req{method: "GET", path: "/api/v1/audit"}, 403},
	}
	for _, tt := range tests {
		tt.r.auth = bearer(tt.token)
		r := e.do(tt.r)
		if r.status != tt.status {
			t.Errorf("%s %s as %s = %s, want %d", tt.r.method, tt.r.path, tt.who, r, tt.status)
			continue
		}
		if tt.status == 403 {
			if msg := r.errorMessage(t); !strings.Contains(msg, "needs role") {
				t.Errorf("%s %s as %s: error %q, want it to name the role needed", tt.r.method, tt.r.path, tt.who, msg)
			}
		}
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()

	r := e.do(req{method: "POST", path: "/api/v1/users", auth: bearer(admin), body: `{"username":"alice","password":"alice-password","role":"operator"}`})
	if r.status != http.StatusCreated {
		t.Fatalf("create alice = %s, want 201", r)
	}
	if u := decode[userView](t, r); u.Username != "alice" || u.Role != "operator" || u.CreatedAt.IsZero() {
		t.Errorf("created user = %+v", u)
	}
	if bytes.Contains(r.body, []byte("password")) {
		t.Errorf("answer %s mentions the password", r.body)
	}

	bad := []struct {
		body, msg string
		status    int
	}{
		{`{"username":"bob","password":"short","role":"viewer"}`, "at least 8", 400},
		{`{"username":"bob","password":"long-enough","role":"root"}`, `role "root"`, 400},
		{`{"username":"Bob Smith","password":"long-enough","role":"viewer"}`, "username", 400},
		{`{"username":"","password":"long-enough","role":"viewer"}`, "username is required", 400},
		{`{"username":"bob","password":"long-enough","role":"viewer","admin":true}`, `unknown field "/admin"`, 400},
		{`{"username":"alice","password":"long-enough","role":"viewer"}`, "already exists", 409},
	}
	for _, b := range bad {
		e.refused(t, "create "+b.body, req{method: "POST", path: "/api/v1/users", auth: bearer(admin), body: b.body}, b.status, b.msg)
	}

	r = e.do(req{method: "GET", path: "/api/v1/users", auth: bearer(admin)})
	list := decode[struct {
		Users []userView `json:"users"`
	}](t, r)
	var names []string
	for _, u := range list.Users {
		names = append(names, u.Username+":"+u.Role)
	}
	if got, want := strings.Join(names, ","), "admin:admin,alice:operator"; got != want {
		t.Errorf("users = %s, want %s", got, want)
	}

	// Deleting a user ends its sessions at once.
	e.deleteUser(admin, "alice", e.login("alice", "alice-password"))
	if r := e.do(req{method: "DELETE", path: "/api/v1/users/alice", auth: bearer(admin)}); r.status != http.StatusNotFound {
		t.Errorf("delete alice again = %s, want 404", r)
	}
	// Nobody deletes their own account, so the last admin stays.
	r = e.do(req{method: "DELETE", path: "/api/v1/users/admin", auth: bearer(admin)})
	if r.status != http.StatusConflict || !strings.Contains(r.errorMessage(t), "your own account") {
		t.Errorf("admin deleting itself = %s, want 409 naming the own account", r)
	}
	// A second admin cannot delete the first once it is the last one... but can while two exist.
	second := e.userToken(admin, "root2", "admin")
	if r := e.do(req{method: "DELETE", path: "/api/v1/users/admin", auth: bearer(second)}); r.status != http.StatusNoContent {
		t.Errorf("second admin deleting admin = %s, want 204", r)
	}

	// Every change is in the audit log with its actor, newest first.
	r = e.do(req{method: "GET", path: "/api/v1/audit?limit=10", auth: bearer(second)})
	if r.status != http.StatusOK {
		t.Fatalf("audit = %s", r)
	}
	audit := decode[struct {
		Entries []postgres.AuditEntry `json:"entries"`
		Total   int                   `json:"total"`
	}](t, r)
	var got []string
	for _, a := range audit.Entries {
		got = append(got, a.Actor+" "+a.Action+" "+a.Target)
	}
	want := []string{
		"root2 user.delete admin",
		"admin user.create root2",
		"admin user.delete alice",
		"admin user.create alice",
		"system user.create admin",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") || audit.Total != len(want) {
		t.Errorf("audit = %q (total %d), want %q", got, audit.Total, want)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/audit?limit=0", auth: bearer(second)}); r.status != 400 || !strings.Contains(r.errorMessage(t), "limit") {
		t.Errorf("audit?limit=0 = %s, want 400 naming limit", r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/audit?offset=-1", auth: bearer(second)}); r.status != 400 || !strings.Contains(r.errorMessage(t), "offset") {
		t.Errorf("audit?offset=-1 = %s, want 400 naming offset", r)
	}
}

func TestGeneratedAdminPassword(t *testing.T) {
	t.Parallel()
	_, prefix := testenv.Redis(t)
	_, dbURL := testenv.Postgres(t)
	cfg := testConfig(prefix, dbURL)
	cfg.AdminPassword = ""
	g, url := startGateway(t, cfg)
	pw := g.AdminPassword()
	if len(pw) < 16 {
		t.Fatalf("AdminPassword() = %q, want a generated password", pw)
	}
	r := doHTTP(t, url, req{method: "POST", path: "/api/v1/auth/login", body: map[string]string{"username": "admin", "password": pw}})
	if r.status != http.StatusOK {
		t.Fatalf("login with the generated password = %s, want 200", r)
	}
	// A second start finds the admin and generates nothing.
	g2, _ := startGateway(t, cfg)
	if g2.AdminPassword() != "" {
		t.Errorf("second start generated %q again, want none", g2.AdminPassword())
	}
}

func TestAgents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.AgentOnlineWindow = time.Minute })
	admin := e.adminToken()

	a := e.register(admin, "web-1")
	if !wellFormedKey(a.APIKey) || a.Name != "web-1" || a.Labels["env"] != "test" {
		t.Fatalf("registered = %+v", a)
	}
	var stored string
	if err := e.db.Get(&stored, `SELECT api_key_hash FROM agents WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	if stored != agent.HashAPIKey(a.APIKey) || strings.Contains(stored, a.APIKey) {
		t.Errorf("stored key hash %q, want the sha256 hex of the key only", stored)
	}
	b := e.register(admin, "web-2")
	if _, err := e.db.Exec(`UPDATE agents SET last_seen = now() - interval '10 seconds' WHERE id = $1`, b.ID); err != nil {
		t.Fatal(err)
	}

	r := e.do(req{method: "GET", path: "/api/v1/agents?limit=1&offset=1", auth: bearer(admin)})
	page := decode[agentList](t, r)
	if r.status != 200 || page.Total != 2 || len(page.Agents) != 1 || page.Agents[0].ID != b.ID {
		t.Fatalf("page 2 of 1 = %s, want web-2 of 2", r)
	}
	if got := page.Agents[0]; got.Status != "online" || got.LastSeen == nil {
		t.Errorf("web-2 = %+v, want online with last_seen", got)
	}
	r = e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)})
	if got := decode[agentView](t, r); got.Status != "offline" || got.LastSeen != nil || got.Name != "web-1" {
		t.Errorf("GET web-1 = %s, want offline with null last_seen", r)
	}
	if bytes.Contains(r.body, []byte("api_key")) {
		t.Errorf("GET agent shows a key: %s", r.body)
	}

	bad := []struct {
		body, msg string
		status    int
	}{
		{`{"name":""}`, "name is required", 400},
		{`{"name":" padded"}`, "white space", 400},
		{`{"name":"` + strings.Repeat("n", 201) + `"}`, "longer than 200", 400},
		{`{"name":"tab\there"}`, "control characters", 400},
		{`{"name":"x","labels":{"bad key":"v"}}`, `key "bad key"`, 400},
		{`{"name":"x","labels":{"k":"` + strings.Repeat("v", 257) + `"}}`, `value of "k"`, 400},
		{`{"name":"x","labels":{"k":1}}`, `"/labels/k"`, 400},
		{`{"name":"x","labels":` + manyLabels(33) + `}`, "at most 32 labels", 400},
		{`{"name":"x","tags":{}}`, `unknown field "/tags"`, 400},
		{`{"name":"web-1"}`, "already exists", 409},
	}
	for _, tt := range bad {
		e.refused(t, fmt.Sprintf("register %.60s", tt.body), req{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: tt.body}, tt.status, tt.msg)
	}

	// Not a UUID, or unknown: 404 either way.
	for _, path := range []string{"/api/v1/agents/not-a-uuid", "/api/v1/agents/00000000-0000-4000-8000-000000000000"} {
		if r := e.do(req{method: "GET", path: path, auth: bearer(admin)}); r.status != http.StatusNotFound {
			t.Errorf("GET %s = %s, want 404", path, r)
		}
	}

	r = e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/rotate-key", auth: bearer(admin)})
	rotated := decode[rotatedKey](t, r)
	if r.status != 200 || rotated.ID != a.ID || !wellFormedKey(rotated.APIKey) || rotated.APIKey == a.APIKey {
		t.Errorf("rotate = %s, want a new key", r)
	}
	if r := e.do(req{method: "DELETE", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)}); r.status != http.StatusNoContent {
		t.Errorf("delete = %s, want 204", r)
	}
	if r := e.do(req{method: "DELETE", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)}); r.status != http.StatusNotFound {
		t.Errorf("delete again = %s, want 404", r)
	}

	r = e.do(req{method: "GET", path: "/api/v1/audit", auth: bearer(admin)})
	audit := decode[auditList](t, r)
	var got []string
	for _, en := range audit.Entries {
		if strings.HasPrefix(en.Action, "agent.") {
			got = append(got, en.Actor+" "+en.Action+" "+en.Target)
		}
	}
	want := []string{
		"admin agent.delete " + a.ID,
		"admin agent.rotate_key " + a.ID,
		"admin agent.create " + b.ID,
		"admin agent.create " + a.ID,
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("agent audit = %q, want %q", got, want)
	}
}

func manyLabels(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%d":"v"`, i)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestErrorShapeAndHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		r      req
		status int
	}{
		{req{method: "GET", path: "/no/such/route"}, 404},
		{req{method: "PUT", path: "/api/v1/agents"}, 405},
		{req{method: "GET", path: "/api/v2/write"}, 405},
	}
	for _, tt := range tests {
		r := e.do(tt.r)
		if r.status != tt.status {
			t.Errorf("%s %s = %s, want %d", tt.r.method, tt.r.path, r, tt.status)
		}
		r.errorMessage(t) // the common shape
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q, want JSON", tt.r.method, tt.r.path, ct)
		}
	}

	r := e.do(req{method: "GET", path: "/healthz", headers: map[string]string{"X-Request-ID": "abc-123", "Origin": "https://evil.example"}})
	if r.status != 200 {
		t.Fatalf("healthz = %s", r)
	}
	for h, want := range map[string]string{
		"X-Content-Type-Options":      "nosniff",
		"X-Frame-Options":             "DENY",
		"Content-Security-Policy":     "default-src 'none'; frame-ancestors 'none'",
		"Referrer-Policy":             "no-referrer",
		"Cache-Control":               "no-store",
		"X-Request-Id":                "abc-123",
		"Access-Control-Allow-Origin": "",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	// A client request id that is not well formed is replaced.
	r = e.do(req{method: "GET", path: "/healthz", headers: map[string]string{"X-Request-ID": "<script>" + strings.Repeat("x", 100)}})
	if id := r.header.Get("X-Request-Id"); !requestIDPattern.MatchString(id) || strings.Contains(id, "script") {
		t.Errorf("X-Request-ID = %q, want a generated one", id)
	}
}

func TestReadyAndMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if r := e.do(req{method: "GET", path: "/readyz"}); r.status != 200 {
		t.Errorf("readyz = %s, want 200", r)
	}
	admin := e.adminToken()
	a := e.register(admin, "m-host")
	e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: `{"points":[{"measurement":"cpu","fields":{"u":1,"s":2}}]}`})
	e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: `{"points":[]}`})
	r := e.do(req{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`agentmonitor_gateway_ingest_requests_total{outcome="accepted",route="json"} 1`,
		`agentmonitor_gateway_ingest_requests_total{outcome="invalid",route="json"} 1`,
		`agentmonitor_gateway_points_accepted_total 1`,
		`agentmonitor_gateway_http_request_duration_seconds_count{code="201",method="POST",route="/api/v1/agents"} 1`,
		`agentmonitor_gateway_backlog_entries`,
		`agentmonitor_stream_length{stream="` + e.prefix + `metrics:{0}"}`,
		`agentmonitor_stream_length{stream="` + e.prefix + `alerts:{0}"}`,
		`agentmonitor_stream_length{stream="` + e.prefix + `alerts:{1}"}`,
		`agentmonitor_stream_length{stream="` + e.prefix + `alerts:poison"}`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A gateway whose PostgreSQL is gone is not ready, and says which dependency is down.
	badDB, err := sqlx.Open("postgres", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer badDB.Close()
	bad := &Gateway{cfg: e.g.cfg, logger: e.g.logger, rdb: e.g.rdb, db: badDB, reg: prometheus.NewRegistry()}
	if bad.metrics, err = newGatewayMetrics(bad.reg); err != nil {
		t.Fatal(err)
	}
	// Ingest readiness (the default scope) needs Redis only: agent keys come from the key cache,
	// so a load balancer must keep this gateway. The operator API's scope needs PostgreSQL.
	for _, tc := range []struct {
		path       string
		want       int
		wantInBody []string
	}{
		{"/readyz", http.StatusOK, []string{`"status":"ready"`, `"redis":"ok"`, `"postgres":"`}},
		{"/readyz?scope=ingest", http.StatusOK, []string{`"status":"ready"`, `"scope":"ingest"`}},
		{"/readyz?scope=api", http.StatusServiceUnavailable, []string{`"error":"not ready"`, `"details":["postgres: `, `"redis":"ok"`}},
		{"/readyz?scope=nope", http.StatusBadRequest, []string{`unknown scope \"nope\": use one of api, ingest`}},
	} {
		rec := httptest.NewRecorder()
		bad.newEcho().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("GET %s with PostgreSQL down = %d %s, want %d", tc.path, rec.Code, rec.Body, tc.want)
		}
		for _, w := range tc.wantInBody {
			if !strings.Contains(rec.Body.String(), w) {
				t.Errorf("GET %s with PostgreSQL down = %s, want it to contain %s", tc.path, rec.Body, w)
			}
		}
	}
	if r := e.do(req{method: "GET", path: "/readyz?scope=api"}); r.status != 200 {
		t.Errorf("readyz?scope=api = %s, want 200", r)
	}
}
