package ingestredis_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

const (
	agentID = "3f0c1f9e-8a51-4c1b-9d4e-6a2f1b0c7d11"
	shards  = 4
)

var hotCfg = hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 2000, MaxSamples: 10000}

func newAppender(t testing.TB, client redis.UniversalClient, prefix string, mutate func(*ingestredis.Config)) (*ingestredis.Appender, *hotcache.Cache) {
	t.Helper()
	hot, err := hotcache.New(client, prefix, shards, hotCfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ingestredis.Config{Prefix: prefix, Shards: shards, Rate: 1000, Burst: 5000, Period: time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := ingestredis.New(client, hot, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, hot
}

// batch returns n points of fields values each, stamped now, and their canonical payload. The
// points spread over 8 series per field.
func batch(n, fields int, now time.Time) ([]metric.Point, []byte) {
	pts := make([]metric.Point, n)
	for i := range pts {
		fs := make([]metric.Field, fields)
		for j := range fs {
			fs[j] = metric.Field{Key: fmt.Sprintf("f%d", j), Value: metric.Value{Kind: metric.KindFloat, F: float64(i*fields + j)}}
		}
		pts[i] = metric.Point{Measurement: "cpu", Tags: []metric.Tag{{Key: "core", Value: strconv.Itoa(i % 8)}}, Fields: fs, Time: now.UnixNano()}
	}
	return pts, metric.AppendLineProtocol(nil, pts, agentID)
}

func streamKey(prefix string) string {
	return stream.StreamKeys(prefix, shards)[stream.ShardFor(agentID, shards)]
}

// TestWireFormat proves the entry is what watermill-redisstream's Publisher writes: Watermill's
// unmarshaller and the stream.Consumer decode it, with the metadata the gateway always sent.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	a, hot := newAppender(t, client, prefix, nil)
	ctx := t.Context()
	now := time.Now()
	pts, payload := batch(3, 2, now)
	res, err := a.Append(ctx, agentID, pts, payload, now)
	if err != nil || !res.Allowed || res.CacheErr != nil {
		t.Fatalf("Append = %+v, %v; want allowed without cache errors", res, err)
	}
	want := message.Metadata{stream.MetaAgent: agentID, stream.MetaPoints: "3", stream.MetaReceivedAt: strconv.FormatInt(now.UnixNano(), 10)}

	msgs, err := client.XRange(ctx, streamKey(prefix), "-", "+").Result()
	if err != nil || len(msgs) != 1 || msgs[0].ID != res.ID {
		t.Fatalf("XRANGE = %v, %v; want the one entry %s", msgs, err, res.ID)
	}
	if got := slicesSorted(maps.Keys(msgs[0].Values)); got != "_watermill_message_uuid metadata payload" {
		t.Errorf("entry fields = %s, want Watermill's three", got)
	}
	msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(msgs[0].Values)
	if err != nil {
		t.Fatalf("Watermill cannot decode the entry: %v", err)
	}
	if string(msg.Payload) != string(payload) || !maps.Equal(msg.Metadata, want) || len(msg.UUID) != 36 {
		t.Errorf("decoded = uuid %q payload %q metadata %v; want payload %q metadata %v", msg.UUID, msg.Payload, msg.Metadata, payload, want)
	}
	// The metadata bytes are the ones Watermill's marshaller writes for a one-key map (larger maps
	// differ only in Go's map order).
	one, err := msgpack.Marshal(message.Metadata{stream.MetaAgent: agentID})
	if err != nil {
		t.Fatal(err)
	}
	if md := msgs[0].Values["metadata"].(string); !strings.HasPrefix(md, "\x83"+string(one[1:])) {
		t.Errorf("metadata = %q, want a fixmap of 3 starting with %q", md, one[1:])
	}

	// The batch consumer hands it over decoded too.
	var mu sync.Mutex
	var got []*stream.Message
	cctx, cancel := context.WithCancel(ctx)
	c, err := stream.NewConsumer(client, stream.ConsumerConfig{Prefix: prefix, Shards: shards, Group: "test", Consumer: "c1",
		Block: 50 * time.Millisecond, MaxWait: time.Millisecond}, func(_ context.Context, batch []*stream.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, batch...)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	testenv.Eventually(t, 5*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return "the consumer has not handed the entry over"
		}
		return ""
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("consumer Run: %v", err)
	}
	if m := got[0]; m.ID != res.ID || string(m.Msg.Payload) != string(payload) || !maps.Equal(m.Msg.Metadata, want) {
		t.Errorf("consumed %s payload %q metadata %v; want %s with the batch", m.ID, m.Msg.Payload, m.Msg.Metadata, res.ID)
	}

	// And the hot cache holds the batch.
	latest, err := hot.Latest(ctx, agentID)
	if err != nil || len(latest) != 6 {
		t.Errorf("Latest = %d values, %v; want 6", len(latest), err)
	}
	recent, err := hot.Recent(ctx, agentID, "cpu.f1", now)
	if err != nil || len(recent) != 3 {
		t.Errorf("Recent(cpu.f1) = %s, %v; want 3 samples", recent, err)
	}
}

func slicesSorted(seq func(func(string) bool)) string {
	var ks []string
	for k := range seq {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return strings.Join(ks, " ")
}

// TestRateLimit: over the burst the script refuses with a retry time and writes nothing at all.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	a, _ := newAppender(t, client, prefix, func(c *ingestredis.Config) { c.Rate, c.Burst = 1, 10 })
	ctx := t.Context()
	now := time.Now()
	pts, payload := batch(6, 1, now)
	if res, err := a.Append(ctx, agentID, pts, payload, now); err != nil || !res.Allowed {
		t.Fatalf("first 6 points = %+v, %v; want allowed", res, err)
	}
	before := keysUnder(t, client, prefix)
	res, err := a.Append(ctx, agentID, pts, payload, now)
	if err != nil || res.Allowed || res.RetryAfter < time.Second || res.RetryAfter > 3*time.Second {
		t.Fatalf("next 6 points within a burst of 10 = %+v, %v; want refused, retry after 1-3 s", res, err)
	}
	if n, _ := client.XLen(ctx, streamKey(prefix)).Result(); n != 1 {
		t.Errorf("stream holds %d entries, want only the first batch", n)
	}
	if after := keysUnder(t, client, prefix); after != before {
		t.Errorf("a refused batch changed the keys:\n%s\nwant\n%s", after, before)
	}
	ttl, err := client.TTL(ctx, ingestredis.RateKey(prefix, shards, agentID)).Result()
	if err != nil || ttl <= 0 {
		t.Errorf("rate state TTL = %v, %v; want a positive TTL", ttl, err)
	}
}

// keysUnder dumps every key under prefix with its type and length, to compare states.
func keysUnder(t testing.TB, client *redis.Client, prefix string) string {
	t.Helper()
	ctx := context.Background()
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys) // KEYS answers in no particular order
	var sb strings.Builder
	for _, k := range keys {
		typ := client.Type(ctx, k).Val()
		var n int64
		switch typ {
		case "stream":
			n = client.XLen(ctx, k).Val()
		case "hash":
			n = client.HLen(ctx, k).Val()
		case "string":
			n = int64(len(client.Get(ctx, k).Val()))
		}
		fmt.Fprintf(&sb, "%s %s %d %s\n", k, typ, n, client.Get(ctx, k).Val())
	}
	return sb.String()
}

// TestCacheErrorKeepsBatch: a hot-cache write that fails is reported, the batch is stored.
func TestCacheErrorKeepsBatch(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	a, hot := newAppender(t, client, prefix, nil)
	ctx := t.Context()
	// The latest key holds a string: HSET on it fails with WRONGTYPE.
	if err := client.Set(ctx, hot.Keys(agentID)[0], "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	pts, payload := batch(2, 2, now)
	res, err := a.Append(ctx, agentID, pts, payload, now)
	if err != nil || !res.Allowed || res.CacheErr == nil || !strings.Contains(res.CacheErr.Error(), "WRONGTYPE") {
		t.Fatalf("Append = %+v, %v; want allowed with a WRONGTYPE cache error", res, err)
	}
	if n, _ := client.XLen(ctx, streamKey(prefix)).Result(); n != 1 {
		t.Errorf("stream holds %d entries, want the batch", n)
	}
	if recent, err := hot.Recent(ctx, agentID, "cpu.f0", now); err != nil || len(recent) != 2 {
		t.Errorf("Recent = %s, %v; want the other cache writes done", recent, err)
	}
}

// TestNoScript: a Redis that forgot the script (SCRIPT FLUSH, a restart) gets it again.
func TestNoScript(t *testing.T) {
	t.Parallel()
	client := privateRedis(t)
	for _, wait := range []int{0, 1} {
		a, _ := newAppender(t, client, "p:", func(c *ingestredis.Config) {
			c.Wait = ingestredis.WaitConfig{Replicas: wait, Timeout: 10 * time.Millisecond}
		})
		if err := client.ScriptFlush(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		pts, payload := batch(1, 1, now)
		_, err := a.Append(t.Context(), agentID, pts, payload, now)
		var re *ingestredis.ReplicaError
		if wait == 0 && err != nil || wait == 1 && (!errors.As(err, &re) || re.Got != 0 || re.Want != 1) {
			t.Errorf("Append after SCRIPT FLUSH (wait %d) = %v", wait, err)
		}
	}
	if n := client.XLen(t.Context(), streamKey("p:")).Val(); n != 2 {
		t.Errorf("stream holds %d entries, want 2", n)
	}
}

// privateRedis starts a redis-server of the test's own (its command counters are the test's).
func privateRedis(t testing.TB) *redis.Client {
	t.Helper()
	r, err := stack.StartRedis(t.TempDir())
	if err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() {
		client.Close()
		if err := r.Stop(); err != nil {
			t.Errorf("stopping redis-server: %v", err)
		}
	})
	return client
}

// TestCommandsPerBatchConstant counts the commands Redis runs per accepted batch (INFO
// commandstats on a private server): a 1000-point batch of 30 fields costs what a 1-point batch
// of one field costs, 8 (the README's count), and so does the first batch of a refresh period
// of the hot cache's TTLs, which adds 5. Batches appended at once and grouped cost 6 each and 2
// per script call.
func TestCommandsPerBatchConstant(t *testing.T) {
	t.Parallel()
	client := privateRedis(t)
	a, _ := newAppender(t, client, "p:", func(c *ingestredis.Config) { c.Rate, c.Burst = 1_000_000, 1_000_000 })
	ctx := t.Context()
	period := time.Duration(hotCfg.TTLSeconds) * time.Second / 10
	// count returns the commands of each of 3 batches of n points of fields values, after a
	// warm-up batch, each step after the one before. Each count starts an hour after the last
	// (every batch is stamped with its own time), so that no period is seen twice.
	start := time.Now()
	count := func(n, fields int, step time.Duration) int64 {
		t.Helper()
		start = start.Add(time.Hour)
		at := start
		appendAt := func() {
			pts, payload := batch(n, fields, at)
			if res, err := a.Append(ctx, agentID, pts, payload, at); err != nil || !res.Allowed || res.CacheErr != nil {
				t.Fatalf("Append = %+v, %v", res, err)
			}
		}
		appendAt()
		before := commands(t, client)
		for range 3 {
			at = at.Add(step)
			appendAt()
		}
		return (commands(t, client) - before - 1) / 3 // the INFO of the second reading counts too
	}
	small, large := count(1, 1, 0), count(1000, 30, 0)
	smallNew, largeNew := count(1, 1, period), count(1000, 30, period)
	t.Logf("Redis commands per accepted batch: %d (1 value), %d (30000 values); first of a refresh period: %d, %d",
		small, large, smallNew, largeNew)
	if small != large || small != 8 {
		t.Errorf("commands per batch: %d for 1 value, %d for 30000 values; want 8 for both", small, large)
	}
	if smallNew != largeNew || smallNew != small+5 {
		t.Errorf("commands per first batch of a refresh period: %d for 1 value, %d for 30000 values; want %d for both", smallNew, largeNew, small+5)
	}

	// Grouped: batches appended at once share script calls. A call costs its EVALSHA and one
	// TIME, each batch of it the other 6 of the 8.
	var agents []string
	for s := range shards {
		agents = append(agents, agentsInShard(2, s)...)
	}
	start = start.Add(time.Hour)
	for i, agent := range agents { // in the refresh period of the grouped batches
		pts, payload := seqBatch(agent, i, 1, start)
		if res, err := a.Append(ctx, agent, pts, payload, start); err != nil || !res.Allowed {
			t.Fatalf("Append = %+v, %v", res, err)
		}
	}
	const workers, perWorker = 32, 8
	before := commandStats(t, client)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range perWorker {
				agent := agents[(w+r)%len(agents)]
				pts, payload := seqBatch(agent, w*perWorker+r, 1, start)
				if res, err := a.Append(ctx, agent, pts, payload, start); err != nil || !res.Allowed || res.CacheErr != nil {
					t.Errorf("Append = %+v, %v", res, err)
				}
			}
		})
	}
	wg.Wait()
	after := commandStats(t, client)
	var total int64
	for cmd, n := range after {
		if cmd != "hello" && cmd != "info" { // new connections of the pool say HELLO
			total += n - before[cmd]
		}
	}
	calls := after["evalsha"] - before["evalsha"]
	n := int64(workers * perWorker)
	t.Logf("grouped: %d batches in %d script calls, %d commands: %.2f per batch", n, calls, total, float64(total)/float64(n))
	if calls >= n || total != 2*calls+6*n {
		t.Errorf("%d batches at once: %d script calls, %d commands; want fewer calls than batches and 2 per call + 6 per batch (%d)",
			n, calls, total, 2*calls+6*n)
	}
}

