package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// TestConsumerHandlesEverythingInOrder: one consumer gets every entry once, in each agent's order,
// in batches, and acks them all.
// TestFullBatchIsNotHeldForTheWait: while a batch fills the consumer collects the readers' entries
// every MaxWait/4 (at once when one read completes the batch), and hands a full batch over at
// that collection, not when MaxWait ends. Here MaxWait is 20s: the entries, read one XADD at a
// time, complete the batch at the first collection, 5s after the first entry.
func TestFullBatchIsNotHeldForTheWait(t *testing.T) {
	onRedisAndCluster(t, func(t *testing.T, e *env) {
		rec := newRecorder()
		cfg := e.consumerConfig("g", "c1")
		cfg.BatchSize = 5
		cfg.MaxWait = 20 * time.Second
		cfg.ClaimMinIdle = time.Hour
		cfg.ClaimInterval = time.Hour
		e.start(cfg, rec.handle)
		p := e.publisher()
		e.publish(p, []string{"a"}, 1)
		// The first entry is read (pending for c1) and starts the batch; the rest completes it.
		testenv.Eventually(t, 10*time.Second, func() string {
			if n := len(e.pending("g")); n != 1 {
				return fmt.Sprintf("%d entries pending, want the first one read", n)
			}
			return ""
		})
		start := time.Now()
		e.publish(p, []string{"a"}, 4)
		got := rec.waitFor(t, 5, 15*time.Second) // well before MaxWait
		if b := rec.batches(); len(b) != 1 || len(got) != 5 {
			t.Errorf("handled %d entries in %d batches, want one batch of 5", len(got), len(b))
		}
		t.Logf("full batch handed over %s after it was complete in Redis", time.Since(start).Round(time.Millisecond))
	})
}

func TestConsumerHandlesEverythingInOrder(t *testing.T) {
	onRedisAndCluster(t, testConsumerHandlesEverythingInOrder)
}

func testConsumerHandlesEverythingInOrder(t *testing.T, e *env) {
	sent := e.publish(e.publisher(), []string{"a", "b", "c", "d", "e"}, 40)
	rec := newRecorder()
	cfg := e.consumerConfig("g", "c1")
	cfg.BatchSize = 30
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	s := e.start(cfg, rec.handle)
	got := rec.waitFor(t, len(sent), 10*time.Second)

	perAgent := map[string][]string{}
	for _, h := range got {
		if h.deliveries != 1 {
			t.Errorf("entry %s handed over with Deliveries %d, want 1", h.id, h.deliveries)
		}
		perAgent[h.meta[MetaAgent]] = append(perAgent[h.meta[MetaAgent]], h.payload)
	}
	for agent, ps := range perAgent {
		for i, p := range ps {
			if want := fmt.Sprintf("%s %d", agent, i); p != want {
				t.Fatalf("agent %s: handled %q at position %d, want %q (order lost)", agent, p, i, want)
			}
		}
	}
	if len(got) != len(sent) {
		t.Errorf("handled %d entries, want %d (duplicates)", len(got), len(sent))
	}
	for _, b := range rec.batches() {
		if len(b) > cfg.BatchSize {
			t.Errorf("batch of %d entries, want at most BatchSize %d", len(b), cfg.BatchSize)
		}
	}
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	// The counter is bumped just after the XACK that empties the pending list: wait for it.
	testenv.Eventually(t, 5*time.Second, func() string {
		if got := value(t, s.c.metrics.acked); got != float64(len(sent)) {
			return fmt.Sprintf("acked_total = %v, want %d", got, len(sent))
		}
		if n := gatherSum(t, reg, "agentmonitor_stream_acked_total"); n != float64(len(sent)) {
			return fmt.Sprintf("acked_total in the registry = %v, want %d", n, len(sent))
		}
		return ""
	})
}

// TestTwoConsumersSplitTheWork: two copies in one group each handle part of the stream; together
// every entry exactly once.
func TestTwoConsumersSplitTheWork(t *testing.T) { onRedisAndCluster(t, testTwoConsumersSplitTheWork) }

