package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// clientFrom returns an HTTP client whose connections come from the loopback address ip
// (127.0.0.0/8 is all local on Linux), so that a test can be several source addresses.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// loginAs posts a login with client and extra headers.
func loginAs(t *testing.T, client *http.Client, base, username, password string, headers map[string]string) resp {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": password})
	hr, err := http.NewRequest(http.MethodPost, base+"/api/v1/auth/login", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		hr.Header.Set(k, v)
	}
	res, err := client.Do(hr)
	if err != nil {
		t.Fatalf("login %s: %v", username, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func wantTooMany(t *testing.T, r resp, what, wantInMsg string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("%s = %s, want 429", what, r)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("%s: Retry-After = %q, want a positive number of seconds", what, r.header.Get("Retry-After"))
	}
	if msg := r.errorMessage(t); !strings.Contains(msg, wantInMsg) {
		t.Errorf("%s: error %q, want it to contain %q", what, msg, wantInMsg)
	}
}

// TestLoginLimitPerAddress: one address trying many usernames is stopped, whatever the names.
func TestLoginLimitPerAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Edge.LoginAttemptsPerIPPerMinute = 5 })
	attacker := clientFrom("127.0.0.1")
	for i := range 5 {
		if r := loginAs(t, attacker, e.url, fmt.Sprintf("user%d", i), "wrong-password", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d = %s, want 401", i+1, r)
		}
	}
	wantTooMany(t, loginAs(t, attacker, e.url, "user99", "wrong-password", nil), "6th username from one address", "from your address")
	// A made-up X-Forwarded-For does not make a new address: no proxy is trusted.
	wantTooMany(t, loginAs(t, attacker, e.url, "user98", "wrong-password", map[string]string{"X-Forwarded-For": "203.0.113.7"}),
		"attempt with a forged X-Forwarded-For", "from your address")
	// Another address is not affected.
	if r := loginAs(t, clientFrom("127.0.0.2"), e.url, "admin", testAdminPassword, nil); r.status != http.StatusOK {
		t.Fatalf("admin from another address = %s, want 200", r)
	}
}

// TestLoginLockoutDoesNotLockOutTheUser: an attacker hammering admin from one address is
// stopped there, and admin still logs in from their own address with the right password.
func TestLoginLockoutDoesNotLockOutTheUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.LoginAttemptsPerMinute = 3 })
	attacker := clientFrom("127.0.0.1")
	for i := range 3 {
		if r := loginAs(t, attacker, e.url, "admin", "wrong-password", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d = %s, want 401", i+1, r)
		}
	}
	for range 5 {
		wantTooMany(t, loginAs(t, attacker, e.url, "admin", "wrong-password", nil), "4th failure from one address", "for this user from your address")
	}
	// The attacker's address stays refused even with the right password (it is over its limit).
	wantTooMany(t, loginAs(t, attacker, e.url, "admin", testAdminPassword, nil), "right password from the attacker's address", "for this user from your address")

	user := clientFrom("127.0.0.2")
	if r := loginAs(t, user, e.url, "admin", testAdminPassword, nil); r.status != http.StatusOK {
		t.Fatalf("admin from its own address while attacked = %s, want 200", r)
	}
	// Only failures count: after two failures and a success, three failures are allowed again.
	for range 2 {
		loginAs(t, user, e.url, "admin", "typo-password", nil)
	}
	if r := loginAs(t, user, e.url, "admin", testAdminPassword, nil); r.status != http.StatusOK {
		t.Fatalf("admin after two typos = %s, want 200", r)
	}
	for i := range 3 {
		if r := loginAs(t, user, e.url, "admin", "typo-password", nil); r.status != http.StatusUnauthorized {
			t.Fatalf("typo %d after a success = %s, want 401 (a success clears failures)", i+1, r)
		}
	}
}

// TestLoginLimitPerUserAcrossAddresses: many addresses failing on one user exhaust its overall
// budget, which stops addresses that failed, but not a clean address with the right password.
// The addresses come through a trusted proxy's X-Forwarded-For.
func TestLoginLimitPerUserAcrossAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.Edge.LoginFailuresPerUserPerMinute = 3
		c.Edge.TrustedProxies = []string{"127.0.0.1"}
	})
	proxy := clientFrom("127.0.0.1")
	from := func(addr string) map[string]string { return map[string]string{"X-Forwarded-For": addr} }
	for i := range 3 {
		if r := loginAs(t, proxy, e.url, "admin", "wrong-password", from(fmt.Sprintf("198.51.100.%d", i+1))); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d = %s, want 401", i+1, r)
		}
	}
	// An address that already failed is now refused: the user's budget is spent.
	wantTooMany(t, loginAs(t, proxy, e.url, "admin", "wrong-password", from("198.51.100.1")), "a failed address after the user's budget", "for this user")
	// A clean address may still try, and the right password gets in.
	if r := loginAs(t, proxy, e.url, "admin", testAdminPassword, from("192.0.2.10")); r.status != http.StatusOK {
		t.Fatalf("admin from a clean address = %s, want 200", r)
	}
	if n, err := e.rdb.Exists(context.Background(), "rate:"+e.prefix+"login-ip:198.51.100.1").Result(); err != nil || n != 1 {
		t.Errorf("per-address key of the forwarded address: exists = %d, %v; want the forwarded address counted", n, err)
	}
}
