package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/silence"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// env is one test's world: its own Redis prefix, its own database with the real channel and
// silence stores, and a log kept in memory and printed when the test fails.
type env struct {
	t        *testing.T
	rdb      redis.UniversalClient
	prefix   string
	channels *postgres.ChannelStore
	silences *postgres.SilenceStore
	log      *slog.Logger
	db       *sqlx.DB
}

// testShards is the number of alert shards (STREAM_SHARDS) of the tests.
const testShards = 2

func newEnv(t *testing.T) *env {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return newEnvOn(t, rdb, prefix)
}

// newClusterEnv is newEnv on the shared Redis Cluster (testenv.RedisCluster).
func newClusterEnv(t *testing.T) *env {
	t.Helper()
	rdb, prefix := testenv.RedisCluster(t)
	return newEnvOn(t, rdb, prefix)
}

func newEnvOn(t *testing.T, rdb redis.UniversalClient, prefix string) *env {
	t.Helper()
	db, _ := testenv.Postgres(t)
	var buf syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notifier log:\n%s", buf.String())
		}
	})
	return &env{
		t: t, rdb: rdb, prefix: prefix,
		channels: postgres.NewChannelStore(db),
		silences: postgres.NewSilenceStore(db),
		log:      slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		db:       db,
	}
}

// config is fast enough for tests: short timeouts and backoff.
func (e *env) config(consumer string) Config {
	return Config{
		Prefix:         e.prefix,
		Consumer:       consumer,
		WebhookTimeout: 2 * time.Second,
		MaxRetries:     2,
		RetryInitial:   20 * time.Millisecond,
		RetryMax:       100 * time.Millisecond,
		CacheTTL:       50 * time.Millisecond,
		RepeatCheck:    50 * time.Millisecond,
		// The receivers are httptest servers on 127.0.0.1: the operator's allow-list path.
		AllowedNetworks: []string{"127.0.0.0/8"},
	}
}

