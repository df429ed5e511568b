package gateway

import (
	"net/http"
	"testing"
	"time"
)

// TestRotationGraceKeepsOldKeyUntilItEnds: a rotation with {"grace": ...} keeps the old key
// working on every gateway copy until the grace period ends and not after (a key cache entry
// read during the grace period and fresh for longer must not serve it past its end); the expiry
// is shown on the agent and audited; revoking the old key early stops it at once.
func TestRotationGraceKeepsOldKeyUntilItEnds(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	e, admin, url2 := newTwoCopies(t, ttl)
	a := e.register(admin, "rekeyed")
	post := func(base, key string) int { return ingestOne(t, base, a.ID, key) }
	// Both copies cache the old key before the rotation.
	for _, base := range []string{e.url, url2} {
		if s := post(base, a.APIKey); s != http.StatusNoContent {
			t.Fatalf("ingest before rotation = %d, want 204", s)
		}
	}

	const grace = 3 * time.Second
	r := e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/rotate-key", auth: bearer(admin), body: map[string]string{"grace": "3s"}})
	if r.status != http.StatusOK {
		t.Fatalf("rotate-key with grace = %s, want 200", r)
	}
	rotated := decode[rotatedKey](t, r)
	if rotated.PreviousKeyExpiresAt == nil || time.Until(*rotated.PreviousKeyExpiresAt) > grace || time.Until(*rotated.PreviousKeyExpiresAt) < grace-time.Second {
		t.Fatalf("rotate-key answer previous_key_expires_at = %v, want about 3s from now", rotated.PreviousKeyExpiresAt)
	}
	expires := *rotated.PreviousKeyExpiresAt
	got := decode[agentView](t, e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)}))
	if got.PreviousKeyExpiresAt == nil || !got.PreviousKeyExpiresAt.Equal(expires) {
		t.Errorf("GET agent previous_key_expires_at = %v, want %v", got.PreviousKeyExpiresAt, expires)
	}
	// Both keys work on both copies during the grace period, also once the entries cached before
	// the rotation expired: the old key is read again, now with its end, and cached past it.
	for time.Now().Before(expires.Add(-grace + ttl + 100*time.Millisecond)) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, base := range []string{e.url, url2} {
		for _, key := range []string{a.APIKey, rotated.APIKey} {
			if s := post(base, key); s != http.StatusNoContent && time.Now().Before(expires) {
				t.Errorf("ingest during the grace period = %d, want 204", s)
			}
		}
	}
	// After it, the old key is refused everywhere at once (the cache entries end with the key).
	for time.Now().Before(expires.Add(50 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, base := range []string{e.url, url2} {
		if s := post(base, a.APIKey); s != http.StatusUnauthorized {
			t.Errorf("old key after the grace period on %s = %d, want 401", base, s)
		}
		if s := post(base, rotated.APIKey); s != http.StatusNoContent {
			t.Errorf("new key after the grace period = %d, want 204", s)
		}
	}
	got = decode[agentView](t, e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)}))
	if got.PreviousKeyExpiresAt != nil {
		t.Errorf("GET agent previous_key_expires_at after the grace period = %v, want null", got.PreviousKeyExpiresAt)
	}
	if r := e.do(req{method: "DELETE", path: "/api/v1/agents/" + a.ID + "/previous-key", auth: bearer(admin)}); r.status != http.StatusNotFound {
		t.Errorf("revoking an expired previous key = %s, want 404", r)
	}

	// Rotate again with an hour of grace, then revoke the old key early.
	r = e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/rotate-key", auth: bearer(admin), body: map[string]string{"grace": "1h"}})
	second := decode[rotatedKey](t, r)
	if s := post(e.url, rotated.APIKey); s != http.StatusNoContent {
		t.Fatalf("previous key within an hour's grace = %d, want 204", s)
	}
	if r := e.do(req{method: "DELETE", path: "/api/v1/agents/" + a.ID + "/previous-key", auth: bearer(admin)}); r.status != http.StatusNoContent {
		t.Fatalf("revoking the previous key = %s, want 204", r)
	}
	if s := post(e.url, rotated.APIKey); s != http.StatusUnauthorized {
		t.Errorf("revoked previous key = %d, want 401", s)
	}
	if s := post(e.url, second.APIKey); s != http.StatusNoContent {
		t.Errorf("current key after revoking the previous one = %d, want 204", s)
	}
	if got, want := e.auditActions(admin, "agent."), []string{"admin agent.create", "admin agent.rotate_key", "admin agent.rotate_key", "admin agent.revoke_previous_key"}; !equalStrings(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
}

func TestRotateKeyRejectsBadGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "bad-grace")
	for _, body := range []string{`{"grace":"soon"}`, `{"grace":"-1h"}`, `{"grace":"721h"}`, `{"grace":1}`, `{"gr":"1h"}`} {
		r := e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/rotate-key", auth: bearer(admin), body: body})
		if r.status != http.StatusBadRequest {
			t.Errorf("rotate-key %s = %s, want 400", body, r)
		}
	}
	// Nothing changed: the original key still works.
	if r := e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey),
		body: `{"points":[{"measurement":"m","fields":{"v":1}}]}`}); r.status != http.StatusNoContent {
		t.Errorf("original key after refused rotations = %s, want 204", r)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// newTwoCopies starts a test environment whose gateway caches agent keys for ttl, and a second
// gateway copy on the same database and Redis; it returns the environment, an admin's session
// token and the second copy's URL.
func newTwoCopies(t *testing.T, ttl time.Duration) (e *env, admin, url2 string) {
	t.Helper()
	e = newEnv(t, func(c *Config) { c.KeyCacheTTL = ttl })
	_, url2 = startGateway(t, e.cfg)
	return e, e.adminToken(), url2
}

// ingestOne sends a one-point batch for agent id with key to the gateway at base and returns the
// status of the answer.
func ingestOne(t *testing.T, base, id, key string) int {
	t.Helper()
	return doHTTP(t, base, req{method: "POST", path: "/api/v1/agents/" + id + "/metrics", auth: bearer(key),
		body: `{"points":[{"measurement":"m","fields":{"v":1}}]}`}).status
}
