package history

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/history/historytest"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunInflux(m)) }

// The fixture's clock: noon, so that the day's windows are spread over every tier.
var (
	fixDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	fixNow = fixDay.Add(12 * time.Hour)
)

// How far each tier is rolled up in the fixture: the newest windows are only in finer tiers, and
// raw points exist only for the last half hour, so that a query reading the wrong tier for any
// part of its range misses or double-counts it.
var frontier = map[string]time.Time{
	"1d":  fixDay,
	"1h":  fixDay.Add(10 * time.Hour),
	"5m":  fixDay.Add(11 * time.Hour),
	"1m":  fixDay.Add(11*time.Hour + 30*time.Minute),
	"raw": fixNow,
}

// Where each tier's windows begin (the finer tiers hold less history).
var tierFrom = map[string]time.Time{
	"1d": fixDay.Add(-31 * 24 * time.Hour),
	"1h": fixDay.Add(-31 * 24 * time.Hour),
	"5m": fixDay.Add(-8 * 24 * time.Hour),
	"1m": fixDay.Add(-2 * 24 * time.Hour),
}

type fixture struct {
	engine *Engine
	series []historytest.Series // a1 core 0, a1 core 1, a2 core 0
	db     testenv.InfluxDB
}

// TestHistory loads 31 days of samples every 20 s for three series into the tiers (each up to
// its frontier) and the last half hour as raw points, then runs the query tests on them.
func TestHistory(t *testing.T) {
	f, err := buildFixture(t)
	if err != nil {
		t.Fatalf("loading the history fixture: %v", err)
	}
	t.Run("TiersAndStitching", func(t *testing.T) { testTiersAndStitching(t, f) })
	t.Run("ForcedTier", func(t *testing.T) { testForcedTier(t, f) })
	t.Run("Percentile", func(t *testing.T) { testPercentile(t, f) })
	t.Run("Fleet", func(t *testing.T) { testFleet(t, f) })
	t.Run("Escaping", func(t *testing.T) { testEscaping(t, f) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, f) })
	t.Run("Metrics", func(t *testing.T) { testMetrics(t, f) })
}

func buildFixture(t *testing.T) (*fixture, error) {
	db := testenv.Influx(t)
	ctx := context.Background()
	run := func(ctx context.Context, stmt string) error { _, err := db.Server.Query(ctx, "", stmt); return err }
	if err := historytest.CreateTiers(ctx, run, db.Database); err != nil {
		return nil, err
	}
	from := fixDay.Add(-31 * 24 * time.Hour)
	f := &fixture{db: db, series: []historytest.Series{
		historytest.Generate(map[string]string{"agent": "a1", "core": "0"}, 1, from, fixNow, 20*time.Second),
		historytest.Generate(map[string]string{"agent": "a1", "core": "1"}, 2, from, fixNow, 20*time.Second),
		historytest.Generate(map[string]string{"agent": "a2", "core": "0"}, 3, from, fixNow, 20*time.Second),
	}}
	write := func(bucket string, lines []string) error {
		c, err := influx.New(influx.Config{URL: db.URL, Bucket: bucket, Timeout: 30 * time.Second})
		if err != nil {
			return err
		}
		defer c.Close()
		for len(lines) > 0 {
			n := min(len(lines), 10000)
			if err := c.Write(ctx, []byte(strings.Join(lines[:n], "\n"))); err != nil {
				return err
			}
			lines = lines[n:]
		}
		return nil
	}
	for _, s := range f.series {
		if err := write(db.Database, historytest.RawLines("cpu", "usage_percent", s, frontier["1m"], fixNow)); err != nil {
			return nil, err
		}
		for _, tier := range influx.Tiers {
			ws := historytest.Rollup(s, tier.Width, tierFrom[tier.Name], frontier[tier.Name])
			if err := write(db.Database+"/rollup_"+tier.Name, historytest.RollupLines("cpu", "usage_percent", s.Tags, ws)); err != nil {
				return nil, err
			}
		}
	}
	c, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Database, RetentionDays: 30, Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	f.engine, err = New(c, LayoutOf(c, 30), DefaultConfig(), func() time.Time { return fixNow })
	return f, err
}

