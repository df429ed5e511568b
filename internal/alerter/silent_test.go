package alerter_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// concurrently runs fn on every replica at once and fails the test on any error.
func concurrently(t *testing.T, rs []*replica, fn func(ctx context.Context, r *replica) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(rs))
	for i, r := range rs {
		wg.Go(func() { errs[i] = fn(t.Context(), r) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestAgentSilentFiresOnceAcrossCopiesAndResolves(t *testing.T) {
	e := newEnv(t)
	never := e.createAgent(t, "never-sent", nil)
	quiet := e.createAgent(t, "went-quiet", map[string]string{"env": "prod"})
	e.createAgent(t, "not-selected", nil)
	created := never.CreatedAt
	seen := created.Add(10 * time.Second)
	if err := e.agents.TouchLastSeen(t.Context(), map[string]time.Time{quiet.ID: seen}); err != nil {
		t.Fatal(err)
	}
	rule := e.createRule(t, alert.Rule{Name: "silent", Kind: alert.KindAgentSilent, After: alert.Duration(time.Minute),
		Severity: alert.SeverityCritical, Agents: alert.AgentSelector{IDs: []string{never.ID, quiet.ID}},
		Summary: "{{.Agent}} silent", Enabled: true})
	rs := []*replica{e.replica(t), e.replica(t)}
	sub := e.subscribe(t)
	check := func(now time.Time) {
		t.Helper()
		concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.eval.CheckSilent(ctx, now) })
	}

	check(created.Add(30 * time.Second))
	if evs := e.streamEvents(t); len(evs) != 0 {
		t.Fatalf("events 30s after registration = %v, want none (after is 1m)", transitions(evs))
	}
	// Both silent for more than a minute: the one that never sent counts from registration.
	check(created.Add(80 * time.Second))
	check(created.Add(85 * time.Second)) // still silent: nothing new
	events := e.streamEvents(t)
	if got, want := transitions(events), []string{"ok>firing(critical)", "ok>firing(critical)"}; !slices.Equal(got, want) {
		t.Fatalf("transitions = %v, want %v", got, want)
	}
	firingAt := map[string]time.Time{never.ID: created.Add(time.Minute), quiet.ID: seen.Add(time.Minute)}
	for _, ev := range events {
		if !ev.At.Equal(firingAt[ev.AgentID]) || ev.Value != 60 || ev.Kind != "agent_silent" || ev.Series != "" || !ev.Notify {
			t.Errorf("firing event %+v, want at %s (last report + after), value 60", ev, firingAt[ev.AgentID])
		}
	}

	// went-quiet reports again; once the copies' registry snapshots see it, it resolves.
	seen2 := created.Add(100 * time.Second)
	if err := e.agents.TouchLastSeen(t.Context(), map[string]time.Time{quiet.ID: seen2}); err != nil {
		t.Fatal(err)
	}
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.agents.Refresh(ctx) })
	check(created.Add(110 * time.Second))
	check(created.Add(115 * time.Second))
	events = e.streamEvents(t)
	if len(events) != 3 {
		t.Fatalf("transitions = %v, want 2 firing and 1 resolved", transitions(events))
	}
	resolved := events[2]
	if resolved.AgentID != quiet.ID || resolved.To != "resolved" || !resolved.At.Equal(seen2) ||
		resolved.RecoveryValue == nil || *resolved.RecoveryValue != 90 || resolved.DurationSeconds != 30 {
		t.Errorf("resolved event %+v, want went-quiet at %s after 90s of silence, firing 30s", resolved, seen2)
	}
	if resolved.Summary != "went-quiet silent" || resolved.Labels["env"] != "prod" {
		t.Errorf("resolved summary %q labels %v, want the agent's name and labels", resolved.Summary, resolved.Labels)
	}
	if published := sub.received(t); !slices.Equal(sortedIDs(published), sortedIDs(events)) {
		t.Errorf("published %v, want each stream event once: %v", transitions(published), transitions(events))
	}
	active := e.active(t)
	if a, ok := active[never.ID+"/"]; len(active) != 1 || !ok || a.Status != "firing" ||
		a.ID != alert.ID(rule.ID, never.ID, "") {
		t.Errorf("active alerts %v, want never-sent firing only", active)
	}
}

