package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// env is one test's Redis: a client and the key prefix that isolates the test, with the shard
// count its streams use.
type env struct {
	t       testing.TB
	client  redis.UniversalClient
	prefix  string
	shards  int
	cluster bool
}

const (
	testShards = 4
	// clusterShards is the shard count of the cluster variants: more shards than masters, so that
	// every node holds several.
	clusterShards = 8
)

// newEnv returns an env on the single test Redis (testenv.Redis).
func newEnv(t testing.TB) *env {
	client, prefix := testenv.Redis(t)
	return &env{t: t, client: client, prefix: prefix, shards: testShards}
}

// newClusterEnv returns an env on the shared Redis Cluster (testenv.RedisCluster), whose client
// is a *redis.ClusterClient: every command must stay in one slot.
func newClusterEnv(t testing.TB) *env {
	client, prefix := testenv.RedisCluster(t)
	return &env{t: t, client: client, prefix: prefix, shards: clusterShards, cluster: true}
}

// onRedisAndCluster runs test against the single Redis and against the Redis Cluster, as the
// subtests "redis" and "cluster".
func onRedisAndCluster(t *testing.T, test func(t *testing.T, e *env)) {
	t.Run("redis", func(t *testing.T) { test(t, newEnv(t)) })
	t.Run("cluster", func(t *testing.T) { test(t, newClusterEnv(t)) })
}

func (e *env) keys() []string { return StreamKeys(e.prefix, e.shards) }

// consumerConfig returns a config with timings small enough for tests; no reclaim unless a test
// lowers ClaimMinIdle.
func (e *env) consumerConfig(group, name string) ConsumerConfig {
	return ConsumerConfig{
		Prefix:        e.prefix,
		Shards:        e.shards,
		Group:         group,
		Consumer:      name,
		BatchSize:     100,
		MaxWait:       10 * time.Millisecond,
		Block:         50 * time.Millisecond,
		ClaimMinIdle:  time.Minute,
		ClaimInterval: 50 * time.Millisecond,
		MaxDeliveries: 5,
		RetryMin:      10 * time.Millisecond,
		RetryMax:      50 * time.Millisecond,
		DrainTimeout:  2 * time.Second,
	}
}

func (e *env) publisher() *Publisher {
	p, err := NewPublisher(e.client, PublisherConfig{Prefix: e.prefix, Shards: e.shards}, nil)
	if err != nil {
		e.t.Fatalf("NewPublisher: %v", err)
	}
	return p
}

// publish sends n batches for each agent, interleaved, payload "<agent> <i>", and returns the
// payloads in publishing order.
func (e *env) publish(p *Publisher, agents []string, n int) []string {
	e.t.Helper()
	var sent []string
	for i := range n {
		for _, a := range agents {
			payload := fmt.Sprintf("%s %d", a, i)
			if err := p.Publish(context.Background(), a, []byte(payload), map[string]string{MetaPoints: "1"}); err != nil {
				e.t.Fatalf("Publish(%q): %v", a, err)
			}
			sent = append(sent, payload)
		}
	}
	return sent
}

// started is a running consumer.
type started struct {
	c    *Consumer
	stop func() // cancels Run and waits for it to return
}

// start runs a consumer until the test ends or stop is called.
func (e *env) start(cfg ConsumerConfig, h Handler) *started {
	e.t.Helper()
	c, err := NewConsumer(e.client, cfg, h, nil)
	if err != nil {
		e.t.Fatalf("NewConsumer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run() = %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Errorf("Run did not return 10s after cancellation")
			}
		})
	}
	e.t.Cleanup(stop)
	return &started{c: c, stop: stop}
}

// pending returns the ids pending in group over all shard streams, with their consumer and count.
func (e *env) pending(group string) []redis.XPendingExt {
	e.t.Helper()
	var all []redis.XPendingExt
	for _, k := range e.keys() {
		p, err := e.client.XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: k, Group: group, Start: "-", End: "+", Count: 100_000,
		}).Result()
		if err != nil && isNoGroup(err) {
			continue // the group does not exist yet: nothing pending
		}
		if err != nil {
			e.t.Fatalf("XPENDING %s %s: %v", k, group, err)
		}
		all = append(all, p...)
	}
	return all
}

