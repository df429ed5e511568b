package alerter_test

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

var t0 = time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)

// at returns t0 plus i steps of 30 seconds.
func at(i int) time.Time { return t0.Add(time.Duration(i) * 30 * time.Second) }

func TestThresholdTransitions(t *testing.T) {
	fires := []string{"ok>pending(critical)", "pending>firing(critical)", "firing>resolved(critical)"}
	cases := []struct {
		name   string
		forDur time.Duration
		values []float64 // one sample every 30s from t0
		// oneBatch hands every sample over in one batch, newest first; otherwise one batch each.
		oneBatch   bool
		want       []string
		wantActive alert.Active // Status "" for none
	}{{
		// Pending at 85; 75 is between the recovery (70) and the threshold (80), so the condition
		// still holds; firing once 2m have passed (at 81); 72 holds; 65 resolves.
		name: "fires after for and resolves below recovery", forDur: 2 * time.Minute,
		values: []float64{85, 75, 90, 82, 81, 72, 65}, want: fires,
	}, {
		name: "the same samples in one batch, out of order", forDur: 2 * time.Minute,
		values: []float64{85, 75, 90, 82, 81, 72, 65}, oneBatch: true, want: fires,
	}, {
		name: "oscillation between threshold and recovery does not flap", forDur: 0,
		values: []float64{85, 75, 81, 71, 79, 85, 72, 80.5},
		want:   []string{"ok>firing(critical)"},
		wantActive: alert.Active{Status: "firing", Severity: "critical", Value: 85,
			Since: at(0), Summary: "web-1 cpu at 85"},
	}, {
		name: "pending that recovers before for goes back to ok", forDur: 2 * time.Minute,
		values: []float64{85, 90, 65, 75},
		want:   []string{"ok>pending(critical)", "pending>ok(critical)"},
	}, {
		name: "pending survives values between threshold and recovery", forDur: 5 * time.Minute,
		values: []float64{85, 71, 79, 72},
		want:   []string{"ok>pending(critical)"},
		wantActive: alert.Active{Status: "pending", Severity: "critical", Value: 85,
			Since: at(0), Summary: "web-1 cpu at 85"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			agent := e.createAgent(t, "web-1", map[string]string{"env": "prod"})
			rule := e.createRule(t, cpuRule(c.forDur))
			r := e.replica(t)
			sub := e.subscribe(t)

			var batch []*stream.Message
			for i, v := range c.values {
				m := entry(agent.ID, cpu{"0", v, at(i)})
				if c.oneBatch {
					batch = append([]*stream.Message{m}, batch...)
					continue
				}
				handle(t, r, m)
				// Acknowledge every firing alert: its ack must go when it resolves.
				for _, a := range e.active(t) {
					if a.Status == "firing" && a.Ack == nil {
						if err := alertredis.SetAck(t.Context(), e.rdb, e.prefix, testShards, a.ID, alert.Ack{By: "op", At: time.Now()}); err != nil {
							t.Fatalf("SetAck = %v", err)
						}
					}
				}
			}
			if c.oneBatch {
				handle(t, r, batch...)
			}

			events := e.streamEvents(t)
			if got := transitions(events); !slices.Equal(got, c.want) {
				t.Fatalf("alerts stream transitions = %v, want %v", got, c.want)
			}
			published := sub.received(t)
			if got, want := ids(published), ids(events); !slices.Equal(got, want) {
				t.Errorf("published event ids = %v, want the stream's %v", got, want)
			}
			alertID := alert.ID(rule.ID, agent.ID, "core=0")
			for _, ev := range events {
				if ev.AlertID != alertID || ev.RuleID != rule.ID || ev.AgentID != agent.ID || ev.Series != "core=0" ||
					ev.RuleName != "cpu busy" || ev.Kind != "threshold" || ev.Metric != "cpu.usage" {
					t.Errorf("event %+v: want alert %s of rule %s, agent %s, series core=0", ev, alertID, rule.ID, agent.ID)
				}
				wantLabels := map[string]string{"env": "prod", "core": "0", "team": "infra"}
				if !maps.Equal(ev.Labels, wantLabels) {
					t.Errorf("event %s>%s labels = %v, want %v", ev.From, ev.To, ev.Labels, wantLabels)
				}
				if want := ev.To == "firing" || ev.To == "resolved"; ev.Notify != want {
					t.Errorf("event %s>%s Notify = %v, want %v", ev.From, ev.To, ev.Notify, want)
				}
			}
			if slices.Equal(c.want, fires) {
				firing, resolved := events[1], events[2]
				if !firing.At.Equal(at(4)) || firing.Value != 81 || firing.Threshold == nil || *firing.Threshold != 80 ||
					firing.Summary != "web-1 cpu at 81" {
					t.Errorf("firing event = %+v, want at %s, value 81, threshold 80, summary \"web-1 cpu at 81\"", firing, at(4))
				}
				if resolved.RecoveryValue == nil || *resolved.RecoveryValue != 65 || resolved.DurationSeconds != 60 ||
					!resolved.At.Equal(at(6)) || *resolved.Threshold != 70 {
					t.Errorf("resolved event = %+v, want recovery 65 after firing 60s, at %s, threshold 70", resolved, at(6))
				}
			}

			active := e.active(t)
			if c.wantActive.Status == "" {
				if len(active) != 0 {
					t.Errorf("active alerts = %v, want none", active)
				}
				if n := e.rdb.HLen(t.Context(), alertredis.AcksKey(e.prefix, alertredis.Shard(agent.ID, testShards))).Val(); n != 0 {
					t.Errorf("%d acknowledgements left after the alert ended, want 0", n)
				}
				// An ok state expires (hours later), so that series that stopped do not pile up.
				key := alerter.StateKey(e.prefix, testShards, alert.Key{RuleID: rule.ID, AgentID: agent.ID, Series: "core=0"})
				if ttl := e.rdb.TTL(t.Context(), key).Val(); ttl < time.Hour || ttl > 7*time.Hour {
					t.Errorf("TTL of an ok state = %v, want hours", ttl)
				}
				return
			}
			got, ok := active[agent.ID+"/core=0"]
			w := c.wantActive
			if !ok || got.ID != alertID || got.Status != w.Status || got.Severity != w.Severity || got.Value != w.Value ||
				!got.Since.Equal(w.Since) || got.Summary != w.Summary || got.RuleName != "cpu busy" || got.Metric != "cpu.usage" {
				t.Errorf("active alert = %+v, want %+v with id %s", got, w, alertID)
			}
		})
	}
}

