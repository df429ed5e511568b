package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/history"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// historyConfig is what the flags of "loadgen history" say.
type historyConfig struct {
	influxURL    string
	db           string
	agents       int
	series       int
	days         int
	step         time.Duration
	rollup1mDays int
	load         bool
	queries      int
	writers      int
	batch        int

	// --via pipeline (histpipe.go)
	via         string
	redisURL    string
	databaseURL string
	keep        bool
	timeout     time.Duration
}

// runHistory is "loadgen history": it loads days of points for agents × series, either through
// a private deployment (--via pipeline, histpipe.go: gateway, influx-writer, pg-sync and the
// rollup worker, which computes the tiers) or straight into InfluxDB 1.8 (--via influx: raw points
// and the rollup tiers, computed here by the contract's rules, each tier rolled up to its newest
// closed window so that queries stitch like in production), then times the history queries and
// prints a JSON report on stdout and one line per query on stderr.
func runHistory(args []string, stdout, stderr io.Writer) int {
	var c historyConfig
	fs := flag.NewFlagSet("loadgen history", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `loadgen history loads days of history and reports p50/p99 of the history queries: one series
24 h at 1m, 7 d at 1h, 30 d at 1d, fleet queries over all agents, and 24 h at 1m forced onto raw
points, and 30 d at 1d on raw points (the ratios are what rollups bring).

--via pipeline (go tool task bench:history) builds and starts a private deployment (influxd 1.8 on
free ports, the gateway with INGEST_MAX_PAST raised, influx-writer, pg-sync and the rollup worker,
Redis and PostgreSQL at --redis-url and --database-url's server under a key prefix and a database
of their own, all removed at the end), registers the agents through the API, posts their points
as line protocol with their keys, waits until the streams are drained and the rollup worker has
caught up, then times the queries through the gateway's history API (what a dashboard sees) and
the same queries on the in-process engine.

--via influx writes raw points and the 1m, 5m, 1h, 1d tiers (computed in-process by the rollup
rules) straight into the InfluxDB 1.8 at --influx-url (loopback only) and times the in-process
engine.

Examples:
  loadgen history --agents 50 --series 5 --days 30      (go tool task bench:history)
  loadgen history --via influx --influx-url http://127.0.0.1:8086 --agents 50 --series 5 --days 30

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.influxURL, "influx-url", "http://127.0.0.1:8086", "--via influx: InfluxDB 1.8 base URL (loopback only)")
	fs.StringVar(&c.db, "db", "bench_history", "--via influx: database to (re)create and load; dropped first when --load")
	fs.IntVar(&c.agents, "agents", 50, "agents")
	fs.IntVar(&c.series, "series", 5, "series (fields of one measurement) per agent")
	fs.IntVar(&c.days, "days", 30, "days of data, ending now")
	fs.DurationVar(&c.step, "step", 60*time.Second, "interval of raw points")
	fs.IntVar(&c.rollup1mDays, "rollup-1m-days", 30, "--via influx: days of the 1m tier to load (the 24 h query reads only the last day)")
	fs.BoolVar(&c.load, "load", true, "--via influx: drop, create and load the database; false: query what a previous run loaded")
	fs.IntVar(&c.queries, "queries", 100, "timed runs of each query (after 5 warm-up runs)")
	fs.IntVar(&c.writers, "writers", 4, "concurrent write requests while loading (to the gateway --via pipeline)")
	fs.IntVar(&c.batch, "batch", 0, "lines per write request (default: 5000 --via pipeline, the gateway's INGEST_MAX_POINTS; 10000 --via influx)")
	fs.StringVar(&c.via, "via", "pipeline", "pipeline: a private deployment, points posted to the gateway, tiers computed by the rollup worker, queries through the history API; influx: straight into --influx-url")
	fs.StringVar(&c.redisURL, "redis-url", envOr("REDIS_URL", "redis://127.0.0.1:6379/0"), "--via pipeline: the Redis to use, under a key prefix of its own; $REDIS_URL sets the default")
	fs.StringVar(&c.databaseURL, "database-url", envOr("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/agentmonitor?sslmode=disable"),
		"--via pipeline: a database URL on the PostgreSQL server to use; the bench creates and drops a database of its own there; $DATABASE_URL sets the default")
	fs.BoolVar(&c.keep, "keep", false, "--via pipeline: keep the temporary directory (logs, InfluxDB data)")
	fs.DurationVar(&c.timeout, "catchup-timeout", 30*time.Minute, "--via pipeline: how long to wait for the writers and the rollup worker to catch up after the load")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.via != "pipeline" && c.via != "influx" {
		fmt.Fprintf(stderr, "loadgen history: --via %q: want pipeline or influx\n", c.via)
		return 2
	}
	if c.batch == 0 {
		c.batch = map[string]int{"pipeline": 5000, "influx": 10000}[c.via]
	}
	if c.via == "influx" {
		if err := loopbackURL(c.influxURL); err != nil {
			fmt.Fprintln(stderr, "loadgen history: --influx-url:", err)
			return 2
		}
	}
	if c.agents < 1 || c.series < 1 || c.days < 1 || c.step < time.Second || c.queries < 1 || c.writers < 1 || c.batch < 1 || c.rollup1mDays < 1 {
		fmt.Fprintln(stderr, "loadgen history: --agents, --series, --days, --rollup-1m-days, --queries, --writers, --batch must be positive and --step at least 1s")
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := benchHistory
	if c.via == "pipeline" {
		run = benchHistoryPipeline
	}
	rep, err := run(ctx, c, logger)
	if err != nil {
		logger.Error("history bench failed", "err", err)
		return 1
	}
	if err := writeReport(stdout, rep); err != nil {
		return 1
	}
	if rep.Via == "pipeline" {
		fmt.Fprintf(stderr, "loaded %d raw points (%d values) in %d requests through the gateway in %.1f s (%.0f points/s); influx-writer drained %.1f s and rollup caught up %.1f s after the last request\n",
			rep.RawPoints, rep.RawPoints*int64(rep.Series), rep.Requests, rep.LoadSeconds, rep.LinesPerS, rep.WriterDrainSeconds, rep.RollupCatchUpSeconds)
		fmt.Fprintf(stderr, "stored: %d raw points, rollup rows 1m %d, 5m %d, 1h %d, 1d %d\n", rep.RawPointsStored,
			rep.RollupWindows["1m"], rep.RollupWindows["5m"], rep.RollupWindows["1h"], rep.RollupWindows["1d"])
	}
	for _, q := range rep.Queries {
		fmt.Fprintf(stderr, "%-28s tier %-3s every %-3s %5d points  p50 %7.2f ms  p99 %7.2f ms", q.Name, q.Tier, q.Every, q.Points, q.P50MS, q.P99MS)
		if rep.Via == "pipeline" {
			fmt.Fprintf(stderr, "  (engine p50 %7.2f ms  p99 %7.2f ms)", q.EngineP50MS, q.EngineP99MS)
		}
		fmt.Fprintln(stderr)
	}
	fmt.Fprintf(stderr, "raw/rollup ratio: 24 h at 1m p50 %.1fx p99 %.1fx, 30 d at 1d p50 %.1fx p99 %.1fx; budget (p99 <= 100 ms for one series 24 h and 30 d): %s\n",
		rep.RawRatioP50, rep.RawRatioP99, rep.RawRatio30dP50, rep.RawRatio30dP99, map[bool]string{true: "met", false: "MISSED"}[rep.BudgetMet])
	return 0
}

// historyReport is the JSON report of a history bench.
type historyReport struct {
	// Via is pipeline or influx; Measured says where the query latencies are taken.
	Via      string `json:"via"`
	Measured string `json:"measured"`

	Agents       int     `json:"agents"`
	Series       int     `json:"series_per_agent"`
	Days         int     `json:"days"`
	Step         string  `json:"step"`
	RawPoints    int64   `json:"raw_points"`
	RollupPoints int64   `json:"rollup_points"`
	LoadSeconds  float64 `json:"load_seconds"`
	LinesPerS    float64 `json:"lines_per_s"`
	// --via pipeline: requests posted, and the seconds from the last answered request until the
	// influx-writer group, then every group and the rollup worker's windows, were drained.
	Requests             int64   `json:"requests,omitempty"`
	WriterDrainSeconds   float64 `json:"writer_drain_seconds,omitempty"`
	RollupCatchUpSeconds float64 `json:"rollup_catchup_seconds,omitempty"`
	// --via pipeline, counted in InfluxDB after the catch-up: raw points (must equal RawPoints)
	// and rollup rows (agent × window) per tier; RollupPoints is their sum.
	RawPointsStored int64            `json:"raw_points_stored,omitempty"`
	RollupWindows   map[string]int64 `json:"rollup_windows,omitempty"`
	Rollup1mDays    int              `json:"rollup_1m_days"`
	Queries         []historyTiming  `json:"queries"`
	RawRatioP50     float64          `json:"raw_ratio_p50"`
	RawRatioP99     float64          `json:"raw_ratio_p99"`
	// The same for 30 d at 1d, where rollups matter most.
	RawRatio30dP50 float64 `json:"raw_ratio_30d_p50"`
	RawRatio30dP99 float64 `json:"raw_ratio_30d_p99"`
	BudgetMet      bool    `json:"budget_met"`
}

// historyTiming is one query's latencies.
type historyTiming struct {
	Name   string  `json:"name"`
	Tier   string  `json:"tier"`
	Every  string  `json:"every"`
	Points int     `json:"points"`
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
	// --via pipeline: the same query on the in-process engine, without HTTP and the gateway.
	EngineP50MS float64 `json:"engine_p50_ms,omitempty"`
	EngineP99MS float64 `json:"engine_p99_ms,omitempty"`
}

func benchHistory(ctx context.Context, c historyConfig, logger *slog.Logger) (*historyReport, error) {
	client, err := influx.New(influx.Config{URL: c.influxURL, Bucket: c.db, RetentionDays: c.days + 1, Timeout: 5 * time.Minute})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	rep := &historyReport{Agents: c.agents, Series: c.series, Days: c.days, Step: c.step.String(), Rollup1mDays: c.rollup1mDays}
	now := time.Now().UTC().Truncate(c.step)
	if c.load {
		if err := loadHistory(ctx, c, client, now, rep, logger); err != nil {
			return nil, err
		}
	}
	cfg := history.DefaultConfig()
	cfg.QueryTimeout = time.Minute
	engine, err := history.New(client, history.LayoutOf(client, c.days+1), cfg, nil)
	if err != nil {
		return nil, err
	}
	rep.Via, rep.Measured = "influx", "in-process history engine"
	rep.Queries, err = timeHistory(ctx, c.queries, engineRunner(engine), benchAgent(0), logger)
	if err != nil {
		return nil, err
	}
	rep.ratios()
	return rep, nil
}

// historyQuery is one query of the timed set: one series (the first agent) or the fleet (every
// agent, one series per agent) over span at every, on the tier the planner picks or forced onto
// tier.
type historyQuery struct {
	name  string
	fleet bool
	span  time.Duration
	every time.Duration
	tier  string
}

// historyQueries is the timed set; ratios reads it by position.
var historyQueries = []historyQuery{
	{name: "series 24h at 1m", span: 24 * time.Hour, every: time.Minute},
	{name: "series 7d at 1h", span: 7 * 24 * time.Hour, every: time.Hour},
	{name: "series 30d at 1d", span: 30 * 24 * time.Hour, every: 24 * time.Hour},
	{name: "fleet 24h at 1h by agent", fleet: true, span: 24 * time.Hour, every: time.Hour},
	{name: "fleet 7d at 1h by agent", fleet: true, span: 7 * 24 * time.Hour, every: time.Hour},
	{name: "series 24h at 1m, raw", span: 24 * time.Hour, every: time.Minute, tier: history.Raw},
	{name: "series 30d at 1d, raw", span: 30 * 24 * time.Hour, every: 24 * time.Hour, tier: history.Raw},
}

// queryRunner runs one query of the set for agent (the series queries' agent) ending now, and
// returns its answer.
type queryRunner func(ctx context.Context, hq historyQuery, agent string) (history.Result, error)

// engineRunner runs the queries on the in-process engine, field f0 of measurement bench, as the
// gateway would plan them.
func engineRunner(engine *history.Engine) queryRunner {
	return func(ctx context.Context, hq historyQuery, agent string) (history.Result, error) {
		now := time.Now().UTC() // like a dashboard refreshing: the newest windows are stitched
		q := history.Query{Measurement: "bench", Field: "f0", Fn: "mean", Start: now.Add(-hq.span), End: now, Every: hq.every, Tier: hq.tier}
		if hq.fleet {
			q.GroupBy = []string{"agent"}
		} else {
			q.Agents, q.OmitAgent = []string{agent}, true
		}
		return engine.Query(ctx, q)
	}
}

// timeHistory runs every query of the set n times after 5 warm-up runs and returns their
// latencies.
func timeHistory(ctx context.Context, n int, run queryRunner, agent string, logger *slog.Logger) ([]historyTiming, error) {
	var out []historyTiming
	for _, hq := range historyQueries {
		var lat []time.Duration
		var res history.Result
		var err error
		for i := 0; i < n+5; i++ {
			began := time.Now()
			if res, err = run(ctx, hq, agent); err != nil {
				return nil, fmt.Errorf("query %s: %w", hq.name, err)
			}
			if i >= 5 {
				lat = append(lat, time.Since(began))
			}
		}
		points := 0
		for _, s := range res.Series {
			points += len(s.Points)
		}
		slices.Sort(lat)
		out = append(out, historyTiming{Name: hq.name, Tier: res.Tier, Every: res.Every, Points: points,
			P50MS: msOf(nearestRank(lat, 0.50)), P99MS: msOf(nearestRank(lat, 0.99)), MaxMS: msOf(lat[len(lat)-1])})
		logger.Info("timed history query", "query", hq.name, "tier", res.Tier, "points", points)
	}
	return out, nil
}

// ratios fills the raw-versus-rollup ratios and the budget verdict from rep.Queries.
func (rep *historyReport) ratios() {
	day, raw, month, rawMonth := rep.Queries[0], rep.Queries[5], rep.Queries[2], rep.Queries[6]
	rep.RawRatioP50, rep.RawRatioP99 = raw.P50MS/day.P50MS, raw.P99MS/day.P99MS
	rep.RawRatio30dP50, rep.RawRatio30dP99 = rawMonth.P50MS/month.P50MS, rawMonth.P99MS/month.P99MS
	rep.BudgetMet = day.P99MS <= 100 && month.P99MS <= 100
}

func nearestRank(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchAgent(i int) string { return fmt.Sprintf("bench-agent-%03d", i) }

// benchValue is the value of series f of agent a at step i: deterministic, 0 to 99.9.
func benchValue(a, f, i int) float64 {
	return float64((i*7919+a*104729+f*1299709)%1000) / 10
}

// loadHistory drops and creates the database with its tiers, then writes the raw points and the
// rollup windows of every agent through c.writers concurrent writers.
func loadHistory(ctx context.Context, c historyConfig, client *influx.Client, now time.Time, rep *historyReport, logger *slog.Logger) error {
	stmts := []string{`DROP DATABASE ` + influxql.QuoteIdent(c.db), `CREATE DATABASE ` + influxql.QuoteIdent(c.db)}
	for _, t := range influx.Tiers {
		stmts = append(stmts, fmt.Sprintf(`CREATE RETENTION POLICY %s ON %s DURATION INF REPLICATION 1`, influxql.QuoteIdent("rollup_"+t.Name), influxql.QuoteIdent(c.db)))
	}
	if _, err := client.QueryQL(ctx, strings.Join(stmts, "; ")); err != nil {
		return fmt.Errorf("creating database %s and its tiers: %w", c.db, err)
	}
	buckets := map[string]*influx.Client{"raw": client}
	for _, t := range influx.Tiers {
		tc, err := influx.New(influx.Config{URL: c.influxURL, Bucket: client.TierBucket(t), Timeout: 5 * time.Minute})
		if err != nil {
			return err
		}
		defer tc.Close()
		buckets[t.Name] = tc
	}
	type batch struct {
		tier string
		body []byte
	}
	work := make(chan batch, c.writers)
	errc := make(chan error, c.writers)
	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range c.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if err := buckets[b.tier].Write(wctx, b.body); err != nil {
					errc <- fmt.Errorf("writing %s: %w", b.tier, err)
					cancel()
					for range work {
					}
					return
				}
			}
		}()
	}
	began := time.Now()
	start := now.Add(-time.Duration(c.days) * 24 * time.Hour)
	steps := int(now.Sub(start) / c.step)
	var lines int64
	bufs := map[string][]byte{}
	counts := map[string]int{}
	emit := func(tier string, line []byte) bool {
		bufs[tier] = append(append(bufs[tier], line...), '\n')
		counts[tier]++
		lines++
		if tier == "raw" {
			rep.RawPoints++
		} else {
			rep.RollupPoints++
		}
		if counts[tier] >= c.batch {
			select {
			case work <- batch{tier, bufs[tier]}:
			case <-wctx.Done():
				return false
			}
			bufs[tier], counts[tier] = nil, 0
		}
		return true
	}
	tierFrom := map[string]time.Time{"1m": now.Add(-time.Duration(c.rollup1mDays) * 24 * time.Hour)}
	var line []byte
	progress := time.Now()
produce:
	for a := 0; a < c.agents; a++ {
		agent := benchAgent(a)
		wins := make([]windowAcc, len(influx.Tiers)*c.series)
		for i := 0; i <= steps; i++ {
			t := start.Add(time.Duration(i) * c.step)
			last := i == steps
			if !last {
				line = append(line[:0], "bench,agent="...)
				line = append(line, agent...)
				for f := 0; f < c.series; f++ {
					line = append(line, " ,"[min(f, 1)], 'f')
					line = strconv.AppendInt(line, int64(f), 10)
					line = append(line, '=')
					line = strconv.AppendFloat(line, benchValue(a, f, i), 'g', -1, 64)
				}
				line = append(line, ' ')
				line = strconv.AppendInt(line, t.UnixNano(), 10)
				if !emit("raw", line) {
					break produce
				}
			}
			for ti, tier := range influx.Tiers {
				ws := historyAlign(t, tier.Width)
				frontier := historyAlign(now, tier.Width) // closed windows only: the current one is stitched
				for f := 0; f < c.series; f++ {
					w := &wins[ti*c.series+f]
					if w.n > 0 && (last || !w.start.Equal(ws)) {
						if w.start.Before(frontier) && !w.start.Before(tierFrom[tier.Name]) {
							if !emit(tier.Name, w.appendLine(line[:0], agent, f)) {
								break produce
							}
						}
						w.n = 0
					}
					if last {
						continue
					}
					v := benchValue(a, f, i)
					if w.n == 0 {
						*w = windowAcc{start: ws, min: v, max: v}
					}
					w.add(v)
				}
			}
		}
		if time.Since(progress) > 10*time.Second {
			progress = time.Now()
			logger.Info("loading history", "agents_done", a+1, "of", c.agents, "lines", lines, "lines_per_s", int(float64(lines)/time.Since(began).Seconds()))
		}
	}
	for tier, b := range bufs {
		if len(b) == 0 {
			continue
		}
		select {
		case work <- batch{tier, b}:
		case <-wctx.Done():
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep.LoadSeconds = time.Since(began).Seconds()
	rep.LinesPerS = float64(lines) / rep.LoadSeconds
	logger.Info("history loaded", "raw_points", rep.RawPoints, "rollup_points", rep.RollupPoints, "took", time.Since(began).Round(time.Second))
	return nil
}

// windowAcc accumulates one rollup window of one series by the contract's rules.
type windowAcc struct {
	start               time.Time
	min, max, sum, last float64
	n                   int64
}

func (w *windowAcc) add(v float64) {
	w.min, w.max = min(w.min, v), max(w.max, v)
	w.sum += v
	w.last = v
	w.n++
}

// appendLine writes the window as the contract's rollup point of field f<f>.
func (w *windowAcc) appendLine(dst []byte, agent string, f int) []byte {
	name := "f" + strconv.Itoa(f)
	dst = append(dst, "bench,agent="...)
	dst = append(dst, agent...)
	for i, kv := range []struct {
		agg string
		v   float64
	}{{"min", w.min}, {"max", w.max}, {"mean", w.sum / float64(w.n)}, {"sum", w.sum}, {"last", w.last}} {
		dst = append(dst, " ,"[min(i, 1)])
		dst = append(dst, name+"_"+kv.agg+"="...)
		dst = strconv.AppendFloat(dst, kv.v, 'g', -1, 64)
	}
	dst = append(dst, ","+name+"_count="...)
	dst = strconv.AppendInt(dst, w.n, 10)
	dst = append(dst, "i "...)
	return strconv.AppendInt(dst, w.start.UnixNano(), 10)
}

// historyAlign rounds t down to a multiple of d since the Unix epoch.
func historyAlign(t time.Time, d time.Duration) time.Time {
	ns := t.UnixNano()
	return time.Unix(0, ns-ns%int64(d)).UTC()
}