// consumerConfig is the batch consumer's part, fast enough for tests.
func consumerConfig() stream.ConsumerConfig {
	return stream.ConsumerConfig{Shards: testShards, Block: 100 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
}

// running is a Notifier running in the background.
type running struct {
	reg  *prometheus.Registry
	stop func() (time.Duration, error) // cancels Run, waits for it; returns how long it took and its error
}

// start runs a Notifier with cfg until the returned stop (or the test's cleanup) is called;
// modify, when given, changes it before it runs.
func (e *env) start(cfg Config, modify ...func(*Notifier)) *running {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	n, err := New(e.rdb, cfg, consumerConfig(), e.channels, e.silences, e.log.With("consumer", cfg.Consumer), reg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	for _, m := range modify {
		m(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	var runErr error
	var took time.Duration
	stop := func() (time.Duration, error) {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = fmt.Errorf("Run did not return 30s after its context was cancelled")
			}
			took = time.Since(start)
		})
		return took, runErr
	}
	e.t.Cleanup(func() {
		if _, err := stop(); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	return &running{reg: reg, stop: stop}
}

// outcome returns the deliveries counted with outcome by this copy.
func (r *running) outcome(o string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "agentmonitor_notifier_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == o {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// createChannel stores ch through the real store and returns it as stored.
func (e *env) createChannel(ch alert.Channel) alert.Channel {
	e.t.Helper()
	stored, err := e.channels.Create(context.Background(), ch, "test")
	if err != nil {
		e.t.Fatalf("creating %s channel %q: %v", ch.Type, ch.Name, err)
	}
	return stored
}

// channel stores a webhook channel through the real store.
func (e *env) channel(name, url, secret string, headers map[string]string) alert.Channel {
	e.t.Helper()
	return e.createChannel(alert.Channel{
		Name: name, Type: alert.ChannelTypeWebhook, URL: url, Secret: secret, Headers: headers, Enabled: true,
	})
}

// append adds ev to the alerts stream of its agent's shard the way the alerter does
// (StreamValues in an XADD).
func (e *env) append(ev alert.Event) {
	e.t.Helper()
	values, err := alertredis.StreamValues(ev)
	if err != nil {
		e.t.Fatalf("StreamValues: %v", err)
	}
	e.xaddTo(alertredis.Shard(ev.AgentID, testShards), values)
}

// xadd appends values to the alerts stream of shard 0.
func (e *env) xadd(values map[string]any) {
	e.t.Helper()
	e.xaddTo(0, values)
}

func (e *env) xaddTo(shard int, values map[string]any) {
	e.t.Helper()
	if err := e.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: alertredis.StreamKey(e.prefix, shard), Values: values}).Err(); err != nil {
		e.t.Fatalf("XADD: %v", err)
	}
}

// activeKey returns the active-alerts hash of the shard of agentID.
func (e *env) activeKey(agentID string) string {
	return alertredis.ActiveKey(e.prefix, alertredis.Shard(agentID, testShards))
}

// settled waits until the group has read and acknowledged every entry of the alerts streams.
func (e *env) settled() {
	e.t.Helper()
	waitFor(e.t, 15*time.Second, "every alerts-stream entry acknowledged by the notifier group", func() bool {
		for _, key := range alertredis.StreamKeys(e.prefix, testShards) {
			groups, err := e.rdb.XInfoGroups(context.Background(), key).Result()
			if err != nil {
				if strings.Contains(err.Error(), "no such key") {
					continue // no entry there yet
				}
				return false
			}
			i := slices.IndexFunc(groups, func(g redis.XInfoGroup) bool { return g.Name == Group })
			if i < 0 || groups[i].Pending != 0 || groups[i].Lag != 0 {
				return false
			}
		}
		return true
	})
}

// pending returns how many entries the group has delivered and not acknowledged, all shards
// together.
func (e *env) pending() int64 {
	e.t.Helper()
	var n int64
	for _, key := range alertredis.StreamKeys(e.prefix, testShards) {
		groups, err := e.rdb.XInfoGroups(context.Background(), key).Result()
		if err != nil {
			if strings.Contains(err.Error(), "no such key") {
				continue
			}
			e.t.Fatalf("XINFO GROUPS: %v", err)
		}
		for _, g := range groups {
			if g.Name == Group {
				n += g.Pending
			}
		}
	}
	return n
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var testAt = time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)

// firing returns a transition pending -> firing of rule ruleID on agent, for channels.
func firing(ruleID, agent string, channels ...string) alert.Event {
	threshold := 95.0
	return alert.Event{
		ID:        uuid.NewString(),
		AlertID:   alert.ID(ruleID, agent, ""),
		RuleID:    ruleID,
		RuleName:  "CPU busy",
		Kind:      "threshold",
		AgentID:   agent,
		Metric:    "cpu.usage_percent",
		From:      alert.StatusPending,
		To:        alert.StatusFiring,
		Severity:  "critical",
		Value:     97.5,
		Threshold: &threshold,
		At:        testAt,
		Labels:    map[string]string{"team": "infra"},
		Summary:   "CPU busy: " + agent + " at 97.5%",
		Channels:  channels,
		Notify:    true,
	}
}

// resolved returns the resolve of the alert ev fired, seconds later.
func resolved(ev alert.Event, seconds float64) alert.Event {
	recovery := 41.25
	r := ev
	r.ID = uuid.NewString()
	r.From, r.To = alert.StatusFiring, alert.StatusResolved
	r.Value = recovery
	r.RecoveryValue = &recovery
	r.DurationSeconds = seconds
	r.At = ev.At.Add(time.Duration(seconds * float64(time.Second)))
	return r
}

// fireAndResolve appends, for channels, a firing of a new rule on agent-1 and its resolve 90 s
// later, and returns both.
func (e *env) fireAndResolve(channels ...string) (fire, res alert.Event) {
	e.t.Helper()
	fire = firing(uuid.NewString(), "agent-1", channels...)
	res = resolved(fire, 90)
	e.append(fire)
	e.append(res)
	return fire, res
}

// webhook starts a receiver answering 200 and stores a webhook channel "ops" sending to it.
func (e *env) webhook() (*receiver, alert.Channel) {
	e.t.Helper()
	rcv := newReceiver(e.t, nil)
	return rcv, e.channel("ops", rcv.srv.URL, "", nil)
}

// receiver is a webhook endpoint that records what it gets and answers with status(n) for its
// n-th request (1-based), after delay.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []request
	status func(n int) int
	delay  time.Duration
	// entered, when set, is signalled as each request arrives.
	entered chan struct{}
}

type request struct {
	at     time.Time // when it arrived
	path   string
	header http.Header
	body   []byte
	status int
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	if r.status == nil {
		r.status = func(int) int { return http.StatusOK }
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(req.Body)
		if r.entered != nil {
			select {
			case r.entered <- struct{}{}:
			default:
			}
		}
		r.mu.Lock()
		delay := r.delay
		r.mu.Unlock()
		time.Sleep(delay)
		r.mu.Lock()
		code := r.status(len(r.got) + 1)
		r.got = append(r.got, request{at: at, path: req.URL.Path, header: req.Header.Clone(), body: body, status: code})
		r.mu.Unlock()
		w.WriteHeader(code)
		if code >= 300 {
			_, _ = io.WriteString(w, "receiver overloaded\n")
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

// setDelay changes how long the receiver waits before answering.
func (r *receiver) setDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// okCount counts the requests answered with a 2xx.
func (r *receiver) okCount() int {
	n := 0
	for _, req := range r.requests() {
		if req.status < 300 {
			n++
		}
	}
	return n
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeChannels and fakeSilences stand in for the stores where no database is needed.
type fakeChannels struct{}

func (fakeChannels) List(context.Context) ([]alert.Channel, error) { return nil, nil }

type fakeSilences struct{}

func (fakeSilences) List(context.Context, bool) ([]silence.Silence, error) { return nil, nil }
