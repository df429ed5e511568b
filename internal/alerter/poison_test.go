package alerter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// pipeline is the metrics consumer of one alerter copy running against the env: entries
// published with publish go through the real stream consumer to the evaluator.
type pipeline struct {
	e      *env
	pub    *stream.Publisher
	shards int
}

const testShards = 2

// runConsumer runs a metrics consumer handing batches to eval until the test ends.
func (e *env) runConsumer(t *testing.T, eval *alerter.Evaluator) *pipeline {
	t.Helper()
	cfg := stream.ConsumerConfig{Prefix: e.prefix, Shards: testShards, Group: alerter.Group, Consumer: "test-1",
		MaxWait: 20 * time.Millisecond, Block: 50 * time.Millisecond, RetryMin: 10 * time.Millisecond,
		RetryMax: 50 * time.Millisecond}
	consumer, err := stream.NewConsumer(e.rdb, cfg, eval.Handle, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer Run = %v, want nil", err)
		}
	})
	pub, err := stream.NewPublisher(e.rdb, stream.PublisherConfig{Prefix: e.prefix, Shards: testShards}, discard)
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline{e: e, pub: pub, shards: testShards}
}

// publish appends one metrics entry of agentID holding one cpu.usage sample per value, as
// the gateway would.
func (p *pipeline) publish(t *testing.T, agentID string, samples ...cpu) {
	t.Helper()
	points := make([]metric.Point, len(samples))
	for i, s := range samples {
		points[i] = metric.Point{Measurement: "cpu", Tags: []metric.Tag{{Key: "core", Value: s.core}},
			Fields: []metric.Field{{Key: "usage", Value: metric.Value{Kind: metric.KindFloat, F: s.v}}},
			Time:   s.at.UnixNano()}
	}
	payload := metric.AppendLineProtocol(nil, points, agentID)
	if err := p.pub.Publish(t.Context(), agentID, payload, map[string]string{stream.MetaAgent: agentID,
		stream.MetaReceivedAt: strconv.FormatInt(time.Now().UnixNano(), 10), stream.MetaPoints: strconv.Itoa(len(points))}); err != nil {
		t.Fatalf("Publish = %v", err)
	}
}

// drained waits until the group has read and acknowledged every entry of every shard (lag and
// pending 0): after it, everything published before has been evaluated or dead-lettered.
func (p *pipeline) drained(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() string {
		for _, key := range stream.StreamKeys(p.e.prefix, p.shards) {
			groups, err := p.e.rdb.XInfoGroups(t.Context(), key).Result()
			if err != nil {
				return fmt.Sprintf("XINFO GROUPS %s = %v", key, err)
			}
			i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == alerter.Group })
			if i < 0 {
				return fmt.Sprintf("no group %s on %s yet", alerter.Group, key)
			}
			if g := groups[i]; g.Lag != 0 || g.Pending != 0 {
				return fmt.Sprintf("%s: lag %d, pending %d, want 0 and 0", key, g.Lag, g.Pending)
			}
		}
		return ""
	})
}

// deadLetters returns the reasons of the dead-lettered entries by agent.
func (e *env) deadLetters(t *testing.T) map[string][]string {
	t.Helper()
	msgs, err := e.rdb.XRange(t.Context(), stream.DeadLetterKey(e.prefix), "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE dead letters = %v", err)
	}
	out := map[string][]string{}
	for _, m := range msgs {
		payload, _ := m.Values[stream.FieldPayload].(string)
		agent := "?"
		if i := strings.Index(payload, "agent="); i >= 0 {
			agent = strings.FieldsFunc(payload[i+len("agent="):], func(r rune) bool { return r == ',' || r == ' ' })[0]
		}
		reason, _ := m.Values[stream.FieldReason].(string)
		out[agent] = append(out[agent], reason)
	}
	return out
}

// byAgent renders events as "from>to" per agent, in order.
func byAgent(evs []alert.Event) map[string][]string {
	out := map[string][]string{}
	for _, ev := range evs {
		out[ev.AgentID] = append(out[ev.AgentID], string(ev.From+">"+ev.To))
	}
	return out
}

