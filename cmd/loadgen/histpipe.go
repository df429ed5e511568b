package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/history"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/rollup"
	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Settings of the private deployment of "loadgen history --via pipeline" that are not flags.
const (
	histPipeDB        = "bench_history"
	histPipeRateLimit = 10_000_000 // points per second and burst: the load is one agent's month at once
	histPipeRetryMax  = 5 * time.Minute
	// histPipeGrace is ROLLUP_GRACE: the data is in the past, so a window may be computed as
	// soon as the writer has it.
	histPipeGrace = time.Second
)

// benchHistoryPipeline is --via pipeline: it starts a private deployment (influxd, gateway,
// influx-writer, pg-sync, rollup) with INGEST_MAX_PAST and the retention raised to hold c.days of
// the past and the per-agent rate limit out of the way, registers c.agents agents through the API,
// posts their points to POST /api/v2/write with their keys, c.writers requests in flight, waits
// until the streams are drained and the rollup worker has no closed window left to compute, then
// times the query set through the gateway's history API and on the in-process engine.
func benchHistoryPipeline(ctx context.Context, c historyConfig, logger *slog.Logger) (rep *historyReport, err error) {
	runID := strconv.FormatInt(time.Now().Unix(), 10) + "-" + strconv.Itoa(os.Getpid())
	b := &bench{out: os.Stderr, logger: logger, prefix: "benchhist-" + runID + ":", procs: map[string]*stack.Process{}}
	if b.work, err = os.MkdirTemp("", "agentmonitor-benchhist-"); err != nil {
		return nil, fmt.Errorf("creating the work directory: %w", err)
	}
	defer func() {
		if err != nil {
			b.showLogs()
		}
		if c.keep {
			logger.Info("kept the work directory", "dir", b.work)
		} else {
			os.RemoveAll(b.work)
		}
	}()
	dbURL, dropDB, err := benchDatabase(ctx, c.databaseURL, "agentmonitor_benchhist_"+strings.ReplaceAll(runID, "-", "_"))
	if err != nil {
		return nil, err
	}
	defer dropDB()
	if err := os.MkdirAll(filepath.Join(b.work, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the log directory: %w", err)
	}
	opts, err := redis.ParseURL(c.redisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	b.rdb = redis.NewClient(opts)
	defer b.rdb.Close()
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at %s does not answer (go tool task stores starts one): %w", opts.Addr, err)
	}
	defer b.deleteKeys()
	retention := c.days + 2
	if err := startHistoryStack(ctx, b, c, dbURL, retention, logger); err != nil {
		return nil, err
	}
	defer b.stop()

	rep = &historyReport{Via: "pipeline", Measured: "gateway history API (HTTP, admin session)", Agents: c.agents, Series: c.series,
		Days: c.days, Step: c.step.String(), Rollup1mDays: c.days}
	hc := newHTTPClient(c.writers, 5*time.Minute)
	agents, err := registerAgents(ctx, hc, config{gateway: b.gateway, adminUser: "admin", adminPass: b.admin, agents: c.agents}, runID, logger)
	if err != nil {
		return nil, err
	}
	dataEnd, err := postHistory(ctx, hc, b.gateway, agents, c, rep, logger)
	if err != nil {
		return nil, err
	}
	loaded := time.Now()
	if err := waitCaughtUp(ctx, b, loaded, dataEnd.Add(histPipeGrace), c.timeout, rep, logger); err != nil {
		return nil, err
	}

	if err := countStored(ctx, b.influxd, rep); err != nil {
		return nil, err
	}
	token, err := login(ctx, hc, b.gateway, "admin", b.admin)
	if err != nil {
		return nil, err
	}
	if rep.Queries, err = timeHistory(ctx, c.queries, gatewayRunner(hc, b.gateway, token), agents[0].ID, logger); err != nil {
		return nil, err
	}
	client, err := influx.New(influx.Config{URL: b.influxd.URL(), Bucket: histPipeDB, RetentionDays: retention, Timeout: 5 * time.Minute})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	cfg := history.DefaultConfig()
	cfg.QueryTimeout = time.Minute
	engine, err := history.New(client, history.LayoutOf(client, retention), cfg, nil)
	if err != nil {
		return nil, err
	}
	inproc, err := timeHistory(ctx, c.queries, engineRunner(engine), agents[0].ID, logger)
	if err != nil {
		return nil, err
	}
	for i, t := range inproc {
		rep.Queries[i].EngineP50MS, rep.Queries[i].EngineP99MS = t.P50MS, t.P99MS
	}
	rep.ratios()
	return rep, nil
}

// startHistoryStack builds the binaries and starts influxd, the workers and the gateway into b.
func startHistoryStack(ctx context.Context, b *bench, c historyConfig, dbURL string, retentionDays int, logger *slog.Logger) error {
	logger.Info("building gateway, influx-writer, pg-sync and rollup")
	bin := filepath.Join(b.work, "bin")
	if err := stack.Build(ctx, bin, b.out, "gateway", "influx-writer", "pg-sync", "rollup"); err != nil {
		return err
	}
	logger.Info("starting influxd 1.8")
	var err error
	if b.influxd, err = stack.StartInfluxd(filepath.Join(b.work, "influxdb")); err != nil {
		return err
	}
	b.procs["influxd"] = b.influxd.Process()
	b.admin = rand.Text()
	past := time.Duration(retentionDays) * 24 * time.Hour
	b.sys = &stack.System{BinDir: bin, LogDir: filepath.Join(b.work, "logs"), Env: []string{
		"REDIS_URL=" + c.redisURL,
		"REDIS_KEY_PREFIX=" + b.prefix,
		"DATABASE_URL=" + dbURL,
		"INFLUXDB_URL=" + b.influxd.URL(),
		"INFLUXDB_BUCKET=" + histPipeDB,
		"METRICS_RETENTION_DAYS=" + strconv.Itoa(retentionDays),
		"STREAM_SHARDS=" + strconv.Itoa(benchShards),
		"ADMIN_PASSWORD=" + b.admin,
		"INGEST_MAX_PAST=" + past.String(),
		"INGEST_MAX_POINTS=" + strconv.Itoa(max(c.batch, 5000)),
		"AGENT_RATE_POINTS_PER_SEC=" + strconv.Itoa(histPipeRateLimit),
		"AGENT_RATE_BURST=" + strconv.Itoa(histPipeRateLimit),
		"HISTORY_QUERY_TIMEOUT=1m",
		"ROLLUP_GRACE=" + histPipeGrace.String(),
		"ROLLUP_INTERVAL=1s",
		"LOG_FORMAT=json",
		"LOG_LEVEL=warn",
	}}
	for _, w := range []string{"influx-writer", "pg-sync", "rollup"} {
		a, err := b.sys.StartWorker(ctx, w, "benchhist-"+w)
		if err != nil {
			return err
		}
		b.procs[w] = a.Process
	}
	gw, err := b.sys.StartGateway(ctx, "gateway")
	if err != nil {
		return err
	}
	b.gateway, b.procs["gateway"] = gw.URL, gw.Process
	logger.Info("private deployment up", "gateway", b.gateway, "influxd", b.influxd.URL(), "redis_prefix", b.prefix)
	return nil
}

// postHistory posts c.days of points ending now for every agent, c.batch lines per request of
// line protocol (measurement bench, fields f0..f<series-1>, second precision) to the gateway's
// POST /api/v2/write with the agent's key, c.writers requests in flight. A 429 or 503 is retried
// after its Retry-After (the gateway's backpressure); any other refusal fails the load. It
// returns the end of the last step loaded (its points lie before it).
func postHistory(ctx context.Context, hc *http.Client, gateway string, agents []registered, c historyConfig, rep *historyReport, logger *slog.Logger) (time.Time, error) {
	now := time.Now().UTC().Truncate(c.step)
	start := now.Add(-time.Duration(c.days) * 24 * time.Hour)
	steps := int(now.Sub(start) / c.step)
	type chunk struct{ agent, from, to int }
	work := make(chan chunk)
	errc := make(chan error, c.writers)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	u := gateway + "/api/v2/write?precision=s"
	var requests, points atomic.Int64
	var wg sync.WaitGroup
	for range c.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for ch := range work {
				body = body[:0]
				for i := ch.from; i < ch.to; i++ {
					body = append(body, "bench "...)
					for f := 0; f < c.series; f++ {
						if f > 0 {
							body = append(body, ',')
						}
						body = append(body, 'f')
						body = strconv.AppendInt(body, int64(f), 10)
						body = append(body, '=')
						body = strconv.AppendFloat(body, benchValue(ch.agent, f, i), 'g', -1, 64)
					}
					body = append(body, ' ')
					body = strconv.AppendInt(body, start.Add(time.Duration(i)*c.step).Unix(), 10)
					body = append(body, '\n')
				}
				if err := postLines(wctx, hc, u, agents[ch.agent].APIKey, body); err != nil {
					errc <- fmt.Errorf("posting points %d to %d of agent %d: %w", ch.from, ch.to, ch.agent, err)
					cancel()
					return
				}
				requests.Add(1)
				points.Add(int64(ch.to - ch.from))
			}
		}()
	}
	began := time.Now()
	progress := began
