package ingestredis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// agentsInShard returns n agent ids whose stream shard is shard.
// oneInFlight returns an Appender on a Redis key prefix of the test's own that lets one call per
// shard be in flight, so that the batches queued behind it (HoldShard) go as one group.
func oneInFlight(t *testing.T) (redis.UniversalClient, string, *ingestredis.Appender, *hotcache.Cache) {
	t.Helper()
	client, prefix := testenv.Redis(t)
	a, hot := newAppender(t, client, prefix, func(c *ingestredis.Config) { c.Group.InFlight = 1 })
	return client, prefix, a, hot
}

func agentsInShard(n, shard int) []string {
	var ids []string
	for i := 0; len(ids) < n; i++ {
		if id := fmt.Sprintf("agent-%04d", i); stream.ShardFor(id, shards) == shard {
			ids = append(ids, id)
		}
	}
	return ids
}

// seqBatch returns n points of agent stamped now (cpu, core=0..n-1) whose one field "seq" is
// seq, and their payload: each request of a test is told apart by its seq.
func seqBatch(agent string, seq, n int, now time.Time) ([]metric.Point, []byte) {
	pts := make([]metric.Point, n)
	for i := range pts {
		pts[i] = metric.Point{Measurement: "cpu", Tags: []metric.Tag{{Key: "core", Value: strconv.Itoa(i)}},
			Fields: []metric.Field{{Key: "seq", Value: metric.Value{Kind: metric.KindFloat, F: float64(seq)}}}, Time: now.UnixNano()}
	}
	return pts, metric.AppendLineProtocol(nil, pts, agent)
}

type outcome struct {
	res ingestredis.Result
	err error
}

// queue starts an Append of agent's batch seq (2 points) in a goroutine and waits until it is
// queued behind the slots HoldShard holds.
func queue(t *testing.T, ctx context.Context, a *ingestredis.Appender, queued func() int, agent string, seq int, now time.Time) <-chan outcome {
	t.Helper()
	want := queued() + 1
	ch := make(chan outcome, 1)
	pts, payload := seqBatch(agent, seq, 2, now)
	go func() {
		res, err := a.Append(ctx, agent, pts, payload, now)
		ch <- outcome{res, err}
	}()
	testenv.Eventually(t, 5*time.Second, func() string {
		if queued() < want {
			return fmt.Sprintf("batch %d of %s is not queued", seq, agent)
		}
		return ""
	})
	return ch
}

// entries returns the payload of every entry of the streams, by entryKey (entry ids are unique
// per stream only).
func entries(t testing.TB, client redis.UniversalClient, streams ...string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, s := range streams {
		msgs, err := client.XRange(context.Background(), s, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", s, err)
		}
		for _, m := range msgs {
			got[s+" "+m.ID] = m.Values["payload"].(string)
		}
	}
	return got
}

// entryKey is the key of agent's entry id in entries.
func entryKey(prefix, agent, id string) string {
	return stream.StreamKeys(prefix, shards)[stream.ShardFor(agent, shards)] + " " + id
}

// TestGroupConcurrent: 32 goroutines append 320 batches of 8 agents at once; every batch is
// allowed and stored once, as its own entry, and the hot cache holds every one of them, while
// the script calls are fewer than the batches (grouping happens).
func TestGroupConcurrent(t *testing.T) {
	t.Parallel()
	client := privateRedis(t)
	a, hot := newAppender(t, client, "p:", func(c *ingestredis.Config) {
		c.Rate, c.Burst = 1_000_000, 1_000_000
		c.Group.InFlight = 1
	})
	ctx := t.Context()
	var agents []string
	for s := range shards {
		agents = append(agents, agentsInShard(2, s)...)
	}
	const workers, perWorker = 32, 10
	type request struct {
		agent   string
		payload string
		outcome
	}
	reqs := make([]request, workers*perWorker)
	now := time.Now()
	evalsha0 := commandCalls(t, client, "evalsha")
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range perWorker {
				seq := w*perWorker + r
				agent := agents[seq%len(agents)]
				pts, payload := seqBatch(agent, seq, 2, now)
				res, err := a.Append(ctx, agent, pts, payload, now)
				reqs[seq] = request{agent, string(payload), outcome{res, err}}
			}
		})
	}
	wg.Wait()
	calls := commandCalls(t, client, "evalsha") - evalsha0
	t.Logf("%d batches in %d script calls", len(reqs), calls)
	if calls >= int64(len(reqs)) {
		t.Errorf("%d batches took %d script calls, want fewer (grouped)", len(reqs), calls)
	}

	stored := entries(t, client, stream.StreamKeys("p:", shards)...)
	if len(stored) != len(reqs) {
		t.Errorf("the streams hold %d entries, want %d", len(stored), len(reqs))
	}
	perAgent := map[string]int{}
	for seq, r := range reqs {
		if r.err != nil || !r.res.Allowed || r.res.CacheErr != nil {
			t.Fatalf("Append of batch %d = %+v, %v; want allowed", seq, r.res, r.err)
		}
		if got := stored[entryKey("p:", r.agent, r.res.ID)]; got != r.payload {
			t.Errorf("entry %s of batch %d holds %q, want %q", r.res.ID, seq, got, r.payload)
		}
		perAgent[r.agent]++
	}
	accepted, err := hotcache.Accepted(ctx, client, "p:", shards)
	if err != nil {
		t.Fatal(err)
	}
	for _, agent := range agents {
		if _, ok := accepted[agent]; !ok {
			t.Errorf("agent %s is not in the accepted record", agent)
		}
		if recent, err := hot.Recent(ctx, agent, "cpu.seq", now); err != nil || len(recent) != 2*perAgent[agent] {
			t.Errorf("Recent(%s) = %d samples, %v; want %d", agent, len(recent), err, 2*perAgent[agent])
		}
		if latest, err := hot.Latest(ctx, agent); err != nil || len(latest) != 2 {
			t.Errorf("Latest(%s) = %d values, %v; want 2", agent, len(latest), err)
		}
	}
}