func testTwoConsumersSplitTheWork(t *testing.T, e *env) {
	var agents []string
	for i := range 20 {
		agents = append(agents, fmt.Sprintf("agent-%d", i))
	}
	sent := e.publish(e.publisher(), agents, 20)
	slow := func(rec *recorder) Handler {
		return func(ctx context.Context, b []*Message) error {
			time.Sleep(5 * time.Millisecond) // so that neither copy drains everything alone
			return rec.handle(ctx, b)
		}
	}
	rec1, rec2 := newRecorder(), newRecorder()
	reg := prometheus.NewRegistry() // shared: the second consumer reuses the registered metrics
	cfg1, cfg2 := e.consumerConfig("g", "c1"), e.consumerConfig("g", "c2")
	cfg1.BatchSize, cfg2.BatchSize = 10, 10
	cfg1.Registerer, cfg2.Registerer = reg, reg
	e.start(cfg1, slow(rec1))
	e.start(cfg2, slow(rec2))

	// Every entry handled and acknowledged: a duplicate would have been handled by now.
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	got1, got2 := rec1.all(), rec2.all()
	if len(got1) == 0 || len(got2) == 0 {
		t.Errorf("consumer 1 handled %d, consumer 2 handled %d entries: want both to share the work", len(got1), len(got2))
	}
	seen := map[string]int{}
	for _, h := range append(got1, got2...) {
		seen[h.payload]++
	}
	for _, p := range sent {
		if seen[p] != 1 {
			t.Errorf("entry %q handled %d times, want once", p, seen[p])
		}
	}
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if got := gatherSum(t, reg, "agentmonitor_stream_acked_total"); got != float64(len(sent)) {
		t.Errorf("acked_total over both consumers = %v, want %d", got, len(sent))
	}
}