// ghostRead reads up to count new entries from every shard as consumer name, with raw
// XREADGROUPs (one per shard, as a cluster requires), and never acks them: a consumer that dies
// right after reading.
func (e *env) ghostRead(group, name string, count int64) []redis.XMessage {
	e.t.Helper()
	if err := createGroups(context.Background(), e.client, e.keys(), group); err != nil {
		e.t.Fatal(err)
	}
	var msgs []redis.XMessage
	for _, k := range e.keys() {
		res, err := e.client.XReadGroup(context.Background(), &redis.XReadGroupArgs{
			Group: group, Consumer: name, Streams: []string{k, ">"}, Count: count, Block: -1,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			e.t.Fatalf("ghost XREADGROUP %s: %v", k, err)
		}
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
		}
	}
	return msgs
}

func (e *env) deadLetters() []redis.XMessage {
	e.t.Helper()
	msgs, err := e.client.XRange(context.Background(), DeadLetterKey(e.prefix), "-", "+").Result()
	if err != nil {
		e.t.Fatalf("XRANGE dead letters: %v", err)
	}
	return msgs
}

// recorder is a Handler that records every successful call.
type recorder struct {
	mu      sync.Mutex
	calls   [][]handled
	fail    func(batch []*Message) error // optional: decides failure (nil = succeed)
	changed chan struct{}
}

type handled struct {
	stream, id, payload string
	deliveries          int64
	meta                map[string]string
	at                  time.Time
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) handle(_ context.Context, batch []*Message) error {
	if r.fail != nil {
		if err := r.fail(batch); err != nil {
			return err
		}
	}
	call := make([]handled, len(batch))
	now := time.Now()
	for i, m := range batch {
		call[i] = handled{stream: m.Stream, id: m.ID, payload: string(m.Msg.Payload), deliveries: m.Deliveries, meta: m.Msg.Metadata, at: now}
	}
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) all() []handled {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []handled
	for _, c := range r.calls {
		out = append(out, c...)
	}
	return out
}

func (r *recorder) batches() [][]handled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// waitFor waits until the recorder has handled at least n messages.
func (r *recorder) waitFor(t testing.TB, n int, timeout time.Duration) []handled {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if got := r.all(); len(got) >= n {
			return got
		}
		select {
		case <-r.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("handled %d messages after %s, want %d", len(r.all()), timeout, n)
		}
	}
}

func payloads(hs []handled) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.payload
	}
	return out
}

// TestRedisEnvIsolatesAndCleansUp checks the test environment the other tests rely on: each test
// gets its own prefix, and every key under it is gone once the test ends, others untouched.
func TestRedisEnvIsolatesAndCleansUp(t *testing.T) {
	outer := newEnv(t)
	ctx := context.Background()
	if err := outer.client.Set(ctx, outer.prefix+"keep", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var inner string
	t.Run("inner", func(t *testing.T) {
		e := newEnv(t)
		inner = e.prefix
		if inner == outer.prefix || !strings.HasPrefix(inner, "t:") {
			t.Fatalf("prefix %q (outer %q): want a distinct t:<random>: prefix", inner, outer.prefix)
		}
		e.publish(e.publisher(), []string{"a", "b", "c"}, 2)
		pipe := e.client.Pipeline()
		for i := range 2500 { // more than one SCAN page
			pipe.Set(ctx, fmt.Sprintf("%sk:%d", inner, i), "v", 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		e.client.Close() // the test may close its client; cleanup must still work
	})
	left, err := outer.client.Keys(ctx, inner+"*").Result()
	if err != nil || len(left) != 0 {
		t.Errorf("keys left under %q after the test ended: %d (%v), want none", inner, len(left), err)
	}
	if n, _ := outer.client.Exists(ctx, outer.prefix+"keep").Result(); n != 1 {
		t.Errorf("the other test's key was deleted by the inner test's cleanup")
	}
}
