package rollup_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/influxwriter"
	"github.com/agentmonitor/agentmonitor/internal/rollup"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

var agents = []string{
	"0b7b1c52-3c1e-4c55-9d0f-0a4c1f1e0001",
	"0b7b1c52-3c1e-4c55-9d0f-0a4c1f1e0002",
	"0b7b1c52-3c1e-4c55-9d0f-0a4c1f1e0003",
}

// dataRange returns 2h20m around yesterday's midnight (UTC): several 1m, 5m and 1h windows and a
// day boundary, all closed long ago.
func dataRange() (from, to time.Time) {
	midnight := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	return midnight.Add(-70 * time.Minute), midnight.Add(70 * time.Minute)
}

// latePoints returns points that arrive after their windows were computed: one into a 1m window
// well inside the range (an hour before the range's end), with values beyond every extreme, one
// into the range's last minute, and one a day before the range (new windows in every tier).
func latePoints() []point {
	from, to := dataRange()
	a := agents[0]
	cpu := func(ts time.Time, usage float64, lp string) point {
		return mkPoint("cpu", map[string]string{"agent": a, "core": "0"}, ts, map[string]float64{"usage": usage, "idle": 7}, "idle=7i,usage="+lp)
	}
	return []point{
		cpu(to.Add(-time.Hour).Add(123*time.Millisecond), -1000, "-1000"),
		cpu(to.Add(-time.Second), 5000, "5000"),
		cpu(from.Add(-24*time.Hour), 42.5, "42.5"),
		mkPoint("mem", map[string]string{"agent": agents[2]}, to.Add(-time.Hour-3*time.Second), map[string]float64{"used": 1}, "used=1i"),
	}
}

func TestRollupsMatchRawPointsAlsoWhenLate(t *testing.T) {
	e := newEnv(t)
	e.startConsumers(10 * time.Millisecond)
	roller := rollup.NewRoller(rollerConfig(), e.store, e.client, nil, e.log)
	e.run(roller.Run)

	from, to := dataRange()
	e.publish(gen(rand.New(rand.NewPCG(1, 2)), agents, from, to))
	e.waitRollups()
	n := e.check()
	t.Logf("%d windows over 4 tiers equal the computation from %d raw points", n, len(e.points))
	if n < 1000 {
		t.Fatalf("compared %d windows, want a data set of at least 1000", n)
	}

	// Late points change windows already computed in every tier, and add new ones.
	before := e.actual(influx.Tiers[3])
	e.publish(latePoints())
	e.waitRollups()
	e.check()
	after := e.actual(influx.Tiers[3])
	if len(after) <= len(before) {
		t.Errorf("1d windows after a day-late point: %d, want more than %d", len(after), len(before))
	}
}

// flaky wraps the InfluxDB client: it records reads that overlap in time with another read of
// the same source and windows (two copies computing one window at once), and can make a roller die (its context cancelled) in the middle
// of a run of windows, after reading and before writing.
type flaky struct {
	rollup.Influx
	mu      sync.Mutex
	active  []span
	overlap atomic.Int32
	queries atomic.Int32
	// dieAfter, when > 0, cancels die after that many queries, before the windows are written.
	dieAfter atomic.Int32
	die      context.CancelFunc
}

type span struct {
	src      string
	from, to int64
}

var stmtRange = regexp.MustCompile(`FROM (.+) WHERE time >= (\d+) AND time < (\d+) GROUP BY`)

func (f *flaky) QueryOne(ctx context.Context, stmt string) ([]influx.QLSeries, error) {
	f.queries.Add(1)
	m := stmtRange.FindStringSubmatch(stmt)
	if m == nil {
		return nil, fmt.Errorf("unexpected statement %s", stmt)
	}
	from, _ := strconv.ParseInt(m[2], 10, 64)
	to, _ := strconv.ParseInt(m[3], 10, 64)
	me := span{m[1], from, to}
	f.mu.Lock()
	for _, o := range f.active {
		if o.src == me.src && o.from < me.to && me.from < o.to {
			f.overlap.Add(1)
		}
	}
	f.active = append(f.active, me)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active = slices.DeleteFunc(f.active, func(o span) bool { return o == me })
		f.mu.Unlock()
	}()
	res, err := f.Influx.QueryOne(ctx, stmt)
	if f.dieAfter.Load() > 0 && f.dieAfter.Add(-1) == 0 {
		f.die()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return res, err
}

