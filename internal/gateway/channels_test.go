package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

func TestNotificationChannels(t *testing.T) {
	t.Parallel()
	e, admin, op, viewer := newRolesEnv(t)
	store := postgres.NewChannelStore(e.db)
	ctx := context.Background()
	const secret = "s3cret-never-shown"

	// noSecret fails the test when an answer carries the secret or a "secret" member.
	noSecret := func(what string, r resp) {
		t.Helper()
		if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), `"secret"`) {
			t.Errorf("%s = %s: carries the secret", what, r)
		}
	}

	r := e.do(req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op),
		body: `{"name":"ops","url":"https://hooks.example.com/ops","secret":"` + secret + `","headers":{"X-Team":"infra"}}`})
	noSecret("create", r)
	ch := decode[channelView](t, r)
	if r.status != http.StatusCreated || !ch.HasSecret || ch.Type != "webhook" || !ch.Enabled || ch.Headers["X-Team"] != "infra" {
		t.Fatalf("create = %s, want 201, webhook, enabled, has_secret", r)
	}
	if stored, err := store.Get(ctx, ch.ID); err != nil || stored.Secret != secret {
		t.Fatalf("stored channel = %+v, %v, want the secret kept", stored, err)
	}

	r = e.do(req{method: "GET", path: "/api/v1/notification-channels", auth: bearer(op)})
	noSecret("list", r)
	if list := decode[channelList](t, r); r.status != http.StatusOK || len(list.Channels) != 1 || !list.Channels[0].HasSecret {
		t.Errorf("list = %s, want the one channel with has_secret", r)
	}
	r = e.do(req{method: "GET", path: "/api/v1/notification-channels/" + ch.ID, auth: bearer(op)})
	noSecret("get", r)

	// PUT without a secret keeps it; with one replaces it; "" removes it.
	// repeat_interval is set by each PUT (left out: 0).
	puts := []struct {
		body       string
		wantSecret string
		wantRepeat time.Duration
	}{
		{`{"name":"ops","url":"https://hooks.example.com/v2","enabled":false,"repeat_interval":"4h"}`, secret, 4 * time.Hour},
		{`{"name":"ops","url":"https://hooks.example.com/v2","secret":null}`, secret, 0},
		{`{"name":"ops","url":"https://hooks.example.com/v2","secret":"other-` + secret + `","repeat_interval":"90m"}`, "other-" + secret, 90 * time.Minute},
		{`{"name":"ops","url":"https://hooks.example.com/v2","secret":"","group_by":["alertname","agent"],"group_wait":"30s"}`, "", 0},
	}
	for _, p := range puts {
		r := e.do(req{method: "PUT", path: "/api/v1/notification-channels/" + ch.ID, auth: bearer(op), body: p.body})
		noSecret("update", r)
		got := decode[channelView](t, r)
		if r.status != http.StatusOK || got.URL != "https://hooks.example.com/v2" || got.HasSecret != (p.wantSecret != "") || len(got.Headers) != 0 {
			t.Errorf("update %s = %s, want 200, new url, no headers, has_secret %v", p.body, r, p.wantSecret != "")
		}
		if stored, err := store.Get(ctx, ch.ID); err != nil || stored.Secret != p.wantSecret {
			t.Errorf("after update %s stored secret = %q, %v, want %q", p.body, stored.Secret, err, p.wantSecret)
		}
		if stored, err := store.Get(ctx, ch.ID); err != nil || stored.RepeatInterval != p.wantRepeat || time.Duration(got.RepeatInterval) != p.wantRepeat {
			t.Errorf("after update %s repeat interval = stored %v (%v), answered %v; want %v", p.body, stored.RepeatInterval, err, got.RepeatInterval, p.wantRepeat)
		}
		wantGroup := []string{}
		if strings.Contains(p.body, "group_by") {
			wantGroup = []string{"alertname", "agent"}
		}
		if !slices.Equal(got.GroupBy, wantGroup) || (len(wantGroup) > 0) != (got.GroupWait == alert.Duration(30*time.Second)) {
			t.Errorf("update %s answered group_by %q group_wait %v, want %q", p.body, got.GroupBy, got.GroupWait, wantGroup)
		}
	}

	// An e-mail channel: recipients, no url.
	r = e.do(req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op),
		body: `{"name":"mail","type":"email","to":["ops@example.com"],"repeat_interval":"4h"}`})
	if m := decode[channelView](t, r); r.status != http.StatusCreated || m.Type != "email" || !slices.Equal(m.To, []string{"ops@example.com"}) || m.URL != "" {
		t.Errorf("create e-mail channel = %s, want 201 with its recipients", r)
	} else {
		if r := e.do(req{method: "POST", path: "/api/v1/notification-channels/" + m.ID + "/test", auth: bearer(op)}); r.status != http.StatusBadRequest {
			t.Errorf("test of an e-mail channel = %s, want 400", r)
		}
		if r := e.do(req{method: "DELETE", path: "/api/v1/notification-channels/" + m.ID, auth: bearer(op)}); r.status != http.StatusNoContent {
			t.Errorf("delete e-mail channel = %s, want 204", r)
		}
	}

	// Refusals.
	missing := "9d4c0000-0000-4000-8000-000000000000"
	e.checkRefusals(t, []refusal{
		{"viewer lists", req{method: "GET", path: "/api/v1/notification-channels", auth: bearer(viewer)}, 403, ""},
		{"viewer gets", req{method: "GET", path: "/api/v1/notification-channels/" + ch.ID, auth: bearer(viewer)}, 403, ""},
		{"viewer creates", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(viewer), body: `{"name":"x","url":"https://x.example"}`}, 403, ""},
		{"bad scheme", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"ftp://x.example"}`}, 400, "url"},
		{"credentials in url", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://u:p@x.example"}`}, 400, "url"},
		{"other type", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","type":"sms","url":"https://x.example"}`}, 400, "type"},
		{"reserved header", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://x.example","headers":{"content-type":"text/plain"}}`}, 400, "headers"},
		{"repeat too often", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://x.example","repeat_interval":"30s"}`}, 400, "repeat_interval"},
		{"repeat not a duration", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://x.example","repeat_interval":"4 hours"}`}, 400, "repeat_interval"},
		{"repeat a number", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://x.example","repeat_interval":3600}`}, 400, "repeat_interval"},
		{"group without wait", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://x.example","group_by":["agent"]}`}, 400, "group_wait"},
		{"group by bad label", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://x.example","group_by":["a b"],"group_wait":"10s"}`}, 400, "group_by"},
		{"email without to", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","type":"email"}`}, 400, "to"},
		{"email bad to", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","type":"email","to":["ops at example"]}`}, 400, "to"},
		{"blank name", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":" ","url":"https://x.example"}`}, 400, "name"},
		{"unknown member", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"x","url":"https://x.example","has_secret":true}`}, 400, "has_secret"},
		{"duplicate name", req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"ops","url":"https://x.example"}`}, 409, ""},
		{"update unknown", req{method: "PUT", path: "/api/v1/notification-channels/" + missing, auth: bearer(op), body: `{"name":"x","url":"https://x.example"}`}, 404, ""},
		{"update invalid", req{method: "PUT", path: "/api/v1/notification-channels/" + ch.ID, auth: bearer(op), body: `{"name":"ops","url":"x.example"}`}, 400, "url"},
		{"delete unknown", req{method: "DELETE", path: "/api/v1/notification-channels/" + missing, auth: bearer(op)}, 404, ""},
	})
	if list, err := store.List(ctx); err != nil || len(list) != 1 || list[0].URL != "https://hooks.example.com/v2" {
		t.Errorf("channels after refusals = %+v, %v, want the one, unchanged", list, err)
	}

	// A channel that a rule names cannot be deleted until the rule stops naming it.
	rule := strings.Replace(cpuRule, `"for":"2m"`, `"for":"2m","channels":["`+ch.ID+`"]`, 1)
	r = e.do(req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(op), body: rule})
	if r.status != http.StatusCreated {
		t.Fatalf("creating a rule with the channel = %s", r)
	}
	ruleID := decode[struct {
		ID string `json:"id"`
	}](t, r).ID
	if r := e.do(req{method: "DELETE", path: "/api/v1/notification-channels/" + ch.ID, auth: bearer(op)}); r.status != http.StatusConflict ||
		!strings.Contains(r.errorMessage(t), "CPU busy") {
		t.Errorf("delete while used = %s, want 409 naming the rule", r)
	}
	if r := e.do(req{method: "PUT", path: "/api/v1/alert-rules/" + ruleID, auth: bearer(op), body: cpuRule}); r.status != http.StatusOK {
		t.Fatalf("removing the channel from the rule = %s", r)
	}
	if r := e.do(req{method: "DELETE", path: "/api/v1/notification-channels/" + ch.ID, auth: bearer(op)}); r.status != http.StatusNoContent {
		t.Errorf("delete = %s, want 204", r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/notification-channels/" + ch.ID, auth: bearer(op)}); r.status != http.StatusNotFound {
		t.Errorf("get after delete = %s, want 404", r)
	}

	want := []string{"op channel.create", "op channel.update", "op channel.update", "op channel.update", "op channel.update", "op channel.create", "op channel.delete", "op channel.delete"}
	if got := e.auditActions(admin, "channel."); !slices.Equal(got, want) {
		t.Errorf("channel audit = %q, want %q", got, want)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/audit?limit=1000", auth: bearer(admin)}); strings.Contains(string(r.body), secret) {
		t.Errorf("the audit log carries the secret: %s", r)
	}
}

// Channels pointing inside (loopback, private, link-local, metadata, in any spelling, or a name
// resolving there) are refused with a 400 naming the url and the address, on create and on
// update; WEBHOOK_ALLOWED_NETWORKS opens what an operator allows.
func TestChannelURLsPointingInsideAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	op := e.userToken(e.adminToken(), "op", "operator")
	create := func(url string) resp {
		return e.do(req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op),
			body: `{"name":"n-` + strings.NewReplacer("/", "", ":", "", "[", "", "]", "").Replace(url) + `","url":"` + url + `"}`})
	}
	for url, want := range map[string]string{
		"http://127.0.0.1:9000/hook":               "127.0.0.1 is a loopback address",
		"http://2130706433/":                       "non-standard spelling of the IPv4 address 127.0.0.1",
		"http://0x7f000001/":                       "127.0.0.1",
		"http://0177.0.0.1/":                       "127.0.0.1",
		"http://127.1/":                            "127.0.0.1",
		"http://[::ffff:127.0.0.1]/":               "loopback",
		"http://[::1]/":                            "loopback",
		"http://0.0.0.0/":                          "unspecified",
		"http://[::]/":                             "unspecified",
		"http://localhost:8080/":                   `host "localhost" resolves to 127.0.0.1`,
		"http://169.254.169.254/latest/meta-data/": "link-local",
		"http://10.0.0.5/":                         "private",
		"http://192.168.0.10/":                     "private",
		"http://[fd00::1]/":                        "private",
		"http://[fe80::1]/":                        "link-local",
		"http://100.64.0.1/":                       "CGNAT",
		"http://224.0.0.1/":                        "multicast",
	} {
		r := create(url)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), want) {
			t.Errorf("create %s = %s, want 400 containing %q", url, r, want)
			continue
		}
		if eb := errorBodyOf(t, r); !slices.Equal(eb.Details, []string{"url"}) {
			t.Errorf("create %s details = %q, want [url]", url, eb.Details)
		}
	}
	r := create("https://8.8.8.8/hook")
	if r.status != http.StatusCreated {
		t.Fatalf("create with a public address = %s, want 201", r)
	}
	id := decode[struct {
		ID string `json:"id"`
	}](t, r).ID
	if r := e.do(req{method: "PUT", path: "/api/v1/notification-channels/" + id, auth: bearer(op),
		body: `{"name":"public","url":"http://169.254.169.254/"}`}); r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), "169.254.169.254") {
		t.Errorf("update to the metadata address = %s, want 400 naming it", r)
	}

	allowed := newEnv(t, func(c *Config) { c.WebhookAllowedNetworks = []string{"127.0.0.0/8", "10.1.0.0/16"} })
	op2 := allowed.userToken(allowed.adminToken(), "op", "operator")
	for _, url := range []string{"http://127.0.0.1:9000/hook", "http://[::ffff:127.0.0.1]/", "http://10.1.2.3/", "http://localhost:9000/"} {
		r := allowed.do(req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op2),
			body: `{"name":"` + url + `","url":"` + url + `"}`})
		if r.status != http.StatusCreated {
			t.Errorf("create %s with 127.0.0.0/8 and 10.1.0.0/16 allowed = %s, want 201", url, r)
		}
	}
	if r := allowed.do(req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op2),
		body: `{"name":"other","url":"http://10.2.0.1/"}`}); r.status != http.StatusBadRequest {
		t.Errorf("create 10.2.0.1 with only 10.1.0.0/16 allowed = %s, want 400", r)
	}
}
