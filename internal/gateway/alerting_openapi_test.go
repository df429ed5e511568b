package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// checkAgainstDoc sends r through the gateway's handler and validates the request (unless
// invalid is set) and the answer against the document; it returns the answer.
func checkAgainstDoc(t *testing.T, router routers.Router, e *env, r req, invalid bool) resp {
	t.Helper()
	body, _ := r.body.(string)
	hr := httptest.NewRequest(r.method, "http://gateway"+r.path, bytes.NewReader([]byte(body)))
	if body != "" {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	if r.auth != "" {
		hr.Header.Set("Authorization", r.auth)
	}
	route, params, err := router.FindRoute(hr)
	if err != nil {
		t.Errorf("%s %s: not found in the document: %v", r.method, r.path, err)
		return resp{}
	}
	in := &openapi3filter.RequestValidationInput{
		Request: hr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if !invalid {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: request does not match the document: %v", r.method, r.path, err)
		}
	}
	hr.Body = io.NopCloser(bytes.NewReader([]byte(body)))
	rec := httptest.NewRecorder()
	e.g.Handler().ServeHTTP(rec, hr)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s answered %d %s, which does not match the document: %v", r.method, r.path, rec.Code, rec.Body, err)
	}
	if rec.Code >= 500 {
		t.Errorf("%s %s = %d %s", r.method, r.path, rec.Code, rec.Body)
	}
	return resp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// TestOpenAPIDescribesAlerting validates the requests and answers of the alerting routes
// against the document, as TestOpenAPIDescribesAnswers does for the others.
func TestOpenAPIDescribesAlerting(t *testing.T) {
	t.Parallel()
	router := openAPIRouter(t)
	e := newEnv(t, nil)
	admin := bearer(e.adminToken())
	viewer := bearer(e.userToken(e.adminToken(), "watcher", "viewer"))
	check := func(r req) resp { t.Helper(); return checkAgainstDoc(t, router, e, r, false) }
	refused := func(r req) resp { t.Helper(); return checkAgainstDoc(t, router, e, r, true) }

	r := check(req{method: "POST", path: "/api/v1/notification-channels", auth: admin, body: `{"name":"ops","url":"https://hooks.example.com/x","secret":"k","headers":{"X-Team":"infra"}}`})
	ch := decode[channelView](t, r)
	check(req{method: "GET", path: "/api/v1/notification-channels", auth: admin})
	check(req{method: "GET", path: "/api/v1/notification-channels/" + ch.ID, auth: admin})
	check(req{method: "PUT", path: "/api/v1/notification-channels/" + ch.ID, auth: admin, body: `{"name":"ops","url":"https://hooks.example.com/y","enabled":false}`})
	check(req{method: "GET", path: "/api/v1/notification-channels", auth: viewer})
	refused(req{method: "POST", path: "/api/v1/notification-channels", auth: admin, body: `{"name":"x","url":"ftp://x"}`})

	rule := `{"name":"CPU busy","kind":"threshold","metric":"cpu.usage_percent","tags":{"core":"total"},"agents":{"labels":{"env":"prod"}},
		"aggregation":"avg","window":"5m","operator":">","thresholds":{"warning":{"value":80,"recovery":70},"critical":{"value":95}},
		"for":"2m","labels":{"team":"infra"},"summary":"{{.Rule}} at {{.Value}}","channels":["` + ch.ID + `"]}`
	r = check(req{method: "POST", path: "/api/v1/alert-rules", auth: admin, body: rule})
	id := decode[struct {
		ID string `json:"id"`
	}](t, r).ID
	check(req{method: "POST", path: "/api/v1/alert-rules", auth: admin, body: `{"name":"Silent","kind":"agent_silent","after":"5m","severity":"critical","agents":{"ids":["9d4c1f6e-0000-4000-8000-0000000000b1"]},"enabled":false}`})
	check(req{method: "GET", path: "/api/v1/alert-rules", auth: viewer})
	check(req{method: "GET", path: "/api/v1/alert-rules/" + id, auth: viewer})
	check(req{method: "PUT", path: "/api/v1/alert-rules/" + id, auth: admin, body: `{"name":"CPU busy","kind":"threshold","metric":"cpu.usage_percent","aggregation":"last","operator":">","thresholds":{"critical":{"value":95}}}`})
	refused(req{method: "POST", path: "/api/v1/alert-rules", auth: admin, body: `{"name":"x","kind":"threshold","window":"5x"}`})
	check(req{method: "POST", path: "/api/v1/alert-rules", auth: admin, body: rule}) // 409
	check(req{method: "DELETE", path: "/api/v1/notification-channels/" + ch.ID, auth: admin})
	check(req{method: "DELETE", path: "/api/v1/alert-rules/" + id, auth: admin})
	check(req{method: "GET", path: "/api/v1/alert-rules/" + id, auth: viewer})

	now := time.Now().UTC().Truncate(time.Second)
	r = check(req{method: "POST", path: "/api/v1/silences", auth: admin, body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1","labels":{"team":"infra"}},"starts_at":"` +
		now.Format(time.RFC3339) + `","ends_at":"` + now.Add(time.Hour).Format(time.RFC3339) + `","comment":"migration"}`})
	sid := decode[struct {
		ID string `json:"id"`
	}](t, r).ID
	check(req{method: "POST", path: "/api/v1/silences", auth: admin, body: `{"matchers":{"agent_id":"9d4c1f6e-0000-4000-8000-0000000000b1"},"weekly":{"days":["sat"],"start":"22:00","end":"06:00","time_zone":"UTC"}}`})
	check(req{method: "GET", path: "/api/v1/silences?expired=true", auth: viewer})
	check(req{method: "GET", path: "/api/v1/silences/" + sid, auth: viewer})
	refused(req{method: "POST", path: "/api/v1/silences", auth: admin, body: `{"matchers":{}}`})
	check(req{method: "DELETE", path: "/api/v1/silences/" + sid, auth: admin})

	th := 95.0
	since := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	firing := alert.Active{ID: alert.ID("r1", "a2", ""), RuleID: "r1", RuleName: "CPU busy", Kind: "threshold",
		AgentID: "a2", Metric: "cpu.usage_percent", Status: alert.StatusFiring, Severity: "critical",
		Value: 99, Threshold: &th, Since: since, FiringSince: &since, Labels: map[string]string{"team": "infra"}}
	e.seedActive(firing)
	check(req{method: "POST", path: "/api/v1/alerts/" + firing.ID + "/ack", auth: admin, body: `{"comment":"on it"}`})
	check(req{method: "POST", path: "/api/v1/alerts/" + alert.ID("x", "y", "") + "/ack", auth: admin, body: `{}`})
	check(req{method: "GET", path: "/api/v1/alerts", auth: viewer})

	ev := testEvent(1, 0)
	resolved := testEvent(2, 0)
	resolved.From, resolved.To, resolved.DurationSeconds = alert.StatusFiring, alert.StatusResolved, 120
	rv := 42.0
	resolved.RecoveryValue = &rv
	if err := postgres.NewAlertEventStore(e.db).Insert(context.Background(), []postgres.AlertEvent{postgres.AlertEventFrom(ev), postgres.AlertEventFrom(resolved)}); err != nil {
		t.Fatal(err)
	}
	check(req{method: "GET", path: "/api/v1/alerts/history?agent=agent-1&rule=rule-1&severity=critical&from=2025-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&limit=10&offset=0", auth: viewer})
	refused(req{method: "GET", path: "/api/v1/alerts/history?severity=info", auth: viewer})

	check(req{method: "GET", path: "/api/v1/ws/alerts"})
	check(req{method: "GET", path: "/api/v1/ws/alerts", auth: viewer}) // no upgrade: 426
}