func ids(evs []alert.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// sortedIDs is ids in sorted order: events of alerts in different shards are committed in
// different transactions, so their order on the channel need not be the streams' merged order.
func sortedIDs(evs []alert.Event) []string {
	out := ids(evs)
	slices.Sort(out)
	return out
}

func TestCopiesAndRedeliveriesEmitEachTransitionOnce(t *testing.T) {
	testCopiesAndRedeliveriesEmitEachTransitionOnce(t, newEnv(t))
}

// On Redis Cluster, with the agents' alerts in shards on different nodes: each shard commits in
// its own transaction, and every transition is still emitted once.
func TestCopiesEmitEachTransitionOnceOnCluster(t *testing.T) {
	testCopiesAndRedeliveriesEmitEachTransitionOnce(t, newClusterEnv(t))
}

func testCopiesAndRedeliveriesEmitEachTransitionOnce(t *testing.T, e *env) {
	e.createRule(t, cpuRule(time.Minute))
	agents := e.agentsOnEveryShard(t, 4)
	// Six batches, 30s apart: every series of every agent above 80 in the first five (pending,
	// then firing after a minute), back to 50 in the last (resolved).
	var batches [][]*stream.Message
	for i := range 6 {
		v := 90.0
		if i == 5 {
			v = 50
		}
		var batch []*stream.Message
		for _, a := range agents {
			batch = append(batch, entry(a, cpu{"0", v, at(i)}, cpu{"1", v, at(i)}, cpu{"2", v, at(i)}))
		}
		batches = append(batches, batch)
	}
	a, b := e.replica(t), e.replica(t)
	sub := e.subscribe(t)

	// Both copies handle every batch, concurrently: as when a batch is reclaimed from a copy
	// that is still working on it.
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(batches))
	for _, r := range []*replica{a, b} {
		wg.Go(func() {
			for _, batch := range batches {
				if err := r.eval.Handle(t.Context(), batch); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Handle = %v", err)
	}
	// Then every batch is delivered again, to a third copy.
	c := e.replica(t)
	for _, batch := range batches {
		handle(t, c, batch...)
	}

	events := e.streamEvents(t)
	want := []string{"ok>pending(critical)", "pending>firing(critical)", "firing>resolved(critical)"}
	perAlert := map[string][]alert.Event{}
	for _, ev := range events {
		perAlert[ev.AlertID] = append(perAlert[ev.AlertID], ev)
	}
	if len(perAlert) != 3*len(agents) {
		t.Errorf("alerts streams hold events of %d alerts, want %d (%d agents × 3 series)", len(perAlert), 3*len(agents), len(agents))
	}
	for id, evs := range perAlert {
		if got := transitions(evs); !slices.Equal(got, want) {
			t.Errorf("alert %s (%s): transitions %v, want %v", id, evs[0].Series, got, want)
		}
	}
	published := sub.receivedAtLeast(t, len(events))
	if len(published) != len(events) {
		t.Errorf("%d events published, want %d (one per stream entry)", len(published), len(events))
	}
	seen := map[string]int{}
	for _, ev := range published {
		seen[ev.ID]++
	}
	for _, ev := range events {
		if seen[ev.ID] != 1 {
			t.Errorf("event %s (%s>%s) published %d times, want once", ev.ID, ev.From, ev.To, seen[ev.ID])
		}
	}
	if n := len(e.active(t)); n != 0 {
		t.Errorf("%d alerts still active, want 0", n)
	}
}

func TestRestartedCopyKeepsPendingFiringAndWindow(t *testing.T) {
	e := newEnv(t)
	agent := e.createAgent(t, "db-1", nil)
	// Critical above 80, averaged over 5 minutes, held for 1 minute.
	rule := cpuRule(time.Minute)
	rule.Aggregation, rule.Window = alert.AggAvg, alert.Duration(5*time.Minute)
	rule.Thresholds.Critical.Recovery = nil
	e.createRule(t, rule)

	first := e.replica(t)
	handle(t, first, entry(agent.ID, cpu{"0", 100, at(0)})) // avg 100: pending
	// A new copy (the first one "restarted"): avg(100, 70) = 85 still holds, so the alert stays
	// pending; on a lost window it would read 70 and go back to ok.
	second := e.replica(t)
	handle(t, second, entry(agent.ID, cpu{"0", 70, at(1)}))
	// avg(100, 70, 76) = 82 a minute after the crossing: firing. Had the pending state been
	// lost, this would be a new ok→pending.
	third := e.replica(t)
	handle(t, third, entry(agent.ID, cpu{"0", 76, at(2)}))

	want := []string{"ok>pending(critical)", "pending>firing(critical)"}
	events := e.streamEvents(t)
	if got := transitions(events); !slices.Equal(got, want) {
		t.Fatalf("transitions across restarts = %v, want %v", got, want)
	}
	if events[1].Value != 82 || !events[1].At.Equal(at(2)) {
		t.Errorf("firing event value %v at %s, want the 5m average 82 at %s", events[1].Value, events[1].At, at(2))
	}
	if a := e.active(t)[agent.ID+"/core=0"]; a.Status != "firing" || a.FiringSince == nil || !a.FiringSince.Equal(at(2)) {
		t.Errorf("active alert %+v, want firing since %s", a, at(2))
	}
	// The state has no expiry while the alert is active.
	key := alerter.StateKey(e.prefix, testShards, alert.Key{RuleID: events[0].RuleID, AgentID: agent.ID, Series: "core=0"})
	if ttl := e.rdb.TTL(t.Context(), key).Val(); ttl != -1 {
		t.Errorf("TTL of a firing state = %v, want none (-1)", ttl)
	}
}

func TestWindowCountsSamplesHandledOutOfOrderByCopies(t *testing.T) {
	e := newEnv(t)
	agent := e.createAgent(t, "db-1", nil)
	// Fires when more than 3 samples arrived within 2 minutes.
	rule := alert.Rule{Name: "chatty", Kind: alert.KindThreshold, Metric: "cpu.usage",
		Aggregation: alert.AggCount, Window: alert.Duration(2 * time.Minute), Operator: alert.OpGT,
		Thresholds: alert.Thresholds{Warning: &alert.Threshold{Value: ptr(3)}}, Enabled: true}
	e.createRule(t, rule)
	a, b := e.replica(t), e.replica(t)
	// Copy b handles the later batch first; copy a's older samples then still count in the
	// window, and the next sample sees all five.
	handle(t, b, entry(agent.ID, cpu{"0", 1, at(2)}, cpu{"0", 1, at(3)}))
	handle(t, a, entry(agent.ID, cpu{"0", 1, at(0)}, cpu{"0", 1, at(1)}))
	if evs := e.streamEvents(t); len(evs) != 0 {
		t.Fatalf("transitions after 2 + 2 samples = %v, want none yet", transitions(evs))
	}
	handle(t, a, entry(agent.ID, cpu{"0", 1, at(4)}))
	// The window at at(4) spans at(0)..at(4): 5 samples > 3.
	events := e.streamEvents(t)
	if got, want := transitions(events), []string{"ok>firing(warning)"}; !slices.Equal(got, want) {
		t.Fatalf("transitions = %v, want %v", got, want)
	}
	if events[0].Value != 5 {
		t.Errorf("firing count = %v, want 5 (samples handled out of order by two copies)", events[0].Value)
	}
}

func TestLabelSelectorSeesAgentRegisteredAfterTheSnapshot(t *testing.T) {
	e := newEnv(t)
	rule := cpuRule(0)
	rule.Agents = alert.AgentSelector{Labels: map[string]string{"env": "prod"}}
	e.createRule(t, rule)
	r := e.replica(t)
	// Both agents register after the copy loaded its registry snapshot.
	prod := e.createAgent(t, "prod-1", map[string]string{"env": "prod"})
	dev := e.createAgent(t, "dev-1", map[string]string{"env": "dev"})
	time.Sleep(300 * time.Millisecond) // past the on-demand refresh's rate limit
	handle(t, r, entry(prod.ID, cpu{"0", 99, at(0)}), entry(dev.ID, cpu{"0", 99, at(0)}))
	events := e.streamEvents(t)
	if len(events) != 1 || events[0].AgentID != prod.ID || events[0].To != "firing" {
		t.Fatalf("events = %+v, want one firing for %s only", events, prod.ID)
	}
	if events[0].Labels["env"] != "prod" || !strings.HasPrefix(events[0].Summary, "prod-1 ") {
		t.Errorf("event labels %v, summary %q: want the agent's labels and name", events[0].Labels, events[0].Summary)
	}
}

func TestHandleRejectsUnreadableEntries(t *testing.T) {
	e := newEnv(t)
	agent := e.createAgent(t, "web-1", nil)
	e.createRule(t, cpuRule(0))
	r := e.replica(t)

	noAgent := entry(agent.ID, cpu{"0", 99, at(0)})
	noAgent.Msg.Metadata = message.Metadata{}
	garbled := &stream.Message{Stream: "metrics:{0}", ID: "2-0", Msg: message.NewMessage(watermill.NewUUID(), []byte("cpu usage=\n"))}
	garbled.Msg.Metadata.Set(stream.MetaAgent, agent.ID)
	noMsg := &stream.Message{Stream: "metrics:{0}", ID: "3-0"}
	good := entry(agent.ID, cpu{"0", 99, at(1)})

	if err := r.eval.Handle(t.Context(), []*stream.Message{noAgent, garbled, noMsg, good}); err != nil {
		t.Fatalf("Handle = %v, want nil", err)
	}
	for m, want := range map[*stream.Message]string{noAgent: `"agent" is missing`, garbled: "line 1", noMsg: "no message"} {
		if err := m.Rejected(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("entry %s: Rejected() = %v, want an error containing %q", m.ID, err, want)
		}
	}
	if err := good.Rejected(); err != nil {
		t.Errorf("good entry rejected: %v", err)
	}
	events := e.streamEvents(t)
	if len(events) != 1 || !events[0].At.Equal(at(1)) {
		t.Errorf("events = %v, want the good entry's firing only", transitions(events))
	}
}

func TestHandleFailsWithoutRulesOrRedis(t *testing.T) {
	e := newEnv(t)
	agent := e.createAgent(t, "web-1", nil)
	e.createRule(t, cpuRule(0))

	// Rules not loaded yet: evaluating against none would ack samples that should alert.
	rules := alerter.NewRules(e.rules, e.rdb, e.prefix, discard, nil)
	agents := alerter.NewAgents(e.agents, discard, nil)
	eval := alerter.NewEvaluator(e.rdb, e.prefix, testShards, rules, agents, discard, nil)
	if err := eval.Handle(t.Context(), []*stream.Message{entry(agent.ID, cpu{"0", 99, at(0)})}); err == nil {
		t.Error("Handle before the rules were loaded = nil, want an error")
	}

	// Redis unreachable: an error, so the consumer keeps the batch.
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer down.Close()
	if err := rules.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	eval = alerter.NewEvaluator(down, e.prefix, testShards, rules, agents, discard, nil)
	err := eval.Handle(t.Context(), []*stream.Message{entry(agent.ID, cpu{"0", 99, at(0)})})
	if err == nil || !strings.Contains(err.Error(), "alert states") {
		t.Errorf("Handle with Redis down = %v, want an error about the alert states", err)
	}
	if evs := e.streamEvents(t); len(evs) != 0 {
		t.Errorf("events = %v, want none", transitions(evs))
	}
}

func TestUnreadableStateStartsAfresh(t *testing.T) {
	e := newEnv(t)
	agent := e.createAgent(t, "web-1", nil)
	rule := e.createRule(t, cpuRule(0))
	key := alerter.StateKey(e.prefix, testShards, alert.Key{RuleID: rule.ID, AgentID: agent.ID, Series: "core=0"})
	for _, junk := range []string{"junk", "\x01\x7f{}", "\x01\x02{}extra"} {
		if err := e.rdb.Set(t.Context(), key, junk, 0).Err(); err != nil {
			t.Fatal(err)
		}
		r := e.replica(t)
		handle(t, r, entry(agent.ID, cpu{"0", 99, at(0)}), entry(agent.ID, cpu{"0", 50, at(1)}))
	}
	// Each time the junk was replaced by a fresh state: fired and resolved three times over,
	// with the same transition ids (the same samples), instead of blocking the stream.
	events := e.streamEvents(t)
	if len(events) != 6 || events[0].ID != events[2].ID || events[1].ID != events[5].ID {
		t.Errorf("transitions %v, want ok>firing, firing>resolved three times with the same ids", transitions(events))
	}
}