// commandCalls returns the calls of one command in INFO commandstats.
func commandCalls(t testing.TB, client *redis.Client, command string) int64 {
	t.Helper()
	return commandStats(t, client)[command]
}

// TestGroupRefused: in one group, an agent over its rate is refused and writes nothing, while
// the batches before and after it, one of the same agent as another, are charged and stored as
// if each had its own call.
func TestGroupRefused(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	a, hot := newAppender(t, client, prefix, func(c *ingestredis.Config) {
		c.Rate, c.Burst, c.Period = 1, 10, time.Hour // one point an hour: nothing comes back during the test
		c.Group.InFlight = 1
	})
	ctx := t.Context()
	ids := agentsInShard(3, 1)
	x, y, z := ids[0], ids[1], ids[2]
	now := time.Now()
	pts, payload := seqBatch(y, 0, 10, now)
	if res, err := a.Append(ctx, y, pts, payload, now); err != nil || !res.Allowed {
		t.Fatalf("Append of %s's burst = %+v, %v", y, res, err)
	}
	rateY := client.Get(ctx, ingestredis.RateKey(prefix, shards, y)).Val()

	queued, release := ingestredis.HoldShard(a, x)
	x1 := queue(t, ctx, a, queued, x, 1, now)
	y2 := queue(t, ctx, a, queued, y, 2, now)
	z3 := queue(t, ctx, a, queued, z, 3, now)
	x4 := queue(t, ctx, a, queued, x, 4, now)
	release()

	for _, c := range []struct {
		name string
		ch   <-chan outcome
	}{{"x1", x1}, {"z3", z3}, {"x4", x4}} {
		if o := <-c.ch; o.err != nil || !o.res.Allowed || o.res.CacheErr != nil || o.res.ID == "" {
			t.Errorf("Append %s = %+v, %v; want allowed", c.name, o.res, o.err)
		}
	}
	// y holds tat = now+10h; 2 more points need now+12h-10h.
	if o := <-y2; o.err != nil || o.res.Allowed || o.res.RetryAfter < 119*time.Minute || o.res.RetryAfter > 121*time.Minute {
		t.Errorf("Append y2 over the burst = %+v, %v; want refused, retry after 2h", o.res, o.err)
	}
	if got := client.Get(ctx, ingestredis.RateKey(prefix, shards, y)).Val(); got != rateY {
		t.Errorf("the refused batch changed the rate state of %s: %s, was %s", y, got, rateY)
	}
	if n := client.XLen(ctx, hot.Keys(y)[1]).Val(); n != 1 {
		t.Errorf("the recent entries of %s are %d, want the first batch's only", y, n)
	}
	if n := client.XLen(ctx, stream.StreamKeys(prefix, shards)[1]).Val(); n != 4 {
		t.Errorf("the stream holds %d entries, want 4", n)
	}
	// x was charged 4 of its 10: 6 more points pass, the 7th does not.
	pts, payload = seqBatch(x, 5, 6, now)
	if res, err := a.Append(ctx, x, pts, payload, now); err != nil || !res.Allowed {
		t.Errorf("Append of x's last 6 points = %+v, %v; want allowed", res, err)
	}
	pts, payload = seqBatch(x, 6, 1, now)
	if res, err := a.Append(ctx, x, pts, payload, now); err != nil || res.Allowed {
		t.Errorf("Append of x's 11th point = %+v, %v; want refused", res, err)
	}
}

