package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
)

// errorBodyOf decodes an error answer.
func errorBodyOf(t testing.TB, r resp) errorBody {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error == "" {
		t.Fatalf("answer %s is not an error body", r)
	}
	return eb
}

// rulesVersion reads the version the gateway bumps on every rule change.
func (e *env) rulesVersion() int64 {
	e.t.Helper()
	v, err := alertredis.RulesVersion(context.Background(), e.rdb, e.prefix)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// auditActions returns "actor action" of the newest n audit rows whose action starts with
// prefix, oldest first.
func (e *env) auditActions(admin, prefix string) []string {
	e.t.Helper()
	r := e.do(req{method: "GET", path: "/api/v1/audit?limit=1000", auth: bearer(admin)})
	if r.status != http.StatusOK {
		e.t.Fatalf("audit = %s", r)
	}
	var out []string
	for _, en := range decode[auditList](e.t, r).Entries {
		if strings.HasPrefix(en.Action, prefix) {
			out = append(out, en.Actor+" "+en.Action)
		}
	}
	slices.Reverse(out)
	return out
}

const cpuRule = `{"name":"CPU busy","kind":"threshold","metric":"cpu.usage_percent","aggregation":"avg","window":"5m",
	"operator":">","thresholds":{"warning":{"value":80,"recovery":70},"critical":{"value":95}},"for":"2m",
	"labels":{"team":"infra"}}`

func TestAlertRules(t *testing.T) {
	t.Parallel()
	e, admin, op, viewer := newRolesEnv(t)

	// Create: enabled defaults to true, durations come back in their short form, id assigned.
	v0 := e.rulesVersion()
	r := e.do(req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(op), body: cpuRule})
	if r.status != http.StatusCreated {
		t.Fatalf("create = %s, want 201", r)
	}
	created := decode[alert.Rule](t, r)
	if created.ID == "" || !created.Enabled || created.Name != "CPU busy" || created.Window.String() != "5m" ||
		*created.Thresholds.Warning.Recovery != 70 || created.Labels["team"] != "infra" {
		t.Errorf("created = %+v, want the rule with an id and enabled", created)
	}
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil || raw["window"] != "5m" || raw["for"] != "2m" {
		t.Errorf("created JSON = %s, want window \"5m\" and for \"2m\"", r.body)
	}
	if v := e.rulesVersion(); v != v0+1 {
		t.Errorf("rules version after create = %d, want %d", v, v0+1)
	}

	// Read as a viewer.
	if r := e.do(req{method: "GET", path: "/api/v1/alert-rules/" + created.ID, auth: bearer(viewer)}); r.status != http.StatusOK ||
		decode[alert.Rule](t, r).ID != created.ID {
		t.Errorf("get = %s, want the rule", r)
	}
	r = e.do(req{method: "GET", path: "/api/v1/alert-rules", auth: bearer(viewer)})
	if list := withoutBuiltins(decode[ruleList](t, r)); r.status != http.StatusOK || len(list.Rules) != 1 || list.Rules[0].ID != created.ID {
		t.Errorf("list = %s, want the one rule", r)
	}

	// Disabled on request; a second rule with the same name is a conflict.
	silent := `{"name":"Agent silent","kind":"agent_silent","after":"5m","severity":"critical","enabled":false}`
	r = e.do(req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(admin), body: silent})
	if r.status != http.StatusCreated || decode[alert.Rule](t, r).Enabled {
		t.Errorf("create disabled = %s, want 201 with enabled false", r)
	}
	if r := e.do(req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(op), body: silent}); r.status != http.StatusConflict {
		t.Errorf("create duplicate name = %s, want 409", r)
	}

	// Update replaces the rule; the id may be repeated in the body but not changed.
	upd := strings.Replace(cpuRule, `"window":"5m"`, `"window":"10m","enabled":false,"id":"`+created.ID+`"`, 1)
	r = e.do(req{method: "PUT", path: "/api/v1/alert-rules/" + created.ID, auth: bearer(op), body: upd})
	if got := decode[alert.Rule](t, r); r.status != http.StatusOK || got.Window.String() != "10m" || got.Enabled || got.ID != created.ID {
		t.Errorf("update = %s, want window 10m, disabled", r)
	}
	v1 := e.rulesVersion()

	// Refusals: nothing changes and the version stays.
	missing := "5b0c6a52-0000-4000-8000-000000000000"
	e.checkRefusals(t, []refusal{
		{"viewer creates", req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(viewer), body: cpuRule}, 403, ""},
		{"viewer updates", req{method: "PUT", path: "/api/v1/alert-rules/" + created.ID, auth: bearer(viewer), body: cpuRule}, 403, ""},
		{"viewer deletes", req{method: "DELETE", path: "/api/v1/alert-rules/" + created.ID, auth: bearer(viewer)}, 403, ""},
		{"no token", req{method: "GET", path: "/api/v1/alert-rules"}, 401, ""},
		{"update unknown", req{method: "PUT", path: "/api/v1/alert-rules/" + missing, auth: bearer(op), body: cpuRule}, 404, ""},
		{"update non-uuid", req{method: "PUT", path: "/api/v1/alert-rules/nope", auth: bearer(op), body: cpuRule}, 404, ""},
		{"update other id", req{method: "PUT", path: "/api/v1/alert-rules/" + created.ID, auth: bearer(op), body: strings.Replace(cpuRule, `{`, `{"id":"`+missing+`",`, 1)}, 400, "id"},
		{"delete unknown", req{method: "DELETE", path: "/api/v1/alert-rules/" + missing, auth: bearer(op)}, 404, ""},
		{"get unknown", req{method: "GET", path: "/api/v1/alert-rules/" + missing, auth: bearer(op)}, 404, ""},
	})
	if v := e.rulesVersion(); v != v1 {
		t.Errorf("rules version after refusals = %d, want %d", v, v1)
	}

	// Delete.
	if r := e.do(req{method: "DELETE", path: "/api/v1/alert-rules/" + created.ID, auth: bearer(op)}); r.status != http.StatusNoContent {
		t.Errorf("delete = %s, want 204", r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/alert-rules/" + created.ID, auth: bearer(op)}); r.status != http.StatusNotFound {
		t.Errorf("get after delete = %s, want 404", r)
	}
	if v := e.rulesVersion(); v != v1+1 {
		t.Errorf("rules version after delete = %d, want %d", v, v1+1)
	}

	want := []string{"op rule.create", "admin rule.create", "op rule.update", "op rule.delete"}
	if got := e.auditActions(admin, "rule."); !slices.Equal(got, want) {
		t.Errorf("rule audit = %q, want %q", got, want)
	}
}