// gatherSum sums the values of every series of the counter name in reg.
func gatherSum(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

type retryAfterErr struct{ d time.Duration }

func (e retryAfterErr) Error() string             { return "influx says wait" }
func (e retryAfterErr) RetryAfter() time.Duration { return e.d }

// TestHandlerErrorRetriesWithoutLosingTheClaim: while the handler fails, the batch is retried,
// nothing is acked, its delivery count does not grow and a second consumer with a short
// ClaimMinIdle takes over neither it nor the entries read ahead for the next batches; once the
// handler succeeds, each is acked once.
func TestHandlerErrorRetriesWithoutLosingTheClaim(t *testing.T) {
	onRedisAndCluster(t, testHandlerErrorRetriesWithoutLosingTheClaim)
}

func testHandlerErrorRetriesWithoutLosingTheClaim(t *testing.T, e *env) {
	sent := e.publish(e.publisher(), []string{"a", "b", "c"}, 4)

	const failFor = 1500 * time.Millisecond
	var (
		mu       sync.Mutex
		first    time.Time
		attempts int
	)
	rec := newRecorder()
	rec.fail = func([]*Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first) < failFor {
			return errors.New("influxdb is down")
		}
		return nil
	}
	cfgA := e.consumerConfig("g", "a")
	// Smaller than what is sent: the entries beyond the first batch wait, read, in the inbox, and
	// must be kept claimed too.
	cfgA.BatchSize = 5
	cfgA.ClaimMinIdle = 500 * time.Millisecond
	cfgA.RetryMin, cfgA.RetryMax = 20*time.Millisecond, 80*time.Millisecond
	a := e.start(cfgA, rec.handle)
	testenv.Eventually(t, 5*time.Second, func() string {
		if len(e.pending("g")) == len(sent) {
			return ""
		}
		return "consumer a never read the entries"
	})

	thief := newRecorder()
	cfgB := e.consumerConfig("g", "b")
	cfgB.ClaimMinIdle, cfgB.ClaimInterval = 500*time.Millisecond, 20*time.Millisecond
	e.start(cfgB, thief.handle)

	// Halfway through the outage: still pending, still a's, never redelivered, recently touched.
	time.Sleep(failFor / 2)
	for _, p := range e.pending("g") {
		if p.Consumer != "a" || p.RetryCount != 1 || p.Idle >= cfgA.ClaimMinIdle {
			t.Errorf("while retrying, entry %s: consumer %s, deliveries %d, idle %s; want a, 1, < %s",
				p.ID, p.Consumer, p.RetryCount, p.Idle, cfgA.ClaimMinIdle)
		}
	}
	got := rec.waitFor(t, len(sent), 10*time.Second)
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if n := len(thief.all()); n != 0 {
		t.Errorf("consumer b took over %d entries consumer a was retrying, want 0", n)
	}
	if len(rec.all()) != len(sent) || !sameSet(payloads(got), sent) {
		t.Errorf("successful handling = %q, want each of %q once", payloads(rec.all()), sent)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts < 3 {
		t.Errorf("handler called %d times, want several retries", attempts)
	}
	if r, ok := value(t, a.c.metrics.retries), len(rec.batches()); r != float64(attempts-ok) {
		t.Errorf("handler_retries_total = %v, want %d (%d calls, %d succeeded)", r, attempts-ok, attempts, ok)
	}
	if n := len(e.deadLetters()); n != 0 {
		t.Errorf("dead-letter stream holds %d entries after a transient outage, want 0", n)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestRetryAfterIsHonoured: an error carrying RetryAfter sets the wait before the next attempt,
// even when the consumer's own backoff is much shorter.
func TestRetryAfterIsHonoured(t *testing.T) {
	e := newEnv(t)
	e.publish(e.publisher(), []string{"a"}, 1)
	var calls []time.Time
	var mu sync.Mutex
	done := make(chan struct{})
	cfg := e.consumerConfig("g", "c")
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, time.Millisecond
	e.start(cfg, func(context.Context, []*Message) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		if len(calls) == 1 {
			return fmt.Errorf("writing: %w", retryAfterErr{300 * time.Millisecond})
		}
		close(done)
		return nil
	})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called a second time")
	}
	mu.Lock()
	defer mu.Unlock()
	if gap := calls[1].Sub(calls[0]); gap < 300*time.Millisecond {
		t.Errorf("second attempt %s after the first, want >= the 300ms Retry-After", gap)
	}
}

// TestDeadConsumersEntriesAreReclaimed: entries read by a consumer that died without acking are
// taken over by a live one once idle for ClaimMinIdle, not before, and handled.
func TestDeadConsumersEntriesAreReclaimed(t *testing.T) {
	onRedisAndCluster(t, testDeadConsumersEntriesAreReclaimed)
}

func testDeadConsumersEntriesAreReclaimed(t *testing.T, e *env) {
	sent := e.publish(e.publisher(), []string{"a", "b"}, 3)
	readAt := time.Now() // before the read: idle time counts from a moment after this
	read := e.ghostRead("g", "ghost", 100)
	if len(read) != len(sent) {
		t.Fatalf("ghost read %d entries, want %d", len(read), len(sent))
	}
	rec := newRecorder()
	cfg := e.consumerConfig("g", "live")
	cfg.ClaimMinIdle = 300 * time.Millisecond
	s := e.start(cfg, rec.handle)
	got := rec.waitFor(t, len(sent), 10*time.Second)
	if !sameSet(payloads(got), sent) {
		t.Errorf("reclaimed and handled %q, want %q", payloads(got), sent)
	}
	for _, h := range got {
		if h.deliveries != 2 {
			t.Errorf("reclaimed entry %s handed over with Deliveries %d, want 2", h.id, h.deliveries)
		}
		if h.at.Sub(readAt) < cfg.ClaimMinIdle {
			t.Errorf("entry %s reclaimed %s after the ghost read it, want >= ClaimMinIdle %s", h.id, h.at.Sub(readAt), cfg.ClaimMinIdle)
		}
	}
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if r := value(t, s.c.metrics.reclaimed); r != float64(len(sent)) {
		t.Errorf("reclaimed_total = %v, want %d", r, len(sent))
	}
}

// TestConsumerKilledMidBatchLosesNothing: a consumer stopped while its handler cannot finish
// leaves the batch unacked; another copy reclaims and handles it.
func TestConsumerKilledMidBatchLosesNothing(t *testing.T) {
	onRedisAndCluster(t, testConsumerKilledMidBatchLosesNothing)
}

func testConsumerKilledMidBatchLosesNothing(t *testing.T, e *env) {
	sent := e.publish(e.publisher(), []string{"a", "b", "c"}, 2)
	entered := make(chan struct{})
	var once sync.Once
	cfgA := e.consumerConfig("g", "a")
	cfgA.DrainTimeout = 100 * time.Millisecond
	a := e.start(cfgA, func(ctx context.Context, b []*Message) error {
		once.Do(func() { close(entered) })
		<-ctx.Done() // the write never completes: cancelled DrainTimeout after shutdown
		return ctx.Err()
	})
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("handler of a never called")
	}
	a.stop()
	if p := e.pending("g"); len(p) != len(sent) {
		t.Fatalf("after a stopped mid-batch, %d entries pending, want all %d (nothing acked)", len(p), len(sent))
	}

	rec := newRecorder()
	cfgB := e.consumerConfig("g", "b")
	cfgB.ClaimMinIdle = 200 * time.Millisecond
	e.start(cfgB, rec.handle)
	got := rec.waitFor(t, len(sent), 10*time.Second)
	if !sameSet(payloads(got), sent) {
		t.Errorf("b handled %q, want %q", payloads(got), sent)
	}
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
}

