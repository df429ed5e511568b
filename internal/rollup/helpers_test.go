package rollup_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/influxwriter"
	"github.com/agentmonitor/agentmonitor/internal/rollup"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunInflux(m)) }

const shards = 2

func logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is one test's pipeline: its own Redis prefix and InfluxDB database, a publisher standing in
// for the gateway, and the points published so far (the model the rollups are checked against).
type env struct {
	t      *testing.T
	rdb    *redis.Client
	prefix string
	client *influx.Client
	store  *rollup.Store
	pub    *stream.Publisher
	log    *slog.Logger

	mu     sync.Mutex
	points []point
}

// point is one raw point of the model: numeric fields only (others are not rolled up).
type point struct {
	m      string
	tags   map[string]string // agent included
	fields map[string]float64
	lp     string // the canonical line-protocol line
	time   time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	ie := testenv.Influx(t)
	client, err := influx.New(influx.Config{URL: ie.URL, Bucket: ie.Database, RetentionDays: 30, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("influx.New: %v", err)
	}
	t.Cleanup(client.Close)
	ctx := context.Background()
	if err := client.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := client.ProvisionTiers(ctx, influx.TierConfig{Retention1m: 90, Retention5m: 180, Retention1h: 730, Retention1d: 1825}); err != nil {
		t.Fatalf("ProvisionTiers: %v", err)
	}
	pub, err := stream.NewPublisher(rdb, stream.PublisherConfig{Prefix: prefix, Shards: shards}, nil)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	return &env{t: t, rdb: rdb, prefix: prefix, client: client, store: rollup.NewStore(rdb, prefix), pub: pub, log: logger(t)}
}

func (e *env) consumerConfig(group string) stream.ConsumerConfig {
	return stream.ConsumerConfig{
		Prefix: e.prefix, Shards: shards, Group: group, Consumer: group + "-1",
		BatchSize: 200, MaxWait: 20 * time.Millisecond, Block: 50 * time.Millisecond,
		ClaimMinIdle: time.Second, ClaimInterval: 500 * time.Millisecond, MaxDeliveries: 100,
		RetryMin: 20 * time.Millisecond, RetryMax: 300 * time.Millisecond, DrainTimeout: 2 * time.Second,
	}
}

// startConsumers runs the influx-writer (raw points into InfluxDB) and the rollup marker (dirty
// windows, only after the writer acked) until the test ends.
func (e *env) startConsumers(grace time.Duration) {
	e.t.Helper()
	writer := influxwriter.NewSink(e.client, e.log, nil)
	marker := rollup.NewMarker(e.store, influxwriter.Group, grace, nil)
	for _, c := range []struct {
		group string
		h     stream.Handler
	}{{influxwriter.Group, writer.Handle}, {rollup.Group, marker.Handle}} {
		cons, err := stream.NewConsumer(e.rdb, e.consumerConfig(c.group), c.h, e.log)
		if err != nil {
			e.t.Fatalf("NewConsumer(%s): %v", c.group, err)
		}
		e.run(cons.Run)
	}
}

// run runs fn until the test ends.
func (e *env) run(fn func(ctx context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			e.t.Errorf("background run: %v", err)
		}
	}()
	e.t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func rollerConfig() rollup.RollerConfig {
	return rollup.RollerConfig{Grace: 10 * time.Millisecond, Interval: 20 * time.Millisecond, Lease: 10 * time.Second,
		Concurrency: 4, RetryDelay: 100 * time.Millisecond}
}

// publish sends points through the stream, one entry per agent, and adds them to the model.
func (e *env) publish(points []point) {
	e.t.Helper()
	byAgent := map[string][]string{}
	for _, p := range points {
		byAgent[p.tags["agent"]] = append(byAgent[p.tags["agent"]], p.lp)
	}
	for agent, lines := range byAgent {
		for i := 0; i < len(lines); i += 300 {
			payload := strings.Join(lines[i:min(i+300, len(lines))], "\n") + "\n"
			if err := e.pub.Publish(context.Background(), agent, []byte(payload), nil); err != nil {
				e.t.Fatalf("Publish: %v", err)
			}
		}
	}
	e.mu.Lock()
	e.points = append(e.points, points...)
	e.mu.Unlock()
}

// waitStreams waits until both groups have acked every entry of every stream.
func (e *env) waitStreams() {
	e.t.Helper()
	waitFor(e.t, 60*time.Second, "groups drained", func() bool {
		for _, k := range stream.StreamKeys(e.prefix, shards) {
			groups, err := e.rdb.XInfoGroups(context.Background(), k).Result()
			if err != nil {
				return false
			}
			n := 0
			for _, g := range groups {
				if g.Name == influxwriter.Group || g.Name == rollup.Group {
					if g.Lag != 0 || g.Pending != 0 {
						return false
					}
					n++
				}
			}
			if n != 2 {
				return false
			}
		}
		return true
	})
}

// waitRollups waits until every stream entry is marked and no window is dirty or in flight.
func (e *env) waitRollups() {
	e.t.Helper()
	e.waitStreams()
	waitFor(e.t, 120*time.Second, "rollup windows done", func() bool {
		states, err := e.store.State(context.Background(), time.Now())
		if err != nil {
			return false
		}
		for _, s := range states {
			if s.Dirty != 0 || s.Inflight != 0 {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gen builds points: for each agent, cpu (two cores, fields usage float and idle int; agent 1
// also tags dc) and mem (used int, ratio float, a string field) every ~37 s in [from, to).
func gen(rng *rand.Rand, agents []string, from, to time.Time) []point {
	var out []point
	for ai, agent := range agents {
		for ts := from.Add(time.Duration(rng.IntN(30)) * time.Second); ts.Before(to); ts = ts.Add(time.Duration(30+rng.IntN(15))*time.Second + time.Duration(rng.IntN(1000))*time.Millisecond) {
			for core := range 2 {
				tags := map[string]string{"agent": agent, "core": fmt.Sprint(core)}
				if ai == 1 {
					tags["dc"] = "eu"
				}
				usage := math.Round(rng.Float64()*10000) / 100
				idle := int64(rng.IntN(1000))
				out = append(out, mkPoint("cpu", tags, ts, map[string]float64{"usage": usage, "idle": float64(idle)},
					fmt.Sprintf("idle=%di,usage=%v", idle, usage)))
			}
			used := int64(rng.IntN(1 << 30))
			ratio := rng.Float64()
			out = append(out, mkPoint("mem", map[string]string{"agent": agent}, ts, map[string]float64{"used": float64(used), "ratio": ratio},
				fmt.Sprintf(`ratio=%v,state="ok",used=%di`, ratio, used)))
		}
	}
	return out
}

// mkPoint builds a point and its canonical line (tags sorted; fields as given).
func mkPoint(m string, tags map[string]string, ts time.Time, fields map[string]float64, lpFields string) point {
	keys := slices.Sorted(maps.Keys(tags))
	var b strings.Builder
	b.WriteString(m)
	for _, k := range keys {
		fmt.Fprintf(&b, ",%s=%s", k, tags[k])
	}
	fmt.Fprintf(&b, " %s %d", lpFields, ts.UnixNano())
	return point{m: m, tags: tags, fields: fields, lp: b.String(), time: ts}
}

// key addresses one (series, field, window) of a tier.
type key struct {
	m, series, field string
	start            int64 // Unix seconds
}

type agg struct {
	min, max, sum, last, mean float64
	count                     int64
	lastTime                  time.Time
}

func seriesKey(tags map[string]string) string {
	keys := slices.Sorted(maps.Keys(tags))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, ",")
}

// expected computes every window of tier directly from the raw points, independently of the
// tiers below.
func (e *env) expected(tier influx.Tier) map[key]agg {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[key]agg{}
	w := int64(tier.Width / time.Second)
	for _, p := range e.points {
		sec := p.time.Unix()
		start := sec - ((sec%w)+w)%w
		for f, v := range p.fields {
			k := key{p.m, seriesKey(p.tags), f, start}
			a, ok := out[k]
			if !ok {
				a = agg{min: v, max: v}
			}
			a.min, a.max = math.Min(a.min, v), math.Max(a.max, v)
			a.sum += v
			a.count++
			if !p.time.Before(a.lastTime) {
				a.last, a.lastTime = v, p.time
			}
			a.mean = a.sum / float64(a.count)
			out[k] = a
		}
	}
	return out
}

// actual reads every rollup point of tier from InfluxDB.
func (e *env) actual(tier influx.Tier) map[key]agg {
	e.t.Helper()
	out := map[key]agg{}
	for _, m := range []string{"cpu", "mem"} {
		series, err := e.client.QueryOne(context.Background(), "SELECT * FROM "+e.client.TierSource(tier, m)+" GROUP BY *")
		if err != nil {
			e.t.Fatalf("reading tier %s of %s: %v", tier.Name, m, err)
		}
		for _, s := range series {
			tags := map[string]string{}
			for k, v := range s.Tags {
				if v != "" {
					tags[k] = v
				}
			}
			for _, row := range s.Values {
				r := map[string]any{}
				for i, c := range s.Columns {
					r[c] = row[i]
				}
				ts := time.Unix(0, int64(fnum(r["time"])))
				for _, c := range s.Columns {
					f, ok := strings.CutSuffix(c, "_count")
					if !ok || r[c] == nil {
						continue
					}
					a := agg{min: fnum(r[f+"_min"]), max: fnum(r[f+"_max"]), sum: fnum(r[f+"_sum"]),
						last: fnum(r[f+"_last"]), mean: fnum(r[f+"_mean"]), count: int64(fnum(r[c]))}
					out[key{m, seriesKey(tags), f, ts.Round(time.Second).Unix()}] = a
				}
			}
		}
	}
	return out
}

func fnum(v any) float64 {
	n, ok := v.(interface{ Float64() (float64, error) })
	if !ok {
		return math.NaN()
	}
	f, _ := n.Float64()
	return f
}

func near(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// check compares every window of every tier with the independent computation and returns the
// number of windows compared.
func (e *env) check() int {
	e.t.Helper()
	n := 0
	for _, tier := range influx.Tiers {
		want, got := e.expected(tier), e.actual(tier)
		bad := 0
		for k, w := range want {
			g, ok := got[k]
			switch {
			case !ok:
				e.t.Errorf("tier %s: window %v missing, want %+v", tier.Name, k, w)
				bad++
			case g.count != w.count || !near(g.min, w.min) || !near(g.max, w.max) || !near(g.sum, w.sum) ||
				!near(g.mean, w.mean) || !near(g.last, w.last):
				e.t.Errorf("tier %s: window %v = min %v max %v sum %v mean %v last %v count %d; want min %v max %v sum %v mean %v last %v count %d",
					tier.Name, k, g.min, g.max, g.sum, g.mean, g.last, g.count, w.min, w.max, w.sum, w.mean, w.last, w.count)
				bad++
			}
			if bad > 10 {
				e.t.Fatalf("tier %s: too many wrong windows", tier.Name)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				e.t.Errorf("tier %s: unexpected window %v", tier.Name, k)
			}
		}
		n += len(want)
	}
	return n
}
