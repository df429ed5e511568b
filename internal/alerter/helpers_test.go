package alerter_test

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunInflux(m)) }

var discard = slog.New(slog.DiscardHandler)

// env is one test's Redis prefix and PostgreSQL database. Alert state is split into testShards
// shards, like the metrics streams of runConsumer.
type env struct {
	rdb    redis.UniversalClient
	prefix string
	db     *sqlx.DB
	rules  *postgres.RuleStore
	agents *postgres.AgentStore
}

func newEnv(t testing.TB) *env {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	db, _ := testenv.Postgres(t)
	return &env{rdb: rdb, prefix: prefix, db: db, rules: postgres.NewRuleStore(db), agents: postgres.NewAgentStore(db)}
}

// newClusterEnv is newEnv on the shared Redis Cluster (testenv.RedisCluster).
func newClusterEnv(t testing.TB) *env {
	t.Helper()
	rdb, prefix := testenv.RedisCluster(t)
	db, _ := testenv.Postgres(t)
	return &env{rdb: rdb, prefix: prefix, db: db, rules: postgres.NewRuleStore(db), agents: postgres.NewAgentStore(db)}
}

// replica is one alerter copy's evaluation side: its own rule and agent snapshots and evaluator.
type replica struct {
	rules  *alerter.Rules
	agents *alerter.Agents
	eval   *alerter.Evaluator
}

// replica starts an alerter copy on the env's Redis and database, with rules and agents loaded.
func (e *env) replica(t testing.TB) *replica {
	t.Helper()
	c := &replica{
		rules:  alerter.NewRules(e.rules, e.rdb, e.prefix, discard, nil),
		agents: alerter.NewAgents(e.agents, discard, nil),
	}
	if err := c.rules.Load(t.Context()); err != nil {
		t.Fatalf("Rules.Load = %v", err)
	}
	if err := c.agents.Refresh(t.Context()); err != nil {
		t.Fatalf("Agents.Refresh = %v", err)
	}
	c.eval = alerter.NewEvaluator(e.rdb, e.prefix, testShards, c.rules, c.agents, discard, nil)
	return c
}

func (e *env) createAgent(t testing.TB, name string, labels map[string]string) agent.Agent {
	t.Helper()
	a, err := e.agents.Create(t.Context(), name, labels, agent.HashAPIKey(name), "test")
	if err != nil {
		t.Fatalf("AgentStore.Create(%s) = %v", name, err)
	}
	return a
}

// agentsOnEveryShard registers at least n agents, and more until every one of the testShards
// alert shards has one, and returns their ids.
func (e *env) agentsOnEveryShard(t testing.TB, n int) []string {
	t.Helper()
	var ids []string
	seen := map[int]bool{}
	for i := 0; i < n || len(seen) < testShards; i++ {
		if i == 100 {
			t.Fatalf("100 agents registered, all in shards %v of %d", seen, testShards)
		}
		a := e.createAgent(t, fmt.Sprintf("agent-%d", i), nil)
		seen[alertredis.Shard(a.ID, testShards)] = true
		ids = append(ids, a.ID)
	}
	return ids
}

func (e *env) createRule(t testing.TB, r alert.Rule) alert.Rule {
	t.Helper()
	out, err := e.rules.Create(t.Context(), r, "test")
	if err != nil {
		t.Fatalf("RuleStore.Create(%s) = %v", r.Name, err)
	}
	return out
}

func ptr(f float64) *float64 { return &f }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// cpuRule is a threshold rule on cpu.usage: critical above 80, recovering below 70, after forDur.
func cpuRule(forDur time.Duration) alert.Rule {
	return alert.Rule{
		Name: "cpu busy", Kind: alert.KindThreshold, Metric: "cpu.usage",
		Aggregation: alert.AggLast, Operator: alert.OpGT,
		Thresholds: alert.Thresholds{Critical: &alert.Threshold{Value: ptr(80), Recovery: ptr(70)}},
		For:        alert.Duration(forDur), Labels: map[string]string{"team": "infra"},
		Summary: "{{.Agent}} cpu at {{.Value}}", Enabled: true,
	}
}

// cpu is one cpu.usage sample of series core at time at.
type cpu struct {
	core string
	v    float64
	at   time.Time
}

// entry builds a metrics-stream message of agent's samples as the gateway publishes it.
func entry(agentID string, samples ...cpu) *stream.Message {
	points := make([]metric.Point, len(samples))
	for i, s := range samples {
		points[i] = metric.Point{
			Measurement: "cpu",
			Tags:        []metric.Tag{{Key: "core", Value: s.core}},
			Fields:      []metric.Field{{Key: "usage", Value: metric.Value{Kind: metric.KindFloat, F: s.v}}},
			Time:        s.at.UnixNano(),
		}
	}
	msg := message.NewMessage(watermill.NewUUID(), metric.AppendLineProtocol(nil, points, agentID))
	msg.Metadata.Set(stream.MetaAgent, agentID)
	msg.Metadata.Set(stream.MetaReceivedAt, strconv.FormatInt(time.Now().UnixNano(), 10))
	msg.Metadata.Set(stream.MetaPoints, strconv.Itoa(len(points)))
	return &stream.Message{Stream: "metrics:{0}", ID: "1-0", Deliveries: 1, Msg: msg}
}