// TestShutdownFinishesTheBatchInHand: cancelling Run while the handler works does not cancel the
// handler's context. When the handler then succeeds, the batch is acked before Run returns; when it
// fails, nothing is acked and Run returns without retrying for long.
func TestShutdownFinishesTheBatchInHand(t *testing.T) {
	tests := []struct {
		name        string
		result      error
		wantPending int
	}{
		{"handler succeeds", nil, 0},
		{"handler fails", errors.New("influxdb is down"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.publish(e.publisher(), []string{"a"}, 3)
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			var calls atomic.Int32
			var ctxErrAtShutdown atomic.Value
			cfg := e.consumerConfig("g", "c")
			s := e.start(cfg, func(ctx context.Context, b []*Message) error {
				if calls.Add(1) == 1 {
					once.Do(func() { close(entered) })
					<-release
					ctxErrAtShutdown.Store(fmt.Sprint(ctx.Err()))
				}
				return tt.result
			})
			<-entered
			stopped := make(chan struct{})
			go func() { s.stop(); close(stopped) }()
			time.Sleep(100 * time.Millisecond) // shutdown has begun
			select {
			case <-stopped:
				t.Fatal("Run returned while the handler was still working")
			default:
			}
			close(release)
			<-stopped
			if got := ctxErrAtShutdown.Load(); got != "<nil>" {
				t.Errorf("handler context after shutdown began: Err() = %v, want nil (within DrainTimeout)", got)
			}
			if p := e.pending("g"); len(p) != tt.wantPending {
				t.Errorf("%d entries pending after Run returned, want %d", len(p), tt.wantPending)
			}
			if n := calls.Load(); n > 2 {
				t.Errorf("handler called %d times after shutdown began, want at most one last attempt", n-1)
			}
		})
	}
}

// TestRestartedConsumerResumesOwnPendingFirst: a consumer restarted under the same name first
// handles what it had read and not acked, before any new entry.
func TestRestartedConsumerResumesOwnPendingFirst(t *testing.T) {
	onRedisAndCluster(t, testRestartedConsumerResumesOwnPendingFirst)
}

func testRestartedConsumerResumesOwnPendingFirst(t *testing.T, e *env) {
	p := e.publisher()
	old := e.publish(p, []string{"a", "b"}, 3)
	if n := len(e.ghostRead("g", "c1", 100)); n != len(old) {
		t.Fatalf("previous life read %d entries, want %d", n, len(old))
	}
	var fresh []string
	for i := range 3 {
		payload := fmt.Sprintf("new %d", i)
		if err := p.Publish(context.Background(), "a", []byte(payload), nil); err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, payload)
	}
	rec := newRecorder()
	cfg := e.consumerConfig("g", "c1") // ClaimMinIdle is a minute: only resuming can explain it
	e.start(cfg, rec.handle)
	rec.waitFor(t, len(old)+len(fresh), 10*time.Second)
	batches := rec.batches()
	first := payloads(batches[0])
	if !sameSet(first, old) {
		t.Errorf("first batch after restart = %q, want exactly the own pending entries %q", first, old)
	}
	for _, h := range batches[0] {
		if h.deliveries != 2 {
			t.Errorf("resumed entry %s handed over with Deliveries %d, want 2", h.id, h.deliveries)
		}
	}
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
}

// TestRejectedMessagesAreDeadLettered: a message the handler rejects goes to the dead-letter
// stream with its reason and original fields, and is acked; the others are handled normally.
func TestRejectedMessagesAreDeadLettered(t *testing.T) {
	onRedisAndCluster(t, testRejectedMessagesAreDeadLettered)
}