produce:
	for a := range agents {
		for from := 0; from < steps; from += c.batch {
			select {
			case work <- chunk{a, from, min(from+c.batch, steps)}:
			case <-wctx.Done():
				break produce
			}
			if time.Since(progress) > 10*time.Second {
				progress = time.Now()
				logger.Info("posting history", "agents_started", a+1, "of", len(agents), "points", points.Load(),
					"points_per_s", int(float64(points.Load())/time.Since(began).Seconds()))
			}
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return time.Time{}, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	rep.LoadSeconds = time.Since(began).Seconds()
	rep.RawPoints, rep.Requests = points.Load(), requests.Load()
	rep.LinesPerS = float64(rep.RawPoints) / rep.LoadSeconds
	logger.Info("history posted", "points", rep.RawPoints, "requests", rep.Requests, "took", time.Since(began).Round(time.Millisecond))
	return now, nil
}

// postLines posts one line-protocol body with an agent's key until it is answered 204, retrying
// 429 and 503 (after Retry-After, else 200ms) for up to histPipeRetryMax.
func postLines(ctx context.Context, hc *http.Client, u, key string, body []byte) error {
	deadline := time.Now().Add(histPipeRetryMax)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Token "+key)
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && time.Now().Before(deadline):
			wait := 200 * time.Millisecond
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		default:
			return fmt.Errorf("status %d: %.300s", resp.StatusCode, msg)
		}
	}
}

