package alerter_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// dropBuiltins deletes the built-in pipeline rules of the migration, so that a test sees only
// the rules it creates.
func (e *env) dropBuiltins(t *testing.T) {
	t.Helper()
	list, err := e.rules.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r.Kind == alert.KindPipeline {
			if err := e.rules.Delete(t.Context(), r.ID, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// closedPortURL returns an http URL on a loopback port nothing listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// pipelineReplica is a replica whose evaluator watches the test's streams: metrics stream
// "metrics:0", dead-letter stream "metrics:dead", and an InfluxDB at a closed port.
func (e *env) pipelineReplica(t *testing.T) *replica {
	t.Helper()
	r := e.replica(t)
	ifx, err := influx.New(influx.Config{URL: closedPortURL(t), Bucket: "metrics", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ifx.Close)
	r.eval.WatchPipeline(alerter.PipelineProbe{
		Streams:     []string{e.prefix + "metrics:0"},
		DeadLetters: []string{e.prefix + "metrics:dead"},
		Stores: map[string]func(context.Context) error{
			alert.StorePostgreSQL: e.db.PingContext,
			alert.StoreInfluxDB:   func(ctx context.Context) error { _, err := ifx.Version(ctx); return err },
		},
	})
	return r
}

// pipelineEvents returns the alerts-stream events of rule, as "subject:from>to".
func (e *env) pipelineEvents(t *testing.T, ruleID string) []string {
	t.Helper()
	var out []string
	for _, ev := range e.streamEvents(t) {
		if ev.RuleID != ruleID {
			continue
		}
		if ev.AgentID != "" || ev.Kind != string(alert.KindPipeline) {
			t.Errorf("pipeline event %+v has agent %q kind %q, want no agent and kind pipeline", ev, ev.AgentID, ev.Kind)
		}
		out = append(out, fmt.Sprintf("%s:%s>%s", ev.Series, ev.From, ev.To))
	}
	return out
}

func checkPipeline(t *testing.T, rs []*replica, now time.Time) {
	t.Helper()
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.eval.CheckPipeline(ctx, now) })
}

func wantEvents(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: events %q, want %q", step, got, want)
	}
}

func TestPipelineGroupLagFiresAndResolvesOnceAcrossCopies(t *testing.T) {
	e := newEnv(t)
	e.dropBuiltins(t)
	ctx := t.Context()
	key := e.prefix + "metrics:0"
	if err := e.rdb.XGroupCreateMkStream(ctx, key, "slow", "0").Err(); err != nil {
		t.Fatal(err)
	}
	bound := int64(5)
	rule := e.createRule(t, alert.Rule{Name: "lag", Kind: alert.KindPipeline, Severity: alert.SeverityCritical,
		For: alert.Duration(time.Minute), Enabled: true,
		Pipeline: &alert.Pipeline{Check: alert.CheckGroupLag, Groups: []string{"slow", "absent"}, Bound: &bound}})
	rs := []*replica{e.pipelineReplica(t), e.pipelineReplica(t)}
	t0 := time.Now()

	for i := range 10 {
		if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: map[string]any{"n": i}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	checkPipeline(t, rs, t0)
	wantEvents(t, "lag 10 > 5", e.pipelineEvents(t, rule.ID), "slow:ok>pending")
	checkPipeline(t, rs, t0.Add(30*time.Second))
	wantEvents(t, "lag held 30s", e.pipelineEvents(t, rule.ID), "slow:ok>pending")
	checkPipeline(t, rs, t0.Add(61*time.Second))
	wantEvents(t, "lag held 61s", e.pipelineEvents(t, rule.ID), "slow:ok>pending", "slow:pending>firing")
	a, ok := e.active(t)["/slow"]
	if !ok || a.Metric != "pipeline.group_lag" || a.Labels["group"] != "slow" || a.Labels["check"] != "group_lag" || a.Value != 10 {
		t.Errorf("active alert = %+v (found %v), want group slow, metric pipeline.group_lag, value 10", a, ok)
	}

	// The group reads and acks everything: lag 0, the alert resolves.
	res, err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "slow", Consumer: "c1", Streams: []string{key, ">"}, Count: 100}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res[0].Messages {
		e.rdb.XAck(ctx, key, "slow", m.ID)
	}
	checkPipeline(t, rs, t0.Add(70*time.Second))
	wantEvents(t, "read and acked", e.pipelineEvents(t, rule.ID), "slow:ok>pending", "slow:pending>firing", "slow:firing>resolved")
	if _, ok := e.active(t)["/slow"]; ok {
		t.Error("the lag alert is still active after it resolved")
	}
}

func TestPipelineDeadLettersFireAndResolve(t *testing.T) {
	e := newEnv(t)
	e.dropBuiltins(t)
	ctx := t.Context()
	rule := e.createRule(t, alert.Rule{Name: "dead", Kind: alert.KindPipeline, Severity: alert.SeverityWarning,
		Enabled: true, Pipeline: &alert.Pipeline{Check: alert.CheckDeadLetters}})
	rs := []*replica{e.pipelineReplica(t), e.pipelineReplica(t)}
	t0 := time.Now()
	checkPipeline(t, rs, t0)
	wantEvents(t, "no dead letters", e.pipelineEvents(t, rule.ID))

	dead := e.prefix + "metrics:dead"
	id, err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dead, Values: map[string]any{"group": "influx-writer"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	checkPipeline(t, rs, t0.Add(time.Second))
	wantEvents(t, "a dead letter", e.pipelineEvents(t, rule.ID), "metrics:dead:ok>firing")
	if err := e.rdb.XDel(ctx, dead, id).Err(); err != nil {
		t.Fatal(err)
	}
	checkPipeline(t, rs, t0.Add(2*time.Second))
	wantEvents(t, "deleted", e.pipelineEvents(t, rule.ID), "metrics:dead:ok>firing", "metrics:dead:firing>resolved")
}

func TestPipelineNoConsumerFiresAndResolves(t *testing.T) {
	e := newEnv(t)
	e.dropBuiltins(t)
	ctx := t.Context()
	key := e.prefix + "metrics:0"
	if err := e.rdb.XGroupCreateMkStream(ctx, key, "workers", "$").Err(); err != nil {
		t.Fatal(err)
	}
	idle := 10 * time.Second
	rule := e.createRule(t, alert.Rule{Name: "no consumer", Kind: alert.KindPipeline, Severity: alert.SeverityCritical,
		Enabled: true, Pipeline: &alert.Pipeline{Check: alert.CheckNoConsumer, Groups: []string{"workers", "never-started"},
			Idle: alert.Duration(idle)}})
	rs := []*replica{e.pipelineReplica(t), e.pipelineReplica(t)}
	events := func() []string {
		got := e.pipelineEvents(t, rule.ID)
		return slices.DeleteFunc(got, func(s string) bool { return strings.HasPrefix(s, "never-started:") })
	}
	read := func() {
		t.Helper()
		if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: map[string]any{"n": 1}}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "w1", Streams: []string{key, ">"}, Count: 10, Block: -1}).Err(); err != nil {
			t.Fatal(err)
		}
	}

	// A group with no consumer, and a group that does not exist: both fire.
	checkPipeline(t, rs, time.Now())
	got := e.pipelineEvents(t, rule.ID)
	slices.Sort(got)
	wantEvents(t, "no consumers", got, "never-started:ok>firing", "workers:ok>firing")

	// A consumer reads: live, the workers alert resolves.
	read()
	checkPipeline(t, rs, time.Now())
	wantEvents(t, "a consumer read", events(), "workers:ok>firing", "workers:firing>resolved")

	// An entry waits while the consumer reads nothing: once both exceed idle, it fires.
	if err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: map[string]any{"n": 2}}).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*idle, func() string {
		checkPipeline(t, rs, time.Now())
		if got := events(); len(got) != 3 {
			return fmt.Sprintf("events %q, want workers firing again once the waiting entry and the consumer are idle past %s", got, idle)
		}
		return ""
	})
	wantEvents(t, "consumer idle with work waiting", events(), "workers:ok>firing", "workers:firing>resolved", "workers:ok>firing")
	read()
	checkPipeline(t, rs, time.Now())
	wantEvents(t, "the consumer read again", events(), "workers:ok>firing", "workers:firing>resolved", "workers:ok>firing", "workers:firing>resolved")
}