func closeEnough(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// checkSeries compares one answered series with the expectation computed from the samples.
func checkSeries(t *testing.T, what string, got Series, want []historytest.Point) {
	t.Helper()
	if len(got.Points) != len(want) {
		t.Errorf("%s: %d points, want %d (first %v, last %v)", what, len(got.Points), len(want), first(got.Points), last(got.Points))
		return
	}
	for i, p := range got.Points {
		if !p.Time.Equal(want[i].Time) || !closeEnough(p.Value, want[i].Value) {
			t.Errorf("%s: point %d = %s %v, want %s %v", what, i, p.Time.Format(time.RFC3339), p.Value, want[i].Time.Format(time.RFC3339), want[i].Value)
			return
		}
	}
}

func first(ps []Point) any {
	if len(ps) == 0 {
		return nil
	}
	return ps[0]
}

func last(ps []Point) any {
	if len(ps) == 0 {
		return nil
	}
	return ps[len(ps)-1]
}

// testTiersAndStitching reads one agent's two series over the ranges, with and
// without every, for every function, and compares each window with the same function computed
// from the raw samples: right only if each part of the range comes from exactly one tier and
// the parts are combined by sum/count (not a mean of means).
func testTiersAndStitching(t *testing.T, f *fixture) {
	tests := []struct {
		name      string
		span      time.Duration
		every     time.Duration
		wantTier  string
		wantEvery time.Duration
	}{
		{"1h auto", time.Hour, 0, "1m", time.Minute},
		{"24h auto", day, 0, "5m", 5 * time.Minute},
		{"7d auto", 7 * day, 0, "1h", time.Hour},
		{"30d auto", 30 * day, 0, "1d", day},
		{"1h every=2m", time.Hour, 2 * time.Minute, "1m", 2 * time.Minute},
		{"24h every=1m", day, time.Minute, "1m", time.Minute},
		{"24h every=10m", day, 10 * time.Minute, "5m", 10 * time.Minute},
		{"24h every=1h", day, time.Hour, "1h", time.Hour},
		{"7d every=6h", 7 * day, 6 * time.Hour, "1h", 6 * time.Hour},
		{"30d every=1d", 30 * day, day, "1d", day},
		{"20m every=30s", 20 * time.Minute, 30 * time.Second, "raw", 30 * time.Second},
	}
	for _, tt := range tests {
		for _, fn := range []string{"mean", "min", "max", "sum", "count", "last"} {
			t.Run(tt.name+"/"+fn, func(t *testing.T) {
				q := Query{Measurement: "cpu", Field: "usage_percent", Agents: []string{"a1"}, OmitAgent: true,
					Fn: fn, Start: fixNow.Add(-tt.span), End: fixNow, Every: tt.every}
				res, err := f.engine.Query(context.Background(), q)
				if err != nil {
					t.Fatalf("Query(%s, fn=%s) error: %v", tt.name, fn, err)
				}
				if res.Tier != tt.wantTier || res.Every != FormatEvery(tt.wantEvery) {
					t.Errorf("Query(%s) tier %s every %s, want tier %s every %s", tt.name, res.Tier, res.Every, tt.wantTier, FormatEvery(tt.wantEvery))
				}
				if len(res.Series) != 2 || res.Series[0].Tags["core"] != "0" || res.Series[1].Tags["core"] != "1" || len(res.Series[0].Tags) != 1 {
					t.Fatalf("Query(%s) series tags = %v, want core 0 and core 1 only", tt.name, tagsOf(res.Series))
				}
				start := historytest.AlignDown(q.Start, tt.wantEvery)
				for i, s := range res.Series {
					checkSeries(t, tt.name+"/"+fn+"/core "+s.Tags["core"], s, historytest.Expect(fn, tt.wantEvery, start, fixNow, f.series[i]))
				}
			})
		}
	}
}

// recordingStore remembers the statements it runs.
type recordingStore struct {
	Store
	mu    sync.Mutex
	stmts []string
}

func (r *recordingStore) QueryQL(ctx context.Context, stmts string) ([][]influx.QLSeries, error) {
	r.mu.Lock()
	r.stmts = append(r.stmts, stmts)
	r.mu.Unlock()
	return r.Store.QueryQL(ctx, stmts)
}

// testForcedTier forces the 1m tier for 5-minute windows: the 5m tier must not be read.
func testForcedTier(t *testing.T, f *fixture) {
	rec := &recordingStore{Store: f.engine.store}
	e, err := New(rec, f.engine.layout, f.engine.cfg, f.engine.now)
	if err != nil {
		t.Fatal(err)
	}
	q := Query{Measurement: "cpu", Field: "usage_percent", Agents: []string{"a1"}, OmitAgent: true, Tags: []TagFilter{{"core", "0"}},
		Fn: "sum", Start: fixNow.Add(-24 * time.Hour), End: fixNow, Every: 5 * time.Minute, Tier: "1m"}
	res, err := e.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("Query(tier=1m every=5m) error: %v", err)
	}
	for _, st := range rec.stmts {
		if strings.Contains(st, "rollup_5m") || strings.Contains(st, "rollup_1h") {
			t.Errorf("Query(tier=1m every=5m) ran %s, reading a coarser tier than the forced one", st)
		}
	}
	if res.Tier != "1m" || len(res.Series) != 1 {
		t.Fatalf("Query(tier=1m every=5m) = tier %s, %d series; want 1m, 1", res.Tier, len(res.Series))
	}
	checkSeries(t, "forced 1m", res.Series[0], historytest.Expect("sum", 5*time.Minute, q.Start, fixNow, f.series[0]))
}