func TestRuleChangeTakesEffectWithoutRestart(t *testing.T) {
	e := newEnv(t)
	agent := e.createAgent(t, "web-1", nil)
	rule := e.createRule(t, cpuRule(0)) // critical above 80
	r := e.replica(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.rules.Run(ctx, 20*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Rules.Run = %v, want nil", err)
		}
	}()

	handle(t, r, entry(agent.ID, cpu{"0", 60, at(0)}))
	if evs := e.streamEvents(t); len(evs) != 0 {
		t.Fatalf("60 under threshold 80: events %v, want none", transitions(evs))
	}
	change := func(rule alert.Rule) {
		t.Helper()
		if _, err := e.rules.Update(t.Context(), rule, "test"); err != nil {
			t.Fatalf("Update = %v", err)
		}
		if err := alertredis.BumpRulesVersion(t.Context(), e.rdb, e.prefix); err != nil {
			t.Fatal(err)
		}
		want, _ := alertredis.RulesVersion(t.Context(), e.rdb, e.prefix)
		testenv.Eventually(t, 5*time.Second, func() string {
			if v := r.rules.Version(); v != want {
				return "rules not reloaded after the version bump"
			}
			return ""
		})
	}
	rule.Thresholds.Critical = &alert.Threshold{Value: ptr(50), Recovery: ptr(40)}
	change(rule)
	handle(t, r, entry(agent.ID, cpu{"0", 60, at(1)}))
	if got, want := transitions(e.streamEvents(t)), []string{"ok>firing(critical)"}; !slices.Equal(got, want) {
		t.Fatalf("after lowering the threshold to 50: %v, want %v", got, want)
	}

	// Disabling the rule ends its alert, with no recovery value.
	rule.Enabled = false
	change(rule)
	if err := r.eval.Retire(t.Context(), time.Now()); err != nil {
		t.Fatalf("Retire = %v", err)
	}
	handle(t, r, entry(agent.ID, cpu{"0", 99, at(2)}))
	events := e.streamEvents(t)
	if got, want := transitions(events), []string{"ok>firing(critical)", "firing>resolved(critical)"}; !slices.Equal(got, want) {
		t.Fatalf("after disabling the rule: %v, want %v", got, want)
	}
	if ev := events[1]; ev.RecoveryValue != nil || !ev.Notify || ev.RuleName != "cpu busy" {
		t.Errorf("retired event %+v, want resolved without a recovery value, notified", ev)
	}
	if n := len(e.active(t)); n != 0 {
		t.Errorf("%d alerts active after the rule was disabled, want 0", n)
	}
}

func TestRetireEndsAlertsOfDeletedRulesAndAgentsOnce(t *testing.T) {
	e := newEnv(t)
	keep := e.createAgent(t, "keep", nil)
	gone := e.createAgent(t, "gone", nil)
	cpuR := e.createRule(t, cpuRule(0))
	other := cpuRule(0)
	other.Name, other.Metric = "mem busy", "mem.usage"
	memR := e.createRule(t, other)
	rs := []*replica{e.replica(t), e.replica(t)}
	handle(t, rs[0], entry(keep.ID, cpu{"0", 99, at(0)}), entry(gone.ID, cpu{"0", 99, at(0)}))
	// A firing alert of the other rule, which is then deleted.
	msg := entry(keep.ID, cpu{"0", 99, at(0)})
	msg.Msg.Payload = []byte("mem,agent=" + keep.ID + ",core=0 usage=99 " + itoa(at(0).UnixNano()) + "\n")
	handle(t, rs[0], msg)
	if n := len(e.streamEvents(t)); n != 3 {
		t.Fatalf("%d events before the deletions, want 3 firing", n)
	}

	if err := e.rules.Delete(t.Context(), memR.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.agents.Delete(t.Context(), gone.ID, "test"); err != nil {
		t.Fatal(err)
	}
	sub := e.subscribe(t)
	// The copies reload their rules (version bump) and registry (interval).
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.rules.Load(ctx) })
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.agents.Refresh(ctx) })
	now := time.Now().UTC()
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.eval.Retire(ctx, now) })
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.eval.Retire(ctx, now) })

	events := e.streamEvents(t)[3:]
	got := map[string]string{}
	for _, ev := range events {
		got[ev.RuleID+"/"+ev.AgentID] = string(ev.From) + ">" + string(ev.To)
	}
	want := map[string]string{cpuR.ID + "/" + gone.ID: "firing>resolved", memR.ID + "/" + keep.ID: "firing>resolved"}
	if len(events) != 2 || got[cpuR.ID+"/"+gone.ID] != want[cpuR.ID+"/"+gone.ID] || got[memR.ID+"/"+keep.ID] != want[memR.ID+"/"+keep.ID] {
		t.Fatalf("retirements %v, want %v, each once", got, want)
	}
	for _, ev := range events {
		if ev.RuleID == memR.ID && (ev.RuleName != "mem busy" || ev.Metric != "mem.usage" || ev.Labels["team"] != "infra") {
			t.Errorf("event of the deleted rule %+v, want its name, metric and labels remembered", ev)
		}
	}
	if published := sub.received(t); len(published) != 2 {
		t.Errorf("%d events published by two copies retiring twice, want 2", len(published))
	}
	active := e.active(t)
	if _, ok := active[keep.ID+"/core=0"]; len(active) != 1 || !ok || active[keep.ID+"/core=0"].RuleID != cpuR.ID {
		t.Errorf("active alerts %v, want only keep's cpu alert", active)
	}
	key := alerter.StateKey(e.prefix, testShards, alert.Key{RuleID: memR.ID, AgentID: keep.ID, Series: "core=0"})
	if n := e.rdb.Exists(t.Context(), key).Val(); n != 0 {
		t.Errorf("state of the deleted rule's alert still stored")
	}
}