func TestPipelineStoreDownAndWatchdog(t *testing.T) {
	e := newEnv(t)
	e.dropBuiltins(t)
	stores := e.createRule(t, alert.Rule{Name: "stores", Kind: alert.KindPipeline, Severity: alert.SeverityCritical,
		Enabled: true, Pipeline: &alert.Pipeline{Check: alert.CheckStoreDown,
			Stores: []string{alert.StoreRedis, alert.StorePostgreSQL, alert.StoreInfluxDB}}})
	dog := e.createRule(t, alert.Rule{Name: "Watchdog", Kind: alert.KindPipeline, Severity: alert.SeverityWarning,
		Enabled: true, Pipeline: &alert.Pipeline{Check: alert.CheckWatchdog}})
	rs := []*replica{e.pipelineReplica(t), e.pipelineReplica(t)}
	t0 := time.Now()
	for i := range 3 {
		checkPipeline(t, rs, t0.Add(time.Duration(i)*time.Hour))
	}
	// Only InfluxDB, at a closed port, is down; the watchdog fired once and stays firing.
	wantEvents(t, "stores", e.pipelineEvents(t, stores.ID), "influxdb:ok>firing")
	wantEvents(t, "watchdog", e.pipelineEvents(t, dog.ID), ":ok>firing")
	active := e.active(t)
	if a, ok := active["/"]; !ok || a.RuleID != dog.ID || a.Status != alert.StatusFiring || a.Summary == "" {
		t.Errorf("watchdog active = %+v (found %v), want firing with a summary", a, ok)
	}
	if a := active["/influxdb"]; a.Labels["store"] != "influxdb" || a.Metric != "pipeline.store_down" {
		t.Errorf("store alert = %+v, want label store=influxdb, metric pipeline.store_down", a)
	}

	// Disabling a rule through the store retires its alert (no agent involved).
	dog.Enabled = false
	if _, err := e.rules.Update(t.Context(), dog, "test"); err != nil {
		t.Fatal(err)
	}
	// Narrowing the store list retires the influxdb alert.
	stores.Pipeline.Stores = []string{alert.StoreRedis}
	if _, err := e.rules.Update(t.Context(), stores, "test"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.rules.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.eval.Retire(ctx, time.Now()) })
	wantEvents(t, "watchdog disabled", e.pipelineEvents(t, dog.ID), ":ok>firing", ":firing>resolved")
	wantEvents(t, "influxdb no longer watched", e.pipelineEvents(t, stores.ID), "influxdb:ok>firing", "influxdb:firing>resolved")
	if n := len(e.active(t)); n != 0 {
		t.Errorf("active alerts after retiring = %v, want none", e.active(t))
	}
	// Retiring again (both copies, a later tick) changes nothing.
	concurrently(t, rs, func(ctx context.Context, r *replica) error { return r.eval.Retire(ctx, time.Now()) })
	if n := len(e.pipelineEvents(t, dog.ID)) + len(e.pipelineEvents(t, stores.ID)); n != 4 {
		t.Errorf("events after a second Retire = %d, want still 4", n)
	}
}

func TestPipelineBuiltinWatchdog(t *testing.T) {
	e := newEnv(t)
	r := e.pipelineReplica(t)
	if err := r.eval.CheckPipeline(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, a := range e.active(t) {
		if a.Metric == "pipeline.watchdog" && a.RuleName == "Watchdog" && a.Status == alert.StatusFiring {
			return
		}
	}
	t.Errorf("active alerts %v, want the built-in watchdog firing", e.active(t))
}