func testRejectedMessagesAreDeadLettered(t *testing.T, e *env) {
	p := e.publisher()
	sent := e.publish(p, []string{"good"}, 3)
	if err := p.Publish(context.Background(), "bad", []byte("bad payload"), map[string]string{MetaPoints: "7"}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := e.consumerConfig("g", "c")
	s := e.start(cfg, func(ctx context.Context, b []*Message) error {
		var keep []*Message
		for _, m := range b {
			if m.Msg.Metadata.Get(MetaAgent) == "bad" {
				m.Reject(errors.New("influxdb: field type conflict"))
				continue
			}
			keep = append(keep, m)
		}
		return rec.handle(ctx, keep)
	})
	rec.waitFor(t, len(sent), 10*time.Second)
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	dead := e.deadLetters()
	if len(dead) != 1 {
		t.Fatalf("dead-letter stream holds %d entries, want 1", len(dead))
	}
	v := dead[0].Values
	badKey := e.keys()[ShardFor("bad", e.shards)]
	want := map[string]string{FieldReason: "influxdb: field type conflict", FieldGroup: "g", FieldConsumer: "c",
		FieldDeliveries: "1", FieldStream: badKey}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("dead letter field %s = %v, want %q", k, v[k], w)
		}
	}
	orig, _ := e.client.XRange(context.Background(), badKey, v[FieldID].(string), v[FieldID].(string)).Result()
	if len(orig) != 1 {
		t.Errorf("dead letter field id %v does not name the original entry on %s", v[FieldID], badKey)
	}
	wm, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(v)
	if err != nil || string(wm.Payload) != "bad payload" || wm.Metadata.Get(MetaPoints) != "7" {
		t.Errorf("dead letter decodes to %v, %v; want the original Watermill message", wm, err)
	}
	if got := value(t, s.c.metrics.dead.WithLabelValues("rejected")); got != 1 {
		t.Errorf("dead_letters_total{reason=rejected} = %v, want 1", got)
	}
}

// TestPoisonEntriesAreDeadLettered: entries that do not decode as Watermill messages are
// dead-lettered with the decoding error and the consumer keeps going.
func TestPoisonEntriesAreDeadLettered(t *testing.T) {
	onRedisAndCluster(t, testPoisonEntriesAreDeadLettered)
}