// TestGroupErrorsPerBatch: in one group, a batch whose rate state Redis refuses to read fails
// alone and writes nothing, and a failed cache write is reported only for its batch.
func TestGroupErrorsPerBatch(t *testing.T) {
	t.Parallel()
	client, prefix, a, hot := oneInFlight(t)
	ctx := t.Context()
	ids := agentsInShard(3, 2)
	x, y, z := ids[0], ids[1], ids[2]
	if err := client.HSet(ctx, ingestredis.RateKey(prefix, shards, y), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, hot.Keys(z)[0], "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	queued, release := ingestredis.HoldShard(a, x)
	x1 := queue(t, ctx, a, queued, x, 1, now)
	y2 := queue(t, ctx, a, queued, y, 2, now)
	z3 := queue(t, ctx, a, queued, z, 3, now)
	x4 := queue(t, ctx, a, queued, x, 4, now)
	release()

	for name, ch := range map[string]<-chan outcome{"x1": x1, "x4": x4} {
		if o := <-ch; o.err != nil || !o.res.Allowed || o.res.CacheErr != nil {
			t.Errorf("Append %s = %+v, %v; want allowed", name, o.res, o.err)
		}
	}
	if o := <-y2; o.err == nil || !strings.Contains(o.err.Error(), "WRONGTYPE") || o.res.Allowed {
		t.Errorf("Append y2 with a hash for rate state = %+v, %v; want a WRONGTYPE error", o.res, o.err)
	}
	if o := <-z3; o.err != nil || !o.res.Allowed || o.res.CacheErr == nil || !strings.Contains(o.res.CacheErr.Error(), "WRONGTYPE") {
		t.Errorf("Append z3 with a string for points = %+v, %v; want allowed with a WRONGTYPE cache error", o.res, o.err)
	}
	if n := client.XLen(ctx, stream.StreamKeys(prefix, shards)[2]).Val(); n != 3 {
		t.Errorf("the stream holds %d entries, want 3 (x1, z3, x4)", n)
	}
	if n := client.Exists(ctx, hot.Keys(y)[0], hot.Keys(y)[1]).Val(); n != 0 {
		t.Errorf("the failed batch of %s wrote %d hot keys, want none", y, n)
	}
}

// TestXaddFailure: a shard whose stream key is no stream fails every batch sent to it, each with
// Redis's WRONGTYPE (a redis.Error) and having written nothing, grouped or not, while the other
// shards' batches, appended at the same time, are stored.
func TestXaddFailure(t *testing.T) {
	t.Parallel()
	client, prefix, a, hot := oneInFlight(t)
	ctx := t.Context()
	broken := stream.StreamKeys(prefix, shards)[3]
	if err := client.Set(ctx, broken, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	bad := agentsInShard(2, 3)
	good := append(agentsInShard(2, 0), agentsInShard(2, 1)...)
	now := time.Now()

	// A group of two batches of the broken shard.
	queued, release := ingestredis.HoldShard(a, bad[0])
	b1 := queue(t, ctx, a, queued, bad[0], 1, now)
	b2 := queue(t, ctx, a, queued, bad[1], 2, now)
	release()
	for _, ch := range []<-chan outcome{b1, b2} {
		if o := <-ch; o.err == nil || !redis.HasErrorPrefix(o.err, "WRONGTYPE") || o.res.Allowed {
			t.Errorf("Append to a string stream key = %+v, %v; want a WRONGTYPE redis.Error", o.res, o.err)
		}
	}

	// All shards at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]string{}
	for w := range 16 {
		wg.Go(func() {
			for r := range 5 {
				seq := 100 + w*5 + r
				agent := good[seq%len(good)]
				if w%4 == 0 {
					agent = bad[seq%len(bad)]
				}
				pts, payload := seqBatch(agent, seq, 2, now)
				res, err := a.Append(ctx, agent, pts, payload, now)
				isBad := stream.ShardFor(agent, shards) == 3
				switch {
				case isBad && (err == nil || !redis.HasErrorPrefix(err, "WRONGTYPE")):
					t.Errorf("Append %d to the broken shard = %+v, %v; want WRONGTYPE", seq, res, err)
				case !isBad && (err != nil || !res.Allowed):
					t.Errorf("Append %d = %+v, %v; want allowed", seq, res, err)
				case !isBad:
					mu.Lock()
					want[entryKey(prefix, agent, res.ID)] = string(payload)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	got := entries(t, client, stream.StreamKeys(prefix, shards)[:3]...)
	if len(got) != len(want) {
		t.Errorf("the streams hold %d entries, want %d", len(got), len(want))
	}
	for id, p := range want {
		if got[id] != p {
			t.Errorf("entry %s holds %q, want %q", id, got[id], p)
		}
	}
	for _, agent := range bad {
		keys := hot.Keys(agent)
		if n := client.Exists(ctx, ingestredis.RateKey(prefix, shards, agent), keys[0], keys[1]).Val(); n != 0 {
			t.Errorf("failed batches of %s wrote %d of its keys, want none", agent, n)
		}
	}
}

// TestGroupRateExact: N batches of one agent at once, with a burst of B, are allowed exactly B
// times, one call per batch or grouped.
func TestGroupRateExact(t *testing.T) {
	t.Parallel()
	for _, group := range []int{1, 64} {
		t.Run(fmt.Sprintf("group=%d", group), func(t *testing.T) {
			t.Parallel()
			client, prefix := testenv.Redis(t)
			const n, burst = 40, 7
			a, _ := newAppender(t, client, prefix, func(c *ingestredis.Config) {
				c.Rate, c.Burst, c.Period = 1, burst, time.Hour
				c.Group.MaxGroup = group
			})
			ctx := t.Context()
			now := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			allowed := 0
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					pts, payload := seqBatch(agentID, i, 1, now)
					<-start
					res, err := a.Append(ctx, agentID, pts, payload, now)
					if err != nil {
						t.Errorf("Append %d: %v", i, err)
					}
					if res.Allowed {
						mu.Lock()
						allowed++
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if allowed != burst {
				t.Errorf("%d batches of 1 point at once with a burst of %d: %d allowed, want %d", n, burst, allowed, burst)
			}
			if got := client.XLen(ctx, streamKey(prefix)).Val(); got != burst {
				t.Errorf("the stream holds %d entries, want %d", got, burst)
			}
		})
	}
}

// TestGroupContextDone: a queued batch whose context ends returns its error and is left out of
// the group, which stores the others.
func TestGroupContextDone(t *testing.T) {
	t.Parallel()
	client, prefix, a, hot := oneInFlight(t)
	ctx := t.Context()
	ids := agentsInShard(2, 0)
	x, y := ids[0], ids[1]
	now := time.Now()
	queued, release := ingestredis.HoldShard(a, x)
	x1 := queue(t, ctx, a, queued, x, 1, now)
	yctx, cancel := context.WithCancel(ctx)
	y2 := queue(t, yctx, a, queued, y, 2, now)
	x3 := queue(t, ctx, a, queued, x, 3, now)
	cancel()
	if o := <-y2; !errors.Is(o.err, context.Canceled) || o.res.Allowed {
		t.Errorf("Append with its context canceled while queued = %+v, %v; want context.Canceled", o.res, o.err)
	}
	if n := queued(); n != 2 {
		t.Errorf("%d batches queued after the cancel, want 2", n)
	}
	release()
	for _, ch := range []<-chan outcome{x1, x3} {
		if o := <-ch; o.err != nil || !o.res.Allowed {
			t.Errorf("Append = %+v, %v; want allowed", o.res, o.err)
		}
	}
	if n := client.XLen(ctx, stream.StreamKeys(prefix, shards)[0]).Val(); n != 2 {
		t.Errorf("the stream holds %d entries, want 2", n)
	}
	if n := client.Exists(ctx, ingestredis.RateKey(prefix, shards, y), hot.Keys(y)[0]).Val(); n != 0 {
		t.Errorf("the canceled batch wrote %d keys, want none", n)
	}
}

// TestGroupWait: one WAIT follows a group's call and answers for each of its batches: an
// allowed one short of replicas gets a *ReplicaError, a refused one its refusal. A Redis that
// forgot the script gets it again for a group as for one batch.
func TestGroupWait(t *testing.T) {
	t.Parallel()
	client := privateRedis(t) // no replicas
	a, _ := newAppender(t, client, "p:", func(c *ingestredis.Config) {
		c.Rate, c.Burst, c.Period = 1, 10, time.Hour
		c.Wait = ingestredis.WaitConfig{Replicas: 1, Timeout: 10 * time.Millisecond}
		c.Group.InFlight = 1
	})
	ctx := t.Context()
	ids := agentsInShard(2, 0)
	x, y := ids[0], ids[1]
	now := time.Now()
	pts, payload := seqBatch(y, 0, 10, now)
	var re *ingestredis.ReplicaError
	if _, err := a.Append(ctx, y, pts, payload, now); !errors.As(err, &re) {
		t.Fatalf("Append of %s's burst = %v, want a ReplicaError", y, err)
	}
	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waits, evals := commandCalls(t, client, "wait"), commandCalls(t, client, "eval")

	queued, release := ingestredis.HoldShard(a, x)
	x1 := queue(t, ctx, a, queued, x, 1, now)
	y2 := queue(t, ctx, a, queued, y, 2, now)
	x3 := queue(t, ctx, a, queued, x, 3, now)
	release()
	for _, ch := range []<-chan outcome{x1, x3} {
		if o := <-ch; !errors.As(o.err, &re) || re.Want != 1 || re.Got != 0 {
			t.Errorf("Append without replicas = %+v, %v; want a ReplicaError of 0 of 1", o.res, o.err)
		}
	}
	if o := <-y2; o.err != nil || o.res.Allowed {
		t.Errorf("Append over the burst = %+v, %v; want refused", o.res, o.err)
	}
	if n := commandCalls(t, client, "wait") - waits; n != 2 { // NOSCRIPT, then EVAL
		t.Errorf("%d WAITs for one group, want 2 (after the EVALSHA Redis refused, and after the EVAL)", n)
	}
	if n := commandCalls(t, client, "eval") - evals; n != 1 {
		t.Errorf("%d EVALs for one group after SCRIPT FLUSH, want 1", n)
	}
	if n := client.XLen(ctx, stream.StreamKeys("p:", shards)[0]).Val(); n != 3 {
		t.Errorf("the stream holds %d entries, want 3", n)
	}
}

// TestClusterGroup: groups on Redis Cluster, with WAIT on the shard master's connection (one
// replica per master confirms), then many batches at once without WAIT.
func TestClusterGroup(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisCluster(t)
	ctx := t.Context()
	a, hot := newAppender(t, client, prefix, func(c *ingestredis.Config) {
		c.Wait = ingestredis.WaitConfig{Replicas: 1, Timeout: 500 * time.Millisecond}
		c.Group.InFlight = 1
	})
	ids := agentsInShard(2, 1)
	now := time.Now()
	queued, release := ingestredis.HoldShard(a, ids[0])
	var chs []<-chan outcome
	for i := range 4 {
		chs = append(chs, queue(t, ctx, a, queued, ids[i%2], i, now))
	}
	release()
	for i, ch := range chs {
		if o := <-ch; o.err != nil || !o.res.Allowed || o.res.CacheErr != nil {
			t.Errorf("Append %d with WAIT 1 = %+v, %v; want allowed", i, o.res, o.err)
		}
	}

	a, _ = newAppender(t, client, prefix, nil)
	var agents []string
	for s := range shards {
		agents = append(agents, agentsInShard(2, s)...)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for r := range 5 {
				seq := 100 + w*5 + r
				agent := agents[seq%len(agents)]
				pts, payload := seqBatch(agent, seq, 2, now)
				if res, err := a.Append(ctx, agent, pts, payload, now); err != nil || !res.Allowed || res.CacheErr != nil {
					t.Errorf("Append %d = %+v, %v; want allowed", seq, res, err)
				}
			}
		})
	}
	wg.Wait()
	var total int64
	for _, s := range stream.StreamKeys(prefix, shards) {
		total += client.XLen(ctx, s).Val()
	}
	if total != 4+80 {
		t.Errorf("the streams hold %d entries, want %d", total, 4+80)
	}
	if latest, err := hot.Latest(ctx, ids[0]); err != nil || len(latest) != 2 {
		t.Errorf("Latest = %d values, %v; want 2", len(latest), err)
	}
}

func TestGroupConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg  ingestredis.GroupConfig
		want string
	}{
		{ingestredis.GroupConfig{}, ""},
		{ingestredis.GroupConfig{MaxGroup: 1, InFlight: 1}, ""},
		{ingestredis.GroupConfig{MaxGroup: 1024, InFlight: 64}, ""},
		{ingestredis.GroupConfig{MaxGroup: -1}, "REDIS_INGEST_MAX_GROUP=-1"},
		{ingestredis.GroupConfig{MaxGroup: 1025}, "REDIS_INGEST_MAX_GROUP=1025"},
		{ingestredis.GroupConfig{InFlight: 65}, "REDIS_INGEST_IN_FLIGHT=65"},
	} {
		err := tt.cfg.Validate()
		if got := fmt.Sprint(err); tt.want == "" && err != nil || tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("%+v.Validate() = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
