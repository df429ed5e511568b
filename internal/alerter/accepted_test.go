package alerter_test

import (
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// TestAgentSilentJudgedByAcceptedBatches: with last_seen in PostgreSQL stuck (pg-sync behind),
// an agent whose batches the gateway accepts is not silent, one that sends nothing is; nothing
// fires while the accepted record is younger than after or while the metrics streams lag.
func TestAgentSilentJudgedByAcceptedBatches(t *testing.T) {
	e := newEnv(t)
	reporting := e.createAgent(t, "reporting", nil)
	quiet := e.createAgent(t, "quiet", nil)
	t0 := reporting.CreatedAt.Add(time.Second)
	// pg-sync wrote both agents' last_seen once, then stopped.
	if err := e.agents.TouchLastSeen(t.Context(), map[string]time.Time{reporting.ID: t0, quiet.ID: t0}); err != nil {
		t.Fatal(err)
	}
	e.createRule(t, alert.Rule{Name: "silent", Kind: alert.KindAgentSilent, After: alert.Duration(time.Minute),
		Severity: alert.SeverityCritical, Summary: "{{.Agent}} silent", Enabled: true})
	streams := stream.StreamKeys(e.prefix, 2)
	r := e.replica(t)
	r.eval.JudgeSilenceByAccepted(streams, "alerter", 3)
	accept := func(id string, at time.Time) {
		t.Helper()
		if err := e.rdb.HSet(t.Context(), hotcache.AcceptedKey(e.prefix, stream.ShardFor(id, len(streams))), id, at.UnixNano()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(now time.Time) []string {
		t.Helper()
		if err := r.eval.CheckSilent(t.Context(), now); err != nil {
			t.Fatalf("CheckSilent(%s) = %v", now, err)
		}
		var firing []string
		for _, a := range e.active(t) {
			if a.Status == "firing" {
				firing = append(firing, a.AgentID)
			}
		}
		slices.Sort(firing)
		return firing
	}

	// The first check starts the accepted record (as after a Redis restart that lost it): for one
	// `after` nothing can be told, and nothing fires although last_seen is two minutes old.
	if got := check(t0.Add(2 * time.Minute)); len(got) != 0 {
		t.Fatalf("firing with a new accepted record = %v, want none", got)
	}
	if got := check(t0.Add(2*time.Minute + 50*time.Second)); len(got) != 0 {
		t.Fatalf("firing 50s into the accepted record = %v, want none", got)
	}
	// The gateway keeps accepting batches of reporting; last_seen stays at t0.
	for s := 0; s <= 300; s += 10 {
		accept(reporting.ID, t0.Add(2*time.Minute+time.Duration(s)*time.Second))
	}
	if got, want := check(t0.Add(7*time.Minute+5*time.Second)), []string{quiet.ID}; !slices.Equal(got, want) {
		t.Fatalf("firing = %v, want only quiet (%v)", got, want)
	}

	// The metrics streams lag behind (4 entries not yet delivered to the group, bound 3): reporting
	// goes quiet but is held back; once the group caught up it fires.
	for i := range 4 {
		if err := e.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: streams[i%2], Values: []string{"k", "v"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range streams {
		if err := e.rdb.XGroupCreate(t.Context(), s, "alerter", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := check(t0.Add(20*time.Minute)), []string{quiet.ID}; !slices.Equal(got, want) {
		t.Fatalf("firing while the streams lag = %v, want still only quiet", got)
	}
	for _, s := range streams {
		if err := e.rdb.XGroupSetID(t.Context(), s, "alerter", "$").Err(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{quiet.ID, reporting.ID}
	slices.Sort(want)
	if got := check(t0.Add(20 * time.Minute)); !slices.Equal(got, want) {
		t.Fatalf("firing once caught up = %v, want both %v", got, want)
	}
	var firedAt time.Time
	for _, ev := range e.streamEvents(t) {
		if ev.AgentID == reporting.ID && ev.To == alert.StatusFiring {
			firedAt = ev.At
		}
	}
	if want := t0.Add(8 * time.Minute); !firedAt.Equal(want) {
		t.Errorf("reporting fired at %s, want its last accepted batch + after = %s", firedAt, want)
	}
}
