package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func sampleEvent(id string, at time.Time) postgres.AlertEvent {
	return postgres.AlertEvent{
		ID: id, AlertID: "alert-1", RuleID: "rule-1", RuleName: "CPU busy", Kind: "threshold",
		AgentID: "agent-1", Series: "core=total", Metric: "cpu.usage_percent", From: "pending", To: "firing",
		Severity: "warning", Value: 91.5, Threshold: fp(80), At: at,
		Labels: map[string]string{"team": "infra"}, Summary: "CPU busy on agent-1",
	}
}

func TestAlertEventFrom(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ev := alert.Event{
		ID: "e1", AlertID: "a1", RuleID: "r1", RuleName: "CPU", Kind: "threshold", AgentID: "ag1",
		Series: "core=0", Metric: "cpu.usage", From: "firing", To: "resolved", Severity: "critical",
		Value: 40, Threshold: fp(95), RecoveryValue: fp(40), DurationSeconds: 300, At: at,
		Labels: map[string]string{"team": "infra"}, Summary: "s", Channels: []string{"c1"}, Notify: true,
	}
	want := postgres.AlertEvent{
		ID: "e1", AlertID: "a1", RuleID: "r1", RuleName: "CPU", Kind: "threshold", AgentID: "ag1",
		Series: "core=0", Metric: "cpu.usage", From: "firing", To: "resolved", Severity: "critical",
		Value: 40, Threshold: fp(95), RecoveryValue: fp(40), DurationSeconds: 300, At: at,
		Labels: map[string]string{"team": "infra"}, Summary: "s",
	}
	if got := postgres.AlertEventFrom(ev); !reflect.DeepEqual(got, want) {
		t.Errorf("AlertEventFrom(%+v) = %+v, want %+v", ev, got, want)
	}
}

func TestAlertEventInsertIsIdempotent(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	at := time.Date(2025, 6, 1, 12, 0, 0, 123456000, time.UTC)

	resolved := sampleEvent("e2", at.Add(time.Minute))
	resolved.From, resolved.To, resolved.Severity = "firing", "resolved", "warning"
	resolved.Value, resolved.RecoveryValue, resolved.DurationSeconds = 69.25, fp(69.25), 60.5
	resolved.Threshold = nil
	resolved.Labels = nil
	resolved.Series = `host="a,b" \ 'c'` // quoting inside the arrays
	inf := sampleEvent("e3", at.Add(2*time.Minute))
	inf.Value = math.Inf(1)
	batch := []postgres.AlertEvent{sampleEvent("e1", at), resolved, inf}

	counting, statements := testenv.CountingPostgres(t, pg.url)
	countingStore := postgres.NewAlertEventStore(counting)
	if err := countingStore.Insert(ctx, batch); err != nil {
		t.Fatalf("Insert = %v", err)
	}
	if n := statements.Load(); n != 1 {
		t.Errorf("Insert of %d events sent %d statements, want 1", len(batch), n)
	}
	// The same events again, and one of them twice in one batch: nothing changes.
	if err := pg.events.Insert(ctx, append(batch, batch[0])); err != nil {
		t.Fatalf("Insert again = %v", err)
	}
	got, total, err := pg.events.History(ctx, postgres.HistoryFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if total != 3 || len(got) != 3 {
		t.Fatalf("History after inserting twice = %d events, total %d; want 3", len(got), total)
	}
	for i, want := range []postgres.AlertEvent{inf, resolved, batch[0]} {
		g := got[i]
		if g.CreatedAt.IsZero() {
			t.Errorf("event %s has no created_at", g.ID)
		}
		g.CreatedAt = time.Time{}
		if want.Labels == nil {
			want.Labels = map[string]string{}
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("History[%d] = %+v, want %+v", i, g, want)
		}
	}
	// A new id twice within one batch is stored once.
	twice := sampleEvent("e4", at.Add(3*time.Minute))
	if err := pg.events.Insert(ctx, []postgres.AlertEvent{twice, twice}); err != nil {
		t.Fatalf("Insert(same new event twice) = %v", err)
	}
	if _, total, err := pg.events.History(ctx, postgres.HistoryFilter{Limit: 10}); err != nil || total != 4 {
		t.Errorf("History after inserting a new event twice in one batch: total %d, %v; want 4", total, err)
	}
	if err := pg.events.Insert(ctx, nil); err != nil {
		t.Errorf("Insert(nil) = %v, want nil", err)
	}
}

func TestAlertEventInsertRefusesInvalid(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		edit func(e *postgres.AlertEvent)
	}{
		{"no id", func(e *postgres.AlertEvent) { e.ID = "" }},
		{"no alert id", func(e *postgres.AlertEvent) { e.AlertID = "" }},
		{"no to", func(e *postgres.AlertEvent) { e.To = "" }},
		{"no time", func(e *postgres.AlertEvent) { e.At = time.Time{} }},
		{"NUL in summary", func(e *postgres.AlertEvent) { e.Summary = "a\x00b" }},
		{"invalid UTF-8 label", func(e *postgres.AlertEvent) { e.Labels = map[string]string{"k": "\xff"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := sampleEvent("bad", at)
			tt.edit(&bad)
			if err := bad.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want an error", bad)
			}
			err := pg.events.Insert(ctx, []postgres.AlertEvent{sampleEvent("good", at), bad})
			if !errors.Is(err, postgres.ErrInvalid) {
				t.Errorf("Insert(good, bad) = %v, want ErrInvalid", err)
			}
		})
	}
	if _, total, err := pg.events.History(ctx, postgres.HistoryFilter{Limit: 10}); err != nil || total != 0 {
		t.Errorf("History after refused inserts: total %d, %v; want 0 (nothing stored)", total, err)
	}
}