// commands returns the total of INFO commandstats' calls.
func commands(t testing.TB, client *redis.Client) int64 {
	t.Helper()
	var total int64
	for _, n := range commandStats(t, client) {
		total += n
	}
	return total
}

// commandStats returns the calls of each command in INFO commandstats ("evalsha": n).
func commandStats(t testing.TB, client *redis.Client) map[string]int64 {
	t.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		cmd, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		calls[cmd] = n
	}
	return calls
}

// TestCluster appends on the shared Redis Cluster (every key of the script in the shard's slot),
// with WAIT on the same connection: one replica confirms, two cannot (one replica per master).
func TestCluster(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisCluster(t)
	ctx := t.Context()
	for _, tt := range []struct {
		wait    int
		wantErr bool
	}{{0, false}, {1, false}, {2, true}} {
		a, hot := newAppender(t, client, prefix, func(c *ingestredis.Config) {
			c.Wait = ingestredis.WaitConfig{Replicas: tt.wait, Timeout: 200 * time.Millisecond}
		})
		now := time.Now()
		pts, payload := batch(2, 3, now)
		res, err := a.Append(ctx, agentID, pts, payload, now)
		var re *ingestredis.ReplicaError
		switch {
		case tt.wantErr && (!errors.As(err, &re) || re.Want != 2 || re.Got != 1):
			t.Errorf("WAIT %d: Append = %+v, %v; want a ReplicaError with 1 of 2", tt.wait, res, err)
		case !tt.wantErr && (err != nil || !res.Allowed || res.CacheErr != nil):
			t.Errorf("WAIT %d: Append = %+v, %v; want allowed", tt.wait, res, err)
		}
		if latest, err := hot.Latest(ctx, agentID); err != nil || len(latest) != 6 {
			t.Errorf("WAIT %d: Latest = %d values, %v; want 6", tt.wait, len(latest), err)
		}
	}
	if n := client.XLen(ctx, streamKey(prefix)).Val(); n != 3 {
		t.Errorf("stream holds %d entries, want 3 (the short-of-replicas one is stored on the master)", n)
	}
}