func TestRollupSurvivesCrashAndTwoCopies(t *testing.T) {
	e := newEnv(t)
	e.startConsumers(10 * time.Millisecond)
	from, to := dataRange()
	e.publish(gen(rand.New(rand.NewPCG(3, 4)), agents, from, to))
	e.waitStreams()

	// A copy that died holding leases: they expire and other copies take the windows over.
	abandoned, err := e.store.Claim(context.Background(), 0, time.Now(), 500*time.Millisecond, 5)
	if err != nil || len(abandoned) != 5 {
		t.Fatalf("Claim = %d leases, %v; want 5", len(abandoned), err)
	}
	// A copy that dies in the middle of its tenth window, after reading and before writing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dying := &flaky{Influx: e.client, die: cancel}
	dying.dieAfter.Store(3)
	cfg := rollerConfig()
	cfg.MaxRun = 5 // many runs, so that it dies with windows left
	r := rollup.NewRoller(cfg, e.store, dying, nil, e.log)
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run of the dying copy: %v", err)
	}
	if n := dying.dieAfter.Load(); n != 0 {
		t.Fatalf("the dying copy stopped with %d queries to go, want it killed mid-run", n)
	}
	if st, err := e.store.State(context.Background(), time.Now()); err != nil || st[0].Dirty == 0 {
		t.Fatalf("after the dying copy: 1m state %+v, %v; want windows still dirty", st, err)
	}

	// Two copies (and a mark arriving meanwhile) finish the work.
	shared := &flaky{Influx: e.client}
	for range 2 {
		cfg := rollerConfig()
		cfg.MaxRun, cfg.Batch = 3, 8 // small claims, so that both copies get work
		e.run(rollup.NewRoller(cfg, e.store, shared, nil, e.log).Run)
	}
	e.publish(latePoints())
	e.waitRollups()
	e.check()
	if n := shared.overlap.Load(); n != 0 {
		t.Errorf("%d computations overlapped with another of the same windows, want none", n)
	}
	t.Logf("the two copies ran %d queries", shared.queries.Load())
}

func TestMarkerWaitsForWriter(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	from, _ := dataRange()
	p := mkPoint("cpu", map[string]string{"agent": agents[0]}, from, map[string]float64{"v": 1}, "v=1")
	e.publish([]point{p})
	var k, id string
	for _, key := range stream.StreamKeys(e.prefix, shards) {
		entries, err := e.rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", key, err)
		}
		if len(entries) == 1 {
			k, id = key, entries[0].ID
		}
	}
	if id == "" {
		t.Fatal("published entry not found")
	}
	batch := func() []*stream.Message {
		return []*stream.Message{{Stream: k, ID: id, Deliveries: 1, Msg: message.NewMessage("m1", []byte(p.lp+"\n"))}}
	}
	marker := rollup.NewMarker(e.store, influxwriter.Group, 0, nil)
	marker.WriterPatience = 100 * time.Millisecond
	dirty := func() int64 {
		st, err := e.store.State(ctx, time.Now())
		if err != nil {
			t.Fatalf("State: %v", err)
		}
		return st[0].Dirty
	}
	steps := []struct {
		name      string
		do        func() error
		wantRetry bool
		wantDirty int64
	}{
		{"no writer group", func() error { return nil }, true, 0},
		{"writer group created", func() error { return e.rdb.XGroupCreate(ctx, k, influxwriter.Group, "0").Err() }, true, 0},
		{"delivered to the writer, not acked", func() error {
			return e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: influxwriter.Group, Consumer: "w", Streams: []string{k, ">"}}).Err()
		}, true, 0},
		{"acked by the writer", func() error { return e.rdb.XAck(ctx, k, influxwriter.Group, id).Err() }, false, 1},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		err := marker.Handle(ctx, batch())
		var ra stream.RetryAfterError
		if gotRetry := errors.As(err, &ra) && ra.RetryAfter() > 0; gotRetry != st.wantRetry {
			t.Errorf("%s: Handle = %v, want a retry-after error: %v", st.name, err, st.wantRetry)
		}
		if d := dirty(); d != st.wantDirty {
			t.Errorf("%s: dirty 1m windows = %d, want %d", st.name, d, st.wantDirty)
		}
	}
}