func TestAlertEventHistory(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

	// 12 events, one a minute: agents a0/a1/a2 in turn, rules r0/r1 in turn, severities
	// warning, warning, critical in turn. ids e00..e11 in time order.
	var events []postgres.AlertEvent
	for i := range 12 {
		e := sampleEvent(fmt.Sprintf("e%02d", i), t0.Add(time.Duration(i)*time.Minute))
		e.AgentID = fmt.Sprintf("a%d", i%3)
		e.RuleID = fmt.Sprintf("r%d", i%2)
		e.Severity = []string{"warning", "warning", "critical"}[i%3]
		events = append(events, e)
	}
	// Two events at the same instant are ordered by id, newest (greatest) first.
	tie := sampleEvent("e05b", t0.Add(5*time.Minute))
	tie.AgentID, tie.RuleID, tie.Severity = "a9", "r9", "warning"
	events = append(events, tie)
	if err := pg.events.Insert(ctx, events); err != nil {
		t.Fatal(err)
	}

	ids := func(es []postgres.AlertEvent) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	tests := []struct {
		name  string
		f     postgres.HistoryFilter
		want  []string
		total int
	}{
		{"first page", postgres.HistoryFilter{Limit: 4}, []string{"e11", "e10", "e09", "e08"}, 13},
		{"second page", postgres.HistoryFilter{Limit: 4, Offset: 4}, []string{"e07", "e06", "e05b", "e05"}, 13},
		{"past the end", postgres.HistoryFilter{Limit: 4, Offset: 20}, []string{}, 13},
		{"agent", postgres.HistoryFilter{AgentID: "a1", Limit: 10}, []string{"e10", "e07", "e04", "e01"}, 4},
		{"rule", postgres.HistoryFilter{RuleID: "r0", Limit: 3}, []string{"e10", "e08", "e06"}, 6},
		{"severity", postgres.HistoryFilter{Severity: "critical", Limit: 10}, []string{"e11", "e08", "e05", "e02"}, 4},
		{"agent and rule", postgres.HistoryFilter{AgentID: "a0", RuleID: "r1", Limit: 10}, []string{"e09", "e03"}, 2},
		{"from inclusive", postgres.HistoryFilter{From: t0.Add(9 * time.Minute), Limit: 10}, []string{"e11", "e10", "e09"}, 3},
		{"to exclusive", postgres.HistoryFilter{To: t0.Add(2 * time.Minute), Limit: 10}, []string{"e01", "e00"}, 2},
		{"range", postgres.HistoryFilter{From: t0.Add(4 * time.Minute), To: t0.Add(6 * time.Minute), Limit: 10}, []string{"e05b", "e05", "e04"}, 3},
		{"range with paging", postgres.HistoryFilter{From: t0.Add(4 * time.Minute), To: t0.Add(6 * time.Minute), Limit: 1, Offset: 1}, []string{"e05"}, 3},
		{"everything combined", postgres.HistoryFilter{AgentID: "a2", RuleID: "r1", Severity: "critical", From: t0.Add(time.Minute), To: t0.Add(time.Hour), Limit: 10}, []string{"e11", "e05"}, 2},
		{"no match", postgres.HistoryFilter{AgentID: "nobody", Limit: 10}, []string{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, total, err := pg.events.History(ctx, tt.f)
			if err != nil {
				t.Fatalf("History(%+v) = %v", tt.f, err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) || total != tt.total {
				t.Errorf("History(%+v) = %v total %d, want %v total %d", tt.f, ids(got), total, tt.want, tt.total)
			}
		})
	}

	bad := []postgres.HistoryFilter{
		{Limit: 0},
		{Limit: 10, Offset: -1},
		{Limit: 10, Severity: "fatal"},
		{Limit: 10, From: t0, To: t0},
		{Limit: 10, From: t0.Add(time.Hour), To: t0},
	}
	for _, f := range bad {
		if _, _, err := pg.events.History(ctx, f); !errors.Is(err, postgres.ErrInvalid) {
			t.Errorf("History(%+v) = %v, want ErrInvalid", f, err)
		}
	}
}

func TestAlertEventWithoutAgent(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	pipe := sampleEvent("e1", at)
	pipe.Kind, pipe.AgentID, pipe.Series = string(alert.KindPipeline), "", "influx-writer"
	if err := pipe.Validate(); err != nil {
		t.Errorf("Validate(pipeline event without agent) = %v, want nil", err)
	}
	thr := sampleEvent("e2", at)
	thr.AgentID = ""
	if err := thr.Validate(); err == nil {
		t.Errorf("Validate(threshold event without agent) = nil, want an error")
	}
	pg := newStores(t)
	if err := pg.events.Insert(t.Context(), []postgres.AlertEvent{pipe}); err != nil {
		t.Fatalf("Insert(pipeline event) = %v", err)
	}
	got, _, err := pg.events.History(t.Context(), postgres.HistoryFilter{RuleID: pipe.RuleID, Limit: 10})
	if err != nil || len(got) != 1 || got[0].AgentID != "" || got[0].Series != "influx-writer" {
		t.Errorf("List = %+v, %v, want the pipeline event without agent", got, err)
	}
}