// atMs returns the time n milliseconds after t0.
func atMs(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// avgRule is a threshold rule on avg(cpu.usage) over 1s: critical above 80, recovering below 70.
func avgRule() alert.Rule {
	r := cpuRule(0)
	r.Name, r.Aggregation, r.Window = "cpu avg", alert.AggAvg, alert.Duration(time.Second)
	return r
}

// TestHugeValuesNeitherOverflowNorStallOthers is issue 7's report: two accepted values near the
// float maximum in an avg window overflowed to +Inf, the state could not be encoded, the batch
// was retried forever and no other agent's alert fired or resolved. Now the average stays
// finite: the agent's own alert fires at 1.7e308 and resolves, and the other agents' alerts, in
// the same and in later batches, fire and resolve; nothing is dead-lettered.
func TestHugeValuesNeitherOverflowNorStallOthers(t *testing.T) {
	e := newEnv(t)
	huge := e.createAgent(t, "huge", nil)
	web1 := e.createAgent(t, "web-1", nil)
	web2 := e.createAgent(t, "web-2", nil)
	e.createRule(t, avgRule())
	p := e.runConsumer(t, e.replica(t).eval)

	// One batch: the huge values (two entries, the second overflowing a sum) among the others.
	p.publish(t, web1.ID, cpu{"0", 99, atMs(0)})
	p.publish(t, huge.ID, cpu{"0", 1.7e308, atMs(0)})
	p.publish(t, huge.ID, cpu{"0", 1.7e308, atMs(500)}, cpu{"1", math.MaxFloat64, atMs(500)})
	p.publish(t, huge.ID, cpu{"1", math.MaxFloat64, atMs(700)}, cpu{"1", -math.MaxFloat64, atMs(800)})
	p.publish(t, web2.ID, cpu{"0", 95, atMs(500)})
	p.drained(t)
	active := e.active(t)
	if a, ok := active[huge.ID+"/core=0"]; !ok || a.Status != "firing" || a.Value != 1.7e308 || a.Summary != "huge cpu at 1.7e+308" {
		t.Errorf("active alert of the huge agent's core 0 = %+v (%v), want firing at 1.7e308, summary %q", a, ok, "huge cpu at 1.7e+308")
	}
	// The active entry shows the value that fired it (the first sample), not later ones.
	if a, ok := active[huge.ID+"/core=1"]; !ok || a.Status != "firing" || a.Value != math.MaxFloat64 {
		t.Errorf("active alert of the huge agent's core 1 = %+v (%v), want firing at MaxFloat64", a, ok)
	}
	for _, a := range []agent.Agent{web1, web2} {
		if got, ok := active[a.ID+"/core=0"]; !ok || got.Status != "firing" {
			t.Errorf("active alert of %s = %+v (%v), want firing", a.Name, got, ok)
		}
	}

	// A later batch: every alert resolves, the huge agent's as well.
	for _, a := range []agent.Agent{web1, web2, huge} {
		p.publish(t, a.ID, cpu{"0", 10, atMs(10_000)}, cpu{"1", 10, atMs(10_000)})
	}
	p.drained(t)
	got := byAgent(e.streamEvents(t))
	want := map[string][]string{
		web1.ID: {"ok>firing", "firing>resolved"},
		web2.ID: {"ok>firing", "firing>resolved"},
		huge.ID: {"ok>firing", "ok>firing", "firing>resolved", "firing>resolved"},
	}
	for id, w := range want {
		if !slices.Equal(got[id], w) {
			t.Errorf("transitions of %s = %v, want %v", id, got[id], w)
		}
	}
	if dead := e.deadLetters(t); len(dead) != 0 {
		t.Errorf("dead letters = %v, want none", dead)
	}
}

// poisonedSource serves the rules of the store with one change made by patch: the evaluator
// must not trust its rule source to hold only rules the current validation accepts (a rule
// written by an earlier release, or by hand).
type poisonedSource struct {
	store *postgres.RuleStore
	patch func(*alert.Rule)
}

func (s poisonedSource) List(ctx context.Context) ([]alert.Rule, error) {
	rules, err := s.store.List(ctx)
	for i := range rules {
		s.patch(&rules[i])
	}
	return rules, err
}

// TestUnencodableEntryIsDeadLetteredOthersGoOn: an entry whose evaluation fails the same way
// every time (here a transition whose threshold is +Inf, which no event encoding carries) is
// dead-lettered with the reason, found among the others of its batch, while the alerts of other
// agents in the same and in later batches fire and resolve.
func TestUnencodableEntryIsDeadLetteredOthersGoOn(t *testing.T) {
	e := newEnv(t)
	bad := e.createAgent(t, "bad", nil)
	web1 := e.createAgent(t, "web-1", nil)
	web2 := e.createAgent(t, "web-2", nil)
	e.createRule(t, cpuRule(0))
	broken := cpuRule(0)
	broken.Name, broken.Agents = "broken", alert.AgentSelector{IDs: []string{bad.ID}}
	broken = e.createRule(t, broken)

	src := poisonedSource{store: e.rules, patch: func(r *alert.Rule) {
		if r.ID == broken.ID {
			r.Operator, r.Thresholds = alert.OpLT, alert.Thresholds{Critical: &alert.Threshold{Value: ptr(math.Inf(1))}}
		}
	}}
	rules := alerter.NewRules(src, e.rdb, e.prefix, discard, nil)
	agents := alerter.NewAgents(e.agents, discard, nil)
	if err := rules.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := agents.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	p := e.runConsumer(t, alerter.NewEvaluator(e.rdb, e.prefix, testShards, rules, agents, discard, nil))

	// The poisoned entry in the middle of a batch of others.
	p.publish(t, web1.ID, cpu{"0", 99, at(0)})
	p.publish(t, web2.ID, cpu{"0", 50, at(0)})
	p.publish(t, bad.ID, cpu{"0", 99, at(0)})
	p.publish(t, web2.ID, cpu{"0", 99, at(1)})
	p.drained(t)
	// A later batch: the others resolve, and the bad agent's next entry fails alike.
	p.publish(t, web1.ID, cpu{"0", 10, at(10)})
	p.publish(t, bad.ID, cpu{"0", 10, at(10)})
	p.publish(t, web2.ID, cpu{"0", 10, at(10)})
	p.drained(t)

	got := byAgent(e.streamEvents(t))
	for _, a := range []agent.Agent{web1, web2} {
		if w := []string{"ok>firing", "firing>resolved"}; !slices.Equal(got[a.ID], w) {
			t.Errorf("transitions of %s = %v, want %v", a.Name, got[a.ID], w)
		}
	}
	if len(got[bad.ID]) != 0 {
		t.Errorf("transitions of the bad agent = %v, want none (its entries are dead-lettered)", got[bad.ID])
	}
	dead := e.deadLetters(t)
	if len(dead) != 1 || len(dead[bad.ID]) != 2 {
		t.Fatalf("dead letters = %v, want the bad agent's two entries", dead)
	}
	for _, reason := range dead[bad.ID] {
		if !strings.Contains(reason, broken.ID) || !strings.Contains(reason, "+Inf") {
			t.Errorf("dead-letter reason %q, want one naming rule %s and the +Inf", reason, broken.ID)
		}
	}
}

// TestTransientRedisFailureIsRetriedNotDeadLettered: while the evaluator cannot reach Redis the
// consumer retries the batch; once Redis answers again every entry is evaluated and nothing is
// dead-lettered.
func TestTransientRedisFailureIsRetriedNotDeadLettered(t *testing.T) {
	e := newEnv(t)
	web1 := e.createAgent(t, "web-1", nil)
	web2 := e.createAgent(t, "web-2", nil)
	e.createRule(t, cpuRule(0))

	// The evaluator's own Redis client, whose connections can be cut: while down, every dial
	// fails and every open connection is closed under it.
	var down atomic.Bool
	var dials atomic.Int64
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	addr := e.rdb.(*redis.Client).Options().Addr
	flaky := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second,
		Dialer: func(ctx context.Context, network, a string) (net.Conn, error) {
			dials.Add(1)
			if down.Load() {
				return nil, errors.New("redis is down (test)")
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, a)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
			return c, err
		}})
	t.Cleanup(func() { flaky.Close() })
	cut := func() {
		down.Store(true)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}

	r := e.replica(t)
	p := e.runConsumer(t, alerter.NewEvaluator(flaky, e.prefix, testShards, r.rules, r.agents, discard, nil))
	p.publish(t, web1.ID, cpu{"0", 99, at(0)})
	p.drained(t)
	cut()
	before := dials.Load()
	p.publish(t, web2.ID, cpu{"0", 99, at(0)})
	p.publish(t, web1.ID, cpu{"0", 10, at(1)})
	// Wait for several failed attempts at the batch.
	testenv.Eventually(t, 10*time.Second, func() string {
		if n := dials.Load() - before; n < 3 {
			return fmt.Sprintf("%d dial attempts while down, want at least 3", n)
		}
		return ""
	})
	down.Store(false)
	p.drained(t)

	got := byAgent(e.streamEvents(t))
	if w := []string{"ok>firing", "firing>resolved"}; !slices.Equal(got[web1.ID], w) {
		t.Errorf("transitions of web-1 = %v, want %v", got[web1.ID], w)
	}
	if w := []string{"ok>firing"}; !slices.Equal(got[web2.ID], w) {
		t.Errorf("transitions of web-2 = %v, want %v", got[web2.ID], w)
	}
	if dead := e.deadLetters(t); len(dead) != 0 {
		t.Errorf("dead letters = %v, want none", dead)
	}
}