func testPoisonEntriesAreDeadLettered(t *testing.T, e *env) {
	ctx := context.Background()
	key := e.keys()[0]
	poison := []map[string]any{
		{"garbage": "x"},
		{redisstream.UUIDHeaderKey: "u-1", "payload": "p", "metadata": "\xc1\xff not msgpack"},
	}
	for _, v := range poison {
		if err := e.client.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	s := e.start(e.consumerConfig("g", "c"), rec.handle)
	testenv.Eventually(t, 5*time.Second, func() string {
		if len(e.deadLetters()) == 2 {
			return ""
		}
		return "poison entries not dead-lettered"
	})
	// The consumer is still consuming.
	sent := e.publish(e.publisher(), []string{"after"}, 2)
	got := rec.waitFor(t, len(sent), 5*time.Second)
	if !sameSet(payloads(got), sent) {
		t.Errorf("handled %q, want only the valid entries %q", payloads(got), sent)
	}
	for i, d := range e.deadLetters() {
		reason, _ := d.Values[FieldReason].(string)
		if !strings.HasPrefix(reason, "undecodable entry: ") {
			t.Errorf("dead letter %d reason = %q, want it to say the entry is undecodable", i, reason)
		}
		if raw, _ := d.Values[FieldRaw].(string); raw == "" {
			t.Errorf("dead letter %d has no %s field with the original fields", i, FieldRaw)
		}
	}
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if got := value(t, s.c.metrics.dead.WithLabelValues("undecodable")); got != 2 {
		t.Errorf("dead_letters_total{reason=undecodable} = %v, want 2", got)
	}
}

// TestOverDeliveredEntriesAreDeadLettered: a reclaimed entry delivered more than MaxDeliveries
// times is dead-lettered instead of handed over; one delivered fewer times is handled.
func TestOverDeliveredEntriesAreDeadLettered(t *testing.T) {
	onRedisAndCluster(t, testOverDeliveredEntriesAreDeadLettered)
}

func testOverDeliveredEntriesAreDeadLettered(t *testing.T, e *env) {
	ctx := context.Background()
	e.publish(e.publisher(), []string{"a"}, 2)
	read := e.ghostRead("g", "ghost", 100)
	if len(read) != 2 {
		t.Fatalf("ghost read %d entries, want 2", len(read))
	}
	key := e.keys()[ShardFor("a", e.shards)]
	// Three deliveries so far for the first entry (as if three consumers had died on it).
	if err := e.client.Do(ctx, "XCLAIM", key, "g", "ghost", 0, read[0].ID, "RETRYCOUNT", 3).Err(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := e.consumerConfig("g", "c")
	cfg.MaxDeliveries = 3
	cfg.ClaimMinIdle = 100 * time.Millisecond
	e.start(cfg, rec.handle)
	rec.waitFor(t, 1, 5*time.Second)
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if got := rec.all(); len(got) != 1 || got[0].id != read[1].ID || got[0].deliveries != 2 {
		t.Errorf("handled %+v, want only entry %s with Deliveries 2", got, read[1].ID)
	}
	dead := e.deadLetters()
	if len(dead) != 1 {
		t.Fatalf("dead-letter stream holds %d entries, want 1", len(dead))
	}
	if v := dead[0].Values; v[FieldID] != read[0].ID || v[FieldReason] != "exceeded 3 deliveries" || v[FieldDeliveries] != "4" {
		t.Errorf("dead letter = %v, want id %s, reason %q, deliveries 4", v, read[0].ID, "exceeded 3 deliveries")
	}
}

// TestDeletedPendingEntryIsAcked: an entry deleted from the stream while pending in a dead
// consumer is dropped from the PEL, not handed over, and does not stop the others.
func TestDeletedPendingEntryIsAcked(t *testing.T) {
	e := newEnv(t)
	e.publish(e.publisher(), []string{"a"}, 2)
	read := e.ghostRead("g", "ghost", 100)
	key := e.keys()[ShardFor("a", e.shards)]
	if err := e.client.XDel(context.Background(), key, read[0].ID).Err(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := e.consumerConfig("g", "c")
	cfg.ClaimMinIdle = 100 * time.Millisecond
	e.start(cfg, rec.handle)
	rec.waitFor(t, 1, 5*time.Second)
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if got := rec.all(); len(got) != 1 || got[0].id != read[1].ID {
		t.Errorf("handled %+v, want only the surviving entry %s", got, read[1].ID)
	}
}

// TestOwnDeletedPendingEntryIsAcked covers the same on the resume path (XREADGROUP 0 returns a
// deleted entry with no fields).
func TestOwnDeletedPendingEntryIsAcked(t *testing.T) {
	e := newEnv(t)
	e.publish(e.publisher(), []string{"a"}, 2)
	read := e.ghostRead("g", "c", 100)
	key := e.keys()[ShardFor("a", e.shards)]
	if err := e.client.XDel(context.Background(), key, read[0].ID).Err(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	e.start(e.consumerConfig("g", "c"), rec.handle)
	rec.waitFor(t, 1, 5*time.Second)
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if got := rec.all(); len(got) != 1 || got[0].id != read[1].ID {
		t.Errorf("handled %+v, want only the surviving entry %s", got, read[1].ID)
	}
}

// TestGroupCreatedAtZero: entries published before any consumer existed are delivered.
func TestGroupCreatedAtZero(t *testing.T) {
	e := newEnv(t)
	sent := e.publish(e.publisher(), []string{"early"}, 3)
	rec := newRecorder()
	e.start(e.consumerConfig("late-group", "c"), rec.handle)
	if got := rec.waitFor(t, len(sent), 5*time.Second); !slices.Equal(payloads(got), sent) {
		t.Errorf("new group handled %q, want the entries published before it existed %q", payloads(got), sent)
	}
}

func TestCollector(t *testing.T) { onRedisAndCluster(t, testCollector) }

func testCollector(t *testing.T, e *env) {
	e.publish(e.publisher(), []string{"a"}, 5)
	key := e.keys()[ShardFor("a", e.shards)]
	e.ghostRead("g", "ghost", 2)
	col, err := NewCollector(e.client, CollectorConfig{Prefix: e.prefix, Shards: e.shards}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += " " + l.GetName() + "=" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"agentmonitor_stream_length stream=" + key:                                            5,
		"agentmonitor_stream_length stream=" + e.keys()[(ShardFor("a", e.shards)+1)%e.shards]: 0,
		"agentmonitor_stream_length stream=" + DeadLetterKey(e.prefix):                        0,
		"agentmonitor_stream_group_pending group=g stream=" + key:                             2,
		"agentmonitor_stream_group_lag group=g stream=" + key:                                 3,
		"agentmonitor_stream_up":                                                              1,
	}
	for name, w := range want {
		if v, ok := got[name]; !ok || v != w {
			t.Errorf("scrape: %s = %v (present %v), want %v", name, v, ok, w)
		}
	}
}

// value reads the current value of a counter or gauge.
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