func tagsOf(ss []Series) []map[string]string {
	var out []map[string]string
	for _, s := range ss {
		out = append(out, s.Tags)
	}
	return out
}

// testPercentile reads p95 and p99 from raw points and refuses them beyond raw retention.
func testPercentile(t *testing.T, f *fixture) {
	for _, fn := range []string{"p95", "p99"} {
		q := Query{Measurement: "cpu", Field: "usage_percent", Agents: []string{"a1"}, OmitAgent: true, Tags: []TagFilter{{"core", "1"}},
			Fn: fn, Start: fixNow.Add(-20 * time.Minute), End: fixNow, Every: 5 * time.Minute}
		res, err := f.engine.Query(context.Background(), q)
		if err != nil {
			t.Fatalf("Query(%s) error: %v", fn, err)
		}
		if res.Tier != Raw || len(res.Series) != 1 {
			t.Fatalf("Query(%s) = tier %s, %d series, want raw and 1 series", fn, res.Tier, len(res.Series))
		}
		checkSeries(t, fn, res.Series[0], historytest.Expect(fn, 5*time.Minute, q.Start, fixNow, f.series[1]))

		q.Start = fixNow.Add(-31 * 24 * time.Hour)
		q.Every = 0
		var pe *ParamError
		if _, err := f.engine.Query(context.Background(), q); !errors.As(err, &pe) || pe.Param != "start" {
			t.Errorf("Query(%s over 31 days) error = %v, want a ParamError naming start", fn, err)
		}
	}
}

// testFleet groups the whole fleet by agent (each agent's series merged) and by tag.
func testFleet(t *testing.T, f *fixture) {
	q := Query{Measurement: "cpu", Field: "usage_percent", GroupBy: []string{"agent"}, Fn: "mean", Start: fixNow.Add(-7 * 24 * time.Hour), End: fixNow}
	res, err := f.engine.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("Query(fleet by agent) error: %v", err)
	}
	if len(res.Series) != 2 || res.Series[0].Tags["agent"] != "a1" || res.Series[1].Tags["agent"] != "a2" {
		t.Fatalf("Query(fleet by agent) series = %v, want a1 and a2", tagsOf(res.Series))
	}
	start := historytest.AlignDown(q.Start, time.Hour)
	checkSeries(t, "a1", res.Series[0], historytest.Expect("mean", time.Hour, start, fixNow, f.series[0], f.series[1]))
	checkSeries(t, "a2", res.Series[1], historytest.Expect("mean", time.Hour, start, fixNow, f.series[2]))

	q.GroupBy, q.Agents, q.Fn = []string{"core"}, []string{"a1", "a2"}, "max"
	res, err = f.engine.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("Query(fleet by core) error: %v", err)
	}
	if len(res.Series) != 2 || res.Series[0].Tags["core"] != "0" || res.Series[1].Tags["core"] != "1" {
		t.Fatalf("Query(fleet by core) series = %v, want core 0 and 1", tagsOf(res.Series))
	}
	checkSeries(t, "core 0", res.Series[0], historytest.Expect("max", time.Hour, start, fixNow, f.series[0], f.series[2]))
	checkSeries(t, "core 1", res.Series[1], historytest.Expect("max", time.Hour, start, fixNow, f.series[1]))
}