// TestAlertRuleValidation shows that each invalid rule is refused with 400 naming the member,
// and that nothing is stored.
func TestAlertRuleValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	op := e.userToken(e.adminToken(), "op", "operator")

	// A channel that exists, so that the unknown one is the second entry.
	r := e.do(req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(op), body: `{"name":"ops","url":"https://hooks.example.com/x"}`})
	if r.status != http.StatusCreated {
		t.Fatalf("creating a channel = %s", r)
	}
	chID := decode[channelView](t, r).ID

	with := func(old, new string) string {
		if !strings.Contains(cpuRule, old) {
			t.Fatalf("%q is not in the rule", old)
		}
		return strings.Replace(cpuRule, old, new, 1)
	}
	tests := []struct {
		name, body, field, msg string
	}{
		{"blank name", with(`"name":"CPU busy"`, `"name":"  "`), "name", "blank"},
		{"no kind", with(`"kind":"threshold",`, ``), "kind", "required"},
		{"bad kind", with(`"kind":"threshold"`, `"kind":"magic"`), "kind", "magic"},
		{"no metric", with(`"metric":"cpu.usage_percent",`, ``), "metric", ""},
		{"bad aggregation", with(`"aggregation":"avg"`, `"aggregation":"p99"`), "aggregation", "p99"},
		{"no window", with(`"window":"5m",`, ``), "window", "required"},
		{"window 0s", with(`"window":"5m"`, `"window":"0s"`), "window", "at least 1s"},
		{"window 1ns", with(`"window":"5m"`, `"window":"1ns"`), "window", "must be at least 1s, got 1ns"},
		{"window over a day", with(`"window":"5m"`, `"window":"25h"`), "window", "must be at most 24h, got 25h"},
		{"for 1ns", with(`"for":"2m"`, `"for":"1ns"`), "for", "at least 1s, got 1ns"},
		{"threshold out of float range", with(`"critical":{"value":95}`, `"critical":{"value":1e400}`), "thresholds.critical.value", "out of the range of a 64-bit float"},
		{"negative threshold out of float range", with(`"recovery":70`, `"recovery":-1e400`), "thresholds.warning.recovery", "out of the range of a 64-bit float"},
		{"agent id not a UUID", with(`"for":"2m"`, `"for":"2m","agents":{"ids":["web-1"]}`), "agents.ids", `"web-1" is not a UUID`},
		{"channel not a UUID", with(`"for":"2m"`, `"for":"2m","channels":["ops"]`), "channels", `"ops" is not a UUID`},
		{"bad duration", with(`"window":"5m"`, `"window":"5x"`), "window", "invalid duration"},
		{"number duration", with(`"window":"5m"`, `"window":300`), "window", "want a string"},
		{"bad operator", with(`"operator":">"`, `"operator":"=>"`), "operator", "=>"},
		{"recovery on the wrong side", with(`"recovery":70`, `"recovery":90`), "thresholds.warning.recovery", "threshold"},
		{"critical below warning", with(`"critical":{"value":95}`, `"critical":{"value":50}`), "thresholds.critical.value", "warning"},
		{"threshold not a number", with(`"critical":{"value":95}`, `"critical":{"value":"high"}`), "thresholds.critical.value", "string"},
		{"severity on threshold rule", with(`"for":"2m"`, `"for":"2m","severity":"critical"`), "severity", "agent_silent"},
		{"unknown member", with(`"for":"2m"`, `"for":"2m","colour":"red"`), "colour", "unknown field"},
		{"unknown channel", with(`"for":"2m"`, `"for":"2m","channels":["`+chID+`","9d4c0000-0000-4000-8000-000000000000"]`), "channels[1]", "no notification channel"},
		{"channel not a string", with(`"for":"2m"`, `"for":"2m","channels":[7]`), "channels[0]", "number"},
		{"reserved label", with(`"labels":{"team":"infra"}`, `"labels":{"severity":"x"}`), "labels", "severity"},
		{"silent rule after 0s", `{"name":"quiet","kind":"agent_silent","after":"0s","severity":"critical"}`, "after", "at least 10s"},
		{"pipeline rule without pipeline", `{"name":"p","kind":"pipeline","severity":"critical"}`, "pipeline", "required"},
		{"pipeline unknown check", `{"name":"p","kind":"pipeline","severity":"critical","pipeline":{"check":"lagging"}}`, "pipeline.check", "lagging"},
		{"pipeline lag without bound", `{"name":"p","kind":"pipeline","severity":"critical","pipeline":{"check":"group_lag","groups":["pg-sync"]}}`, "pipeline.bound", "required"},
		{"pipeline lag without groups", `{"name":"p","kind":"pipeline","severity":"critical","pipeline":{"check":"group_lag","bound":5}}`, "pipeline.groups", "required"},
		{"pipeline unknown store", `{"name":"p","kind":"pipeline","severity":"critical","pipeline":{"check":"store_down","stores":["mysql"]}}`, "pipeline.stores", "mysql"},
		{"pipeline idle too short", `{"name":"p","kind":"pipeline","severity":"critical","pipeline":{"check":"no_consumer","groups":["pg-sync"],"idle":"1s"}}`, "pipeline.idle", "at least 10s"},
		{"pipeline on threshold rule", with(`"for":"2m"`, `"for":"2m","pipeline":{"check":"watchdog"}`), "pipeline", "only to pipeline rules"},
		{"silent rule after 1s", `{"name":"quiet","kind":"agent_silent","after":"1s","severity":"critical"}`, "after", "must be at least 10s, got 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(op), body: tt.body})
			if r.status != http.StatusBadRequest {
				t.Fatalf("create = %s, want 400", r)
			}
			eb := errorBodyOf(t, r)
			if !slices.Equal(eb.Details, []string{tt.field}) || !strings.Contains(eb.Error, tt.msg) {
				t.Errorf("create = %q %q, want details [%s] and a message with %q", eb.Error, eb.Details, tt.field, tt.msg)
			}
			if !strings.HasPrefix(eb.Error, tt.field) && !strings.Contains(eb.Error, tt.field) {
				t.Errorf("message %q does not name %s", eb.Error, tt.field)
			}
		})
	}
	if r := e.do(req{method: "GET", path: "/api/v1/alert-rules", auth: bearer(op)}); len(withoutBuiltins(decode[ruleList](t, r)).Rules) != 0 {
		t.Errorf("rules after refusals = %s, want none", r)
	}
	if v := e.rulesVersion(); v != 0 {
		t.Errorf("rules version after refusals = %d, want 0", v)
	}

	// The valid form of the last case is accepted, with the channel.
	r = e.do(req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(op), body: with(`"for":"2m"`, `"for":"2m","channels":["`+strings.ToUpper(chID)+`"]`)})
	if got := decode[alert.Rule](t, r); r.status != http.StatusCreated || !slices.Equal(got.Channels, []string{chID}) {
		t.Errorf("create with a channel = %s, want 201 naming %s", r, chID)
	}
}
