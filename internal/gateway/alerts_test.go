package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// seedActive stores active alerts in Redis as the alerter does, each in its agent's shard.
func (e *env) seedActive(alerts ...alert.Active) {
	e.t.Helper()
	for _, a := range alerts {
		b, err := json.Marshal(a)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := e.rdb.HSet(context.Background(), alertredis.ActiveKey(e.prefix, alertredis.Shard(a.AgentID, e.cfg.Publish.Shards)), a.ID, b).Err(); err != nil {
			e.t.Fatalf("seeding active alert: %v", err)
		}
	}
}

func TestActiveAlertsAndAck(t *testing.T) {
	t.Parallel()
	e, admin, op, viewer := newRolesEnv(t)
	since := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	th := 95.0

	if r := e.do(req{method: "GET", path: "/api/v1/alerts", auth: bearer(viewer)}); r.status != http.StatusOK || string(r.body) != `{"alerts":[]}` {
		t.Errorf("alerts with none active = %s, want an empty list", r)
	}

	pending := alert.Active{ID: alert.ID("r1", "a1", ""), RuleID: "r1", RuleName: "CPU busy", Kind: "threshold",
		AgentID: "a1", Metric: "cpu.usage_percent", Status: alert.StatusPending, Severity: "warning", Value: 85, Since: since}
	firing := alert.Active{ID: alert.ID("r1", "a2", "core=0"), RuleID: "r1", RuleName: "CPU busy", Kind: "threshold",
		AgentID: "a2", Series: "core=0", Metric: "cpu.usage_percent", Status: alert.StatusFiring, Severity: "critical",
		Value: 99, Threshold: &th, Since: since.Add(time.Minute), FiringSince: &since, Labels: map[string]string{"team": "infra"}}
	e.seedActive(pending, firing)

	r := e.do(req{method: "GET", path: "/api/v1/alerts", auth: bearer(viewer)})
	list := decode[activeList](t, r)
	if r.status != http.StatusOK || len(list.Alerts) != 2 || list.Alerts[0].ID != firing.ID || list.Alerts[1].ID != pending.ID ||
		*list.Alerts[0].Threshold != 95 || list.Alerts[0].Labels["team"] != "infra" || list.Alerts[0].Ack != nil {
		t.Fatalf("alerts = %s, want the firing one, then the pending one, unacknowledged", r)
	}

	// Acknowledge: shown on the active alert and recorded in PostgreSQL with who and when.
	before := time.Now().Add(-time.Second)
	r = e.do(req{method: "POST", path: "/api/v1/alerts/" + firing.ID + "/ack", auth: bearer(op), body: `{"comment":"looking into it"}`})
	ack := decode[ackAnswer](t, r)
	if r.status != http.StatusOK || ack.AlertID != firing.ID || ack.By != "op" || ack.Comment != "looking into it" || ack.At.Before(before) {
		t.Fatalf("ack = %s, want 200 by op now with the comment", r)
	}
	list = decode[activeList](t, e.do(req{method: "GET", path: "/api/v1/alerts", auth: bearer(viewer)}))
	if a := list.Alerts[0].Ack; a == nil || a.By != "op" || a.Comment != "looking into it" || !a.At.Equal(ack.At) {
		t.Errorf("acknowledged alert's ack = %+v, want op's", a)
	}
	acks, err := postgres.NewAckStore(e.db).List(context.Background(), firing.ID)
	if err != nil || len(acks) != 1 || acks[0].By != "op" || acks[0].Comment != "looking into it" || acks[0].At.Sub(ack.At).Abs() > time.Millisecond {
		t.Errorf("recorded acks = %+v, %v, want op's", acks, err)
	}

	tests := []struct {
		name   string
		r      req
		status int
	}{
		{"viewer acks", req{method: "POST", path: "/api/v1/alerts/" + pending.ID + "/ack", auth: bearer(viewer), body: `{}`}, 403},
		{"not active", req{method: "POST", path: "/api/v1/alerts/" + alert.ID("r9", "a9", "") + "/ack", auth: bearer(op), body: `{}`}, 404},
		{"not an alert id", req{method: "POST", path: "/api/v1/alerts/xyz/ack", auth: bearer(op), body: `{}`}, 404},
		{"control characters", req{method: "POST", path: "/api/v1/alerts/" + pending.ID + "/ack", auth: bearer(op), body: `{"comment":"a\u0007b"}`}, 400},
		{"comment too long", req{method: "POST", path: "/api/v1/alerts/" + pending.ID + "/ack", auth: bearer(op), body: `{"comment":"` + strings.Repeat("x", 1025) + `"}`}, 400},
		{"unknown member", req{method: "POST", path: "/api/v1/alerts/" + pending.ID + "/ack", auth: bearer(op), body: `{"by":"mallory"}`}, 400},
		{"no body", req{method: "POST", path: "/api/v1/alerts/" + pending.ID + "/ack", auth: bearer(op)}, 415},
		{"no token", req{method: "GET", path: "/api/v1/alerts"}, 401},
	}
	for _, tt := range tests {
		if r := e.do(tt.r); r.status != tt.status {
			t.Errorf("%s = %s, want %d", tt.name, r, tt.status)
		}
	}
	list = decode[activeList](t, e.do(req{method: "GET", path: "/api/v1/alerts", auth: bearer(viewer)}))
	if list.Alerts[1].Ack != nil {
		t.Errorf("pending alert's ack after refusals = %+v, want none", list.Alerts[1].Ack)
	}
	if acks, err := postgres.NewAckStore(e.db).List(context.Background(), pending.ID); err != nil || len(acks) != 0 {
		t.Errorf("recorded acks of the pending alert = %+v, %v, want none", acks, err)
	}
	if got := e.auditActions(admin, "alert."); !slices.Equal(got, []string{"op alert.ack"}) {
		t.Errorf("alert audit = %q, want one ack by op", got)
	}
}

func TestAlertHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	viewer := e.userToken(e.adminToken(), "watcher", "viewer")
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	// Twelve transitions, a minute apart: agents a0-a2, rules r0-r1, severities alternating.
	var events []postgres.AlertEvent
	for i := range 12 {
		ev := testEvent(i, 0)
		ev.AgentID, ev.RuleID = fmt.Sprintf("a%d", i%3), fmt.Sprintf("r%d", i%2)
		ev.Severity = []string{"warning", "critical"}[i/6]
		ev.At = base.Add(time.Duration(i) * time.Minute)
		events = append(events, postgres.AlertEventFrom(ev))
	}
	if err := postgres.NewAlertEventStore(e.db).Insert(context.Background(), events); err != nil {
		t.Fatal(err)
	}

	history := func(query string) (ids []string, total int) {
		t.Helper()
		r := e.do(req{method: "GET", path: "/api/v1/alerts/history?" + query, auth: bearer(viewer)})
		if r.status != http.StatusOK {
			t.Fatalf("history?%s = %s, want 200", query, r)
		}
		h := decode[alertHistory](t, r)
		for _, ev := range h.Events {
			ids = append(ids, strings.TrimPrefix(ev.ID, "ev-0000"))
		}
		return ids, h.Total
	}
	at := func(i int) string {
		return url.QueryEscape(base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339))
	}
	tests := []struct {
		query string
		want  []string
		total int
	}{
		{"", []string{"11", "10", "09", "08", "07", "06", "05", "04", "03", "02", "01", "00"}, 12},
		{"limit=3", []string{"11", "10", "09"}, 12},
		{"limit=3&offset=10", []string{"01", "00"}, 12},
		{"agent=a1", []string{"10", "07", "04", "01"}, 4},
		{"rule=r0&agent=a0", []string{"06", "00"}, 2},
		{"severity=critical&rule=r1", []string{"11", "09", "07"}, 3},
		{"from=" + at(3) + "&to=" + at(6), []string{"05", "04", "03"}, 3},
		{"from=" + at(10), []string{"11", "10"}, 2},
		{"to=" + at(1), []string{"00"}, 1},
		{"agent=nobody", nil, 0},
	}
	for _, tt := range tests {
		ids, total := history(tt.query)
		if !slices.Equal(ids, tt.want) || total != tt.total {
			t.Errorf("history?%s = %v (total %d), want %v (total %d)", tt.query, ids, total, tt.want, tt.total)
		}
	}

	// One event in full.
	r := e.do(req{method: "GET", path: "/api/v1/alerts/history?limit=1", auth: bearer(viewer)})
	h := decode[alertHistory](t, r)
	if ev := h.Events[0]; ev.AlertID != events[11].AlertID || ev.From != "pending" || ev.To != "firing" || *ev.Threshold != 90 ||
		ev.Value != 97.5 || !ev.At.Equal(events[11].At) || h.Limit != 1 || h.Offset != 0 {
		t.Errorf("newest event = %+v, want event 11 in full", h)
	}

	refusals := []struct{ query, msg string }{
		{"severity=info", "severity"},
		{"from=yesterday", "from"},
		{"to=2025-06-01", "to"},
		{"from=" + at(5) + "&to=" + at(5), "before"},
		{"limit=0", "limit"},
		{"limit=5000", "limit"},
		{"offset=-1", "offset"},
		{"agent=" + strings.Repeat("x", 129), "agent"},
		{"rule=a%00b", "rule"},
	}
	for _, tt := range refusals {
		r := e.do(req{method: "GET", path: "/api/v1/alerts/history?" + tt.query, auth: bearer(viewer)})
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), tt.msg) {
			t.Errorf("history?%s = %s, want 400 naming %s", tt.query, r, tt.msg)
		}
	}
	if r := e.do(req{method: "GET", path: "/api/v1/alerts/history"}); r.status != http.StatusUnauthorized {
		t.Errorf("history without a token = %s, want 401", r)
	}
}