// testEscaping checks that quotes in a tag value match literally instead of widening the
// query, and that an agent filter with a quote matches nothing.
func testEscaping(t *testing.T, f *fixture) {
	for _, v := range []string{`0' OR 'a'='a`, `0\' OR 1=1 --`, `0"`, `.*`, `/.*/`} {
		q := Query{Measurement: "cpu", Field: "usage_percent", Agents: []string{"a1"}, Tags: []TagFilter{{"core", v}}, Fn: "mean",
			Start: fixNow.Add(-time.Hour), End: fixNow}
		res, err := f.engine.Query(context.Background(), q)
		if err != nil || len(res.Series) != 0 {
			t.Errorf("Query(tag core=%q) = %d series, %v; want none and no error", v, len(res.Series), err)
		}
	}
	q := Query{Measurement: "cpu", Field: "usage_percent", Agents: []string{`a1' OR 'x'='x`}, Fn: "mean", Start: fixNow.Add(-time.Hour), End: fixNow}
	if res, err := f.engine.Query(context.Background(), q); err != nil || len(res.Series) != 0 {
		t.Errorf("Query(agent with a quote) = %d series, %v; want none and no error", len(res.Series), err)
	}
}

// testLimits checks the answer-size limit after the query and the timeout.
func testLimits(t *testing.T, f *fixture) {
	cfg := DefaultConfig()
	cfg.MaxPoints = 100 // 60 windows per series pass the plan; two series make 120
	e, err := New(f.engine.store, f.engine.layout, cfg, func() time.Time { return fixNow })
	if err != nil {
		t.Fatal(err)
	}
	q := Query{Measurement: "cpu", Field: "usage_percent", Agents: []string{"a1"}, Fn: "mean", Start: fixNow.Add(-time.Hour), End: fixNow}
	var pe *ParamError
	if _, err := e.Query(context.Background(), q); !errors.As(err, &pe) || pe.Param != "every" {
		t.Errorf("Query(120 points, limit 100) error = %v, want a ParamError naming every", err)
	}
	cfg = DefaultConfig()
	cfg.QueryTimeout = time.Nanosecond
	if e, err = New(f.engine.store, f.engine.layout, cfg, func() time.Time { return fixNow }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Query(context.Background(), q); !errors.Is(err, ErrTimeout) {
		t.Errorf("Query(timeout 1ns) error = %v, want ErrTimeout", err)
	}
}

// testMetrics lists the fleet's and one agent's fields.
func testMetrics(t *testing.T, f *fixture) {
	for _, agent := range []string{"", "a1"} {
		ms, err := f.engine.Metrics(context.Background(), agent)
		if err != nil {
			t.Fatalf("Metrics(%q) error: %v", agent, err)
		}
		if len(ms) != 1 || ms[0].Name != "cpu.usage_percent" || ms[0].Type != "float" || !ms[0].Numeric || strings.Join(ms[0].Tags, ",") != "agent,core" {
			t.Errorf("Metrics(%q) = %+v, want cpu.usage_percent float with tags agent, core", agent, ms)
		}
	}
	if ms, err := f.engine.Metrics(context.Background(), "nobody"); err != nil || len(ms) != 0 {
		t.Errorf("Metrics(nobody) = %+v, %v, want none", ms, err)
	}
}