func handle(t *testing.T, c *replica, batch ...*stream.Message) {
	t.Helper()
	if err := c.eval.Handle(t.Context(), batch); err != nil {
		t.Fatalf("Handle = %v", err)
	}
	for i, m := range batch {
		if err := m.Rejected(); err != nil {
			t.Fatalf("Handle rejected message %d: %v", i, err)
		}
	}
}

// streamEvents returns every event in the alerts streams of every shard, each shard's in its
// order, the shards merged by entry id (time).
func (e *env) streamEvents(t *testing.T) []alert.Event {
	t.Helper()
	var msgs []redis.XMessage
	for _, key := range alertredis.StreamKeys(e.prefix, testShards) {
		part, err := e.rdb.XRange(t.Context(), key, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s = %v", key, err)
		}
		msgs = append(msgs, part...)
	}
	slices.SortStableFunc(msgs, func(a, b redis.XMessage) int { return compareIDs(a.ID, b.ID) })
	out := make([]alert.Event, len(msgs))
	for i, m := range msgs {
		wm, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(m.Values)
		if err != nil {
			t.Fatalf("alerts-stream entry %s: %v", m.ID, err)
		}
		ev, err := alert.DecodeEvent(wm.Payload)
		if err != nil {
			t.Fatalf("alerts-stream entry %s: %v", m.ID, err)
		}
		if wm.UUID != ev.ID {
			t.Errorf("alerts-stream entry %s: message UUID %s, want the event id %s", m.ID, wm.UUID, ev.ID)
		}
		out[i] = ev
	}
	return out
}

// compareIDs orders two stream entry ids ("ms-seq").
func compareIDs(a, b string) int {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	an, _ := strconv.ParseUint(am, 10, 64)
	bn, _ := strconv.ParseUint(bm, 10, 64)
	if c := cmp.Compare(an, bn); c != 0 {
		return c
	}
	asq, _ := strconv.ParseUint(as, 10, 64)
	bsq, _ := strconv.ParseUint(bs, 10, 64)
	return cmp.Compare(asq, bsq)
}

// transitions renders events as "from>to(severity)".
func transitions(evs []alert.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = fmt.Sprintf("%s>%s(%s)", ev.From, ev.To, ev.Severity)
	}
	return out
}

// subscriber collects the events published on the alerts channel.
type subscriber struct {
	ps      *redis.PubSub
	rdb     redis.UniversalClient
	channel string

	mu     sync.Mutex
	events []alert.Event
	marks  map[string]bool
}

// subscribe listens on the env's alerts channel until the test ends.
func (e *env) subscribe(t *testing.T) *subscriber {
	t.Helper()
	s := &subscriber{rdb: e.rdb, channel: alertredis.Channel(e.prefix), marks: map[string]bool{}}
	s.ps = e.rdb.Subscribe(t.Context(), s.channel)
	if _, err := s.ps.Receive(t.Context()); err != nil { // the subscription confirmation
		t.Fatalf("SUBSCRIBE = %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range s.ps.Channel() {
			s.mu.Lock()
			if strings.HasPrefix(m.Payload, "mark:") {
				s.marks[m.Payload] = true
			} else if ev, err := alert.DecodeEvent([]byte(m.Payload)); err == nil {
				s.events = append(s.events, ev)
			} else {
				s.events = append(s.events, alert.Event{ID: "undecodable: " + m.Payload})
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.ps.Close(); <-done })
	return s
}

// received returns every event published so far: it publishes a marker and waits for it, and
// since Redis delivers one channel's messages in the order it executed the PUBLISHes, every
// event committed before the call is in the result.
func (s *subscriber) received(t *testing.T) []alert.Event {
	t.Helper()
	mark := "mark:" + watermill.NewUUID()
	if err := s.rdb.Publish(t.Context(), s.channel, mark).Err(); err != nil {
		t.Fatalf("PUBLISH marker = %v", err)
	}
	var out []alert.Event
	testenv.Eventually(t, 5*time.Second, func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.marks[mark] {
			return "pub/sub marker not received"
		}
		out = append([]alert.Event(nil), s.events...)
		return ""
	})
	return out
}

// receivedAtLeast waits until n events at least were published, then returns every event
// published so far, after a marker (see received). On a cluster, PUBLISHes on different nodes
// reach the subscriber's node over separate links, so the marker alone does not order them.
func (s *subscriber) receivedAtLeast(t *testing.T, n int) []alert.Event {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.events) < n {
			return fmt.Sprintf("%d events published so far, want %d", len(s.events), n)
		}
		return ""
	})
	return s.received(t)
}

// active returns the active alerts by agent and series.
func (e *env) active(t *testing.T) map[string]alert.Active {
	t.Helper()
	list, err := alertredis.ListActive(t.Context(), e.rdb, e.prefix, testShards)
	if err != nil {
		t.Fatalf("ListActive = %v", err)
	}
	out := map[string]alert.Active{}
	for _, a := range list {
		out[a.AgentID+"/"+a.Series] = a
	}
	return out
}