// After STREAM_SHARDS changes, an active alert left in a shard that is no longer its agent's is
// ended there (once, however many copies retire), and fires again in its new shard while its
// condition holds.
func TestRetireEndsAlertsLeftInAnotherShard(t *testing.T) {
	e := newEnv(t)
	rule := e.createRule(t, cpuRule(0))
	agents := e.agentsOnEveryShard(t, 2)
	old := e.replica(t)
	for _, a := range agents {
		handle(t, old, entry(a, cpu{"0", 99, at(0)}))
	}
	if n := len(e.active(t)); n != len(agents) {
		t.Fatalf("%d active alerts, want %d", n, len(agents))
	}

	// Every copy restarted with one shard: the agents of shard 1 moved to shard 0.
	newEval := func() *alerter.Evaluator {
		return alerter.NewEvaluator(e.rdb, e.prefix, 1, old.rules, old.agents, discard, nil)
	}
	copies := []*replica{{eval: newEval()}, {eval: newEval()}}
	now := time.Now().UTC()
	concurrently(t, copies, func(ctx context.Context, r *replica) error { return r.eval.Retire(ctx, now) })

	moved := map[string]bool{}
	for _, a := range agents {
		moved[a] = alertredis.Shard(a, testShards) != 0
	}
	ended := map[string]int{}
	for _, ev := range e.streamEvents(t)[len(agents):] {
		if ev.From != alert.StatusFiring || ev.To != alert.StatusResolved || ev.RuleID != rule.ID {
			t.Errorf("event %s>%s of rule %s, want firing>resolved of %s", ev.From, ev.To, ev.RuleID, rule.ID)
		}
		ended[ev.AgentID]++
	}
	for _, a := range agents {
		want := 0
		if moved[a] {
			want = 1
		}
		if ended[a] != want {
			t.Errorf("agent %s (moved %v): ended %d times, want %d", a, moved[a], ended[a], want)
		}
	}

	// A sample of a moved agent fires it again, now in shard 0.
	for _, a := range agents {
		if moved[a] {
			if err := copies[0].eval.Handle(t.Context(), []*stream.Message{entry(a, cpu{"0", 99, at(1)})}); err != nil {
				t.Fatal(err)
			}
		}
	}
	active, err := alertredis.ListActiveShards(t.Context(), e.rdb, e.prefix, testShards)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != len(agents) {
		t.Errorf("%d active alerts, want %d", len(active), len(agents))
	}
	for _, l := range active {
		if l.Shard != 0 || l.Status != alert.StatusFiring {
			t.Errorf("alert of agent %s: %s in shard %d, want firing in shard 0", l.AgentID, l.Status, l.Shard)
		}
	}
}