// waitCaughtUp waits (up to timeout) until the influx-writer group has written every entry, then
// until every group is drained and, once closed (the newest 1m window closes at closed), the
// rollup store has no window whose ready time has passed and none in flight; it records both
// times since loaded in rep. The 5m, 1h and 1d windows still open stay dirty: queries stitch them
// from the tier below.
func waitCaughtUp(ctx context.Context, b *bench, loaded, closed time.Time, timeout time.Duration, rep *historyReport, logger *slog.Logger) error {
	keys := stream.StreamKeys(b.prefix, benchShards)
	store := rollup.NewStore(b.rdb, b.prefix)
	deadline := loaded.Add(timeout)
	progress := time.Now()
	writerDone := false
	for {
		why := ""
		ok, w, err := stack.Drained(ctx, b.rdb, "influx-writer", keys...)
		if err != nil {
			return err
		}
		if ok && !writerDone {
			writerDone = true
			rep.WriterDrainSeconds = time.Since(loaded).Seconds()
			logger.Info("influx-writer drained", "after", time.Since(loaded).Round(time.Millisecond))
		}
		if !ok {
			why = w
		} else if why, err = rollupState(ctx, b.rdb, store, keys, closed); err != nil {
			return err
		} else if why == "" {
			rep.RollupCatchUpSeconds = time.Since(loaded).Seconds()
			logger.Info("rollup caught up", "after", time.Since(loaded).Round(time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not caught up %s after the load (--catchup-timeout): %s", timeout, why)
		}
		if time.Since(progress) > 10*time.Second {
			progress = time.Now()
			logger.Info("waiting for the pipeline to catch up", "state", why, "since_load", time.Since(loaded).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// rollupState says what the pipeline still has to do once the influx-writer is drained: a group
// not drained, the newest 1m window (closing at closed) not closed yet, or a rollup window ready
// or in flight; "" when nothing.
func rollupState(ctx context.Context, rdb redis.UniversalClient, store *rollup.Store, keys []string, closed time.Time) (string, error) {
	if ok, why, err := stack.Drained(ctx, rdb, "", keys...); err != nil || !ok {
		return why, err
	}
	if time.Now().Before(closed) {
		return "the newest 1m window is not closed yet", nil
	}
	states, err := store.State(ctx, time.Now())
	if err != nil {
		return "", err
	}
	for i, s := range states {
		if s.Ready > 0 || s.Inflight > 0 {
			return fmt.Sprintf("rollup tier %s: %d windows ready, %d in flight", influx.Tiers[i].Name, s.Ready, s.Inflight), nil
		}
	}
	return "", nil
}

// countStored counts what InfluxDB holds after the catch-up: the raw points of field f0 (every
// point posted must be there) and the rows of every rollup tier (one per agent and window).
func countStored(ctx context.Context, influxd *stack.Influxd, rep *historyReport) error {
	count := func(from, field string) (int64, error) {
		rows, err := influxd.Query(ctx, histPipeDB, fmt.Sprintf(`SELECT count(%q) FROM %s`, field, from))
		if err != nil {
			return 0, fmt.Errorf("counting %s in %s: %w", field, from, err)
		}
		if len(rows) == 0 || len(rows[0].Values) == 0 || len(rows[0].Values[0]) < 2 {
			return 0, nil
		}
		n, err := strconv.ParseFloat(fmt.Sprint(rows[0].Values[0][1]), 64)
		if err != nil {
			return 0, fmt.Errorf("counting %s in %s: %w", field, from, err)
		}
		return int64(n), nil
	}
	var err error
	if rep.RawPointsStored, err = count(`"bench"`, "f0"); err != nil {
		return err
	}
	rep.RollupWindows = map[string]int64{}
	for _, t := range influx.Tiers {
		n, err := count(fmt.Sprintf(`"rollup_%s"."bench"`, t.Name), "f0_count")
		if err != nil {
			return err
		}
		rep.RollupWindows[t.Name] = n
		rep.RollupPoints += n
	}
	if rep.RawPointsStored != rep.RawPoints {
		return fmt.Errorf("InfluxDB holds %d raw points of the %d the gateway accepted", rep.RawPointsStored, rep.RawPoints)
	}
	return nil
}

// gatewayRunner runs the queries through the gateway's history API with a session token: one
// series on GET /api/v1/agents/{id}/metrics/history, the fleet on GET /api/v1/metrics/history
// (every agent, group_by agent), the range relative to the gateway's now.
func gatewayRunner(hc *http.Client, gateway, token string) queryRunner {
	return func(ctx context.Context, hq historyQuery, agent string) (history.Result, error) {
		v := url.Values{"metric": {"bench.f0"}, "fn": {"mean"}, "start": {"-" + history.FormatEvery(hq.span)}, "every": {history.FormatEvery(hq.every)}}
		if hq.tier != "" {
			v.Set("tier", hq.tier)
		}
		path := "/api/v1/agents/" + url.PathEscape(agent) + "/metrics/history"
		if hq.fleet {
			path = "/api/v1/metrics/history"
			v.Set("group_by", "agent")
		}
		var res history.Result
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, gateway+path+"?"+v.Encode(), nil)
		if err != nil {
			return res, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return res, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return res, fmt.Errorf("reading answer: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return res, fmt.Errorf("GET %s: status %d: %.300s", path, resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return res, fmt.Errorf("decoding the answer of GET %s: %w", path, err)
		}
		return res, nil
	}
}
