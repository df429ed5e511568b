package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// benchResult is the JSON file a bench writes: the summary of the runs and what the other
// measurements found.
type benchResult struct {
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Host     hostInfo       `json:"host"`
	Settings map[string]any `json:"settings"`
	Summary  *summary       `json:"summary,omitempty"`
	// Reports are every run's report, in the order they ran.
	Reports []*report `json:"reports,omitempty"`

	RedisCommands redisCommands `json:"redis_commands"`
	// DrainAfterGatewayS is, per saturated gateway round, how long after the run the workers
	// took to read and acknowledge every entry: the backlog the run left.
	DrainAfterGatewayS []float64 `json:"drain_after_gateway_s"`
	// Reads is the latest-values read at benchReadRate while ingest runs at half load.
	Reads *readsResult `json:"latest_reads,omitempty"`
	// FsyncHalfLoad is how long Redis's AOF fsyncs took during the half-load run (appendfsync
	// always only): every write a request or a worker makes waits for one.
	FsyncHalfLoad *fsyncLatency `json:"redis_fsync_half_load,omitempty"`
	// AlertLatency by load ("idle", "half_load").
	AlertLatency map[string]alertSummary `json:"alert_latency"`
	Telegraf     *telegrafInfo           `json:"telegraf,omitempty"`
	Scale        *scaleResult            `json:"scale,omitempty"`
}

type hostInfo struct {
	CPUs    int    `json:"cpus"`
	LoadAvg string `json:"loadavg_at_start"`
	Go      string `json:"go"`
}

func newBenchResult(cfg config) benchResult {
	load, _ := os.ReadFile("/proc/loadavg")
	return benchResult{
		Started: time.Now().UTC(),
		Host:    hostInfo{CPUs: runtime.NumCPU(), LoadAvg: strings.TrimSpace(string(load)), Go: runtime.Version()},
		Settings: map[string]any{
			"rounds": cfg.rounds, "duration_s": cfg.duration.Seconds(), "connections": cfg.concurrency, "agents": cfg.agents,
			"points_per_request": pointsPerBatch, "values_per_request": pointsPerBatch * valuesPerPoint,
			"influx_writers": cfg.writers, "stream_shards": benchShards, "peer": cfg.peer, "scale": cfg.scale, "redis_appendfsync": cfg.appendfsync, "redis_config": cfg.redisConfig, "background_nice": cfg.backgroundNice,
			"big_points_per_request": benchBigPoints, "read_rate": benchReadRate,
		},
		AlertLatency: map[string]alertSummary{},
	}
}

// redisCommands is what INFO commandstats of the bench's private Redis counted.
type redisCommands struct {
	// Deployment: during each saturated gateway run, every command of every process (gateway
	// and workers) per accepted request.
	Deployment []commandCount `json:"deployment_saturated"`
	// Gateway: the gateway alone (the workers paused), for small and large requests.
	Gateway []commandCount `json:"gateway_alone"`
}

// commandCount is the Redis commands of a number of accepted requests.
type commandCount struct {
	PointsPerRequest int                `json:"points_per_request"`
	Requests         int64              `json:"requests"`
	PerRequest       float64            `json:"per_request"`
	ByCommand        map[string]float64 `json:"by_command"` // per request
}

// parseCommandStats reads INFO commandstats: "cmdstat_<name>:calls=N,usec=..." per command.
func parseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if k, v, _ := strings.Cut(kv, "="); k == "calls" {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					out[strings.TrimPrefix(name, "cmdstat_")] = n
				}
			}
		}
	}
	return out
}

// countCommands returns the commands between two INFO commandstats readings per request; INFO
// (the readings themselves) is left out.
func countCommands(before, after map[string]int64, requests int64, points int) commandCount {
	c := commandCount{PointsPerRequest: points, Requests: requests, ByCommand: map[string]float64{}}
	if requests <= 0 {
		return c
	}
	for name, n := range after {
		d := n - before[name]
		if d <= 0 || name == "info" {
			continue
		}
		c.ByCommand[name] = float64(d) / float64(requests)
		c.PerRequest += float64(d) / float64(requests)
	}
	return c
}

// commandStats reads INFO commandstats of the bench's Redis (nil when it does not answer).
func (b *bench) commandStats(ctx context.Context) map[string]int64 {
	info, err := b.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		fmt.Fprintln(b.out, "warning: INFO commandstats:", err)
		return nil
	}
	return parseCommandStats(info)
}

func (r *benchResult) addDeploymentCommands(before, after map[string]int64, requests int64) {
	if before == nil || after == nil {
		return
	}
	r.RedisCommands.Deployment = append(r.RedisCommands.Deployment, countCommands(before, after, requests, pointsPerBatch))
}

// commandsProbe counts the Redis commands of x's requests with the workers paused (SIGSTOP), so
// that only the gateway's own commands are counted (its background work, a few commands a
// second, included).
func (b *bench) commandsProbe(ctx context.Context, x config) error {
	var before map[string]int64
	x.onAgents = func([]string) {
		for _, w := range b.workers {
			_ = syscall.Kill(w.Pid(), syscall.SIGSTOP)
		}
		before = b.commandStats(ctx)
	}
	defer func() {
		for _, w := range b.workers {
			_ = syscall.Kill(w.Pid(), syscall.SIGCONT)
		}
	}()
	rep, err := runMode(ctx, x, b.logger)
	if err != nil {
		return fmt.Errorf("counting Redis commands: %w", err)
	}
	after := b.commandStats(ctx)
	if before == nil || after == nil {
		return nil
	}
	c := countCommands(before, after, rep.OK, x.batchPoints)
	b.res.RedisCommands.Gateway = append(b.res.RedisCommands.Gateway, c)
	fmt.Fprintf(b.out, "  %d-point requests: %.1f Redis commands per accepted request (%d requests): %s\n",
		x.batchPoints, c.PerRequest, c.Requests, topCommands(c.ByCommand, 8))
	return nil
}

// topCommands formats the n most frequent commands per request.
func topCommands(by map[string]float64, n int) string {
	names := slices.SortedFunc(maps.Keys(by), func(a, b string) int {
		if by[a] != by[b] {
			if by[a] > by[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for i, name := range names {
		if i == n {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", name, by[name]))
	}
	return strings.Join(parts, ", ")
}

// routeLatest is the latest-values read's route, the label of its latency histogram.
const routeLatest = "/api/v1/agents/:id/metrics/latest"

// gatewayDurationMetric is the gateway's per-route latency histogram.
const gatewayDurationMetric = "agentmonitor_gateway_http_request_duration_seconds"

// readsResult is the latest-values read measured at a fixed rate while ingest runs.
type readsResult struct {
	OfferedPerS  float64          `json:"offered_per_s"`
	IngestPerS   float64          `json:"ingest_requests_per_s"` // accepted by the gateway meanwhile
	Requests     int64            `json:"requests"`
	OK           int64            `json:"ok"`
	Non2xx       map[string]int64 `json:"non_2xx"`
	ReadsPerS    float64          `json:"reads_per_s"`
	Client       latencyMS        `json:"client_ms"` // from when each read was due
	Handler      histQuantiles    `json:"handler_ms"`
	HandlerError string           `json:"handler_error,omitempty"`
}

// histQuantiles are quantiles estimated from a histogram's buckets, as Prometheus's
// histogram_quantile does (linear within a bucket).
type histQuantiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
}

// bucketCounts maps a histogram's bucket upper bounds (seconds, +Inf included) to cumulative
// counts.
type bucketCounts map[float64]uint64

// parseHistogram returns the buckets of metric name in the Prometheus text exposition, summed
// over the series whose labels include every label of want (a value ending in "*" matches by
// prefix).
func parseHistogram(r io.Reader, name string, want map[string]string) (bucketCounts, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	fam, ok := families[name]
	if !ok {
		return nil, fmt.Errorf("no metric %s", name)
	}
	out := bucketCounts{}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if !labelsMatch(labels, want) || m.GetHistogram() == nil {
			continue
		}
		h := m.GetHistogram()
		inf := false
		for _, bk := range h.GetBucket() {
			out[bk.GetUpperBound()] += bk.GetCumulativeCount()
			inf = inf || math.IsInf(bk.GetUpperBound(), 1)
		}
		if !inf { // the +Inf bucket is the sample count
			out[math.Inf(1)] += h.GetSampleCount()
		}
	}
	return out, nil
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if p, ok := strings.CutSuffix(v, "*"); ok {
			if !strings.HasPrefix(have[k], p) {
				return false
			}
		} else if have[k] != v {
			return false
		}
	}
	return true
}

// quantiles returns the p50 and p99 (ms) of the observations between two readings of the same
// histogram.
func quantiles(before, after bucketCounts) histQuantiles {
	bounds := slices.Sorted(maps.Keys(after))
	cum := make([]uint64, len(bounds))
	for i, ub := range bounds {
		if after[ub] > before[ub] {
			cum[i] = after[ub] - before[ub]
		}
	}
	if len(cum) == 0 || cum[len(cum)-1] == 0 {
		return histQuantiles{}
	}
	total := cum[len(cum)-1]
	q := func(p float64) float64 {
		rank := p * float64(total)
		for i, c := range cum {
			if float64(c) < rank {
				continue
			}
			if math.IsInf(bounds[i], 1) { // beyond the largest finite bound: that bound
				if i == 0 {
					return 0
				}
				return bounds[i-1] * 1000
			}
			lower, below := 0.0, uint64(0)
			if i > 0 {
				lower, below = bounds[i-1], cum[i-1]
			}
			if c == below {
				return bounds[i] * 1000
			}
			return (lower + (bounds[i]-lower)*(rank-float64(below))/float64(c-below)) * 1000
		}
		return bounds[len(bounds)-1] * 1000
	}
	return histQuantiles{Count: total, P50: q(0.50), P99: q(0.99)}
}

// scrapeLatest reads the gateway's latency histogram of the latest-values read (2xx answers).
func (b *bench) scrapeLatest(ctx context.Context, hc *http.Client) (bucketCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.gateway+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/metrics: %w", b.gateway, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: status %d", b.gateway, resp.StatusCode)
	}
	return parseHistogram(resp.Body, gatewayDurationMetric, map[string]string{"route": routeLatest, "method": "GET", "code": "2*"})
}

// readsUnderLoad runs ingest x at rate half and, from half a second after its start, reads the
// latest values of its agents at benchReadRate through the admin's session.
func (b *bench) readsUnderLoad(ctx context.Context, x config, half float64) error {
	x.rate = half
	done := make(chan *readsResult, 1)
	x.onAgents = func(ids []string) {
		go func() { done <- b.reads(ctx, ids, x.duration-time.Second) }()
	}
	rep, err := b.measure(ctx, x)
	if err != nil {
		return err
	}
	r := <-done
	r.IngestPerS = rep.RequestsPerS
	b.res.Reads = r
	fmt.Fprintf(b.out, "  latest-values reads: %.0f/s offered, %.0f/s answered 2xx, client p50 %.2f ms p99 %.2f ms, handler (histogram) p50 %.2f ms p99 %.2f ms %s\n",
		r.OfferedPerS, r.ReadsPerS, r.Client.P50, r.Client.P99, r.Handler.P50, r.Handler.P99, r.HandlerError)
	return nil
}

// reads GETs /api/v1/agents/{id}/metrics/latest of ids round robin at benchReadRate for d,
// open loop, after a pause that lets every agent get its first batch.
func (b *bench) reads(ctx context.Context, ids []string, d time.Duration) *readsResult {
	r := &readsResult{OfferedPerS: benchReadRate, Non2xx: map[string]int64{}}
	if !sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
		return r
	}
	hc := newHTTPClient(64, 5*time.Second)
	defer hc.CloseIdleConnections()
	urls := make([]string, len(ids))
	for i, id := range ids {
		urls[i] = b.gateway + "/api/v1/agents/" + url.PathEscape(id) + "/metrics/latest"
	}
	auth := "Bearer " + b.token
	before, herr := b.scrapeLatest(ctx, hc)
	res := runPlan(ctx, plan{agents: len(ids), concurrency: 64, duration: d, maxRequests: math.MaxInt64, rate: benchReadRate, warmup: 500 * time.Millisecond},
		func() sender {
			return func(ctx context.Context, n int64) outcome {
				return send(ctx, hc, func(ctx context.Context, a int, _ int64) (*http.Request, error) {
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, urls[a], nil)
					if err == nil {
						req.Header.Set("Authorization", auth)
					}
					return req, err
				}, int(n%int64(len(ids))), 0)
			}
		})
	after, aerr := b.scrapeLatest(ctx, hc)
	rep := newReport(config{mode: "load", label: "reads"}, res, 0)
	r.Requests, r.OK, r.Non2xx, r.ReadsPerS, r.Client = rep.Requests, rep.OK, rep.Non2xx, rep.RequestsPerS, rep.LatencyMS
	if herr == nil {
		herr = aerr
	}
	if herr != nil {
		r.HandlerError = herr.Error()
	} else {
		r.Handler = quantiles(before, after)
	}
	return r
}

// finish summarizes the runs, adds the other measurements to the budget, prints the table,
// writes the JSON result and returns the exit code.
func (b *bench) finish(stdout io.Writer) (int, error) {
	s, err := summarize(b.results)
	if err != nil {
		return 1, err
	}
	if r := b.res.Reads; r != nil && r.Handler.Count > 0 {
		s.Ratios = append(s.Ratios, ratio{Name: "latest-values read, handler p99 at 1k/s (ms)", PerRound: []float64{r.Handler.P99},
			Median: r.Handler.P99, Budget: fmt.Sprintf("≤ %g ms", budgetReadP99), Met: r.Handler.P99 <= budgetReadP99})
	}
	for _, load := range []string{"idle", "half_load"} {
		if a, ok := b.res.AlertLatency[load]; ok && a.Samples > 0 {
			p99 := a.WebSocket.P99
			s.Ratios = append(s.Ratios, ratio{Name: "alert latency → WebSocket p99, " + strings.ReplaceAll(load, "_", " ") + " (ms)", PerRound: []float64{p99},
				Median: p99, Budget: fmt.Sprintf("≤ %g ms", budgetAlertP99), Met: p99 <= budgetAlertP99 && a.Missed == 0})
		}
	}
	b.res.Summary = s
	fmt.Fprintln(stdout)
	printSummary(stdout, *s, b.results)
	b.printExtras(stdout)
	if err := b.writeResult(stdout); err != nil {
		return 1, err
	}
	return summaryCode(s, b.cfg.strict), nil
}

// printExtras prints the workers' catch-up, the Redis commands, reads and alert latency.
func (b *bench) printExtras(w io.Writer) {
	if d := b.res.DrainAfterGatewayS; len(d) > 0 {
		fmt.Fprintf(w, "\nWorkers (nice %d) caught up with the saturated gateway runs %s s after each ended (median %.1f s)\n",
			b.cfg.backgroundNice, strings.Trim(fmt.Sprintf("%.1f", d), "[]"), median(d))
	}
	rc := b.res.RedisCommands
	if len(rc.Deployment)+len(rc.Gateway) > 0 {
		fmt.Fprintln(w, "\nRedis commands per accepted request (INFO commandstats of the bench's own Redis):")
		var per []float64
		for _, c := range rc.Deployment {
			per = append(per, c.PerRequest)
		}
		if len(per) > 0 {
			last := rc.Deployment[len(rc.Deployment)-1]
			fmt.Fprintf(w, "  whole deployment, saturated gateway runs (median of %d): %.1f   last run: %s\n", len(per), median(per), topCommands(last.ByCommand, 10))
		}
		for _, c := range rc.Gateway {
			fmt.Fprintf(w, "  gateway alone, %4d-point requests: %.1f   %s\n", c.PointsPerRequest, c.PerRequest, topCommands(c.ByCommand, 10))
		}
	}
	if r := b.res.Reads; r != nil {
		fmt.Fprintf(w, "\nLatest-values read at %.0f/s (ingest meanwhile %.0f req/s): %.0f/s answered 2xx (non-2xx %v)\n", r.OfferedPerS, r.IngestPerS, r.ReadsPerS, r.Non2xx)
		fmt.Fprintf(w, "  client p50 %.2f ms, p99 %.2f ms;  handler (gateway histogram, %d reads) p50 %.2f ms, p99 %.2f ms %s\n",
			r.Client.P50, r.Client.P99, r.Handler.Count, r.Handler.P50, r.Handler.P99, r.HandlerError)
	}
	if f := b.res.FsyncHalfLoad; f != nil {
		fmt.Fprintf(w, "\nRedis AOF fsync during the half-load run (%s): %s\n", fsyncEvent, f)
	}
	if len(b.res.AlertLatency) > 0 {
		fmt.Fprintln(w, "\nAlert latency from the sample's POST (Redis hz 10, default):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "load\tsamples\tmissed\t→PUBLISH p50\tp99\t→WebSocket p50\tp99\t")
		for _, load := range []string{"idle", "half_load"} {
			a, ok := b.res.AlertLatency[load]
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", load, a.Samples, a.Missed, a.PubSub.P50, a.PubSub.P99, a.WebSocket.P50, a.WebSocket.P99)
		}
		tw.Flush()
	}
	if t := b.res.Telegraf; t != nil && t.Error != "" {
		fmt.Fprintf(w, "\nTelegraf: %s\n", t.Error)
	}
}

// writeResult writes the JSON result to --out or .data/bench/<time>.json.
func (b *bench) writeResult(w io.Writer) error {
	b.res.Finished = time.Now().UTC()
	path := b.cfg.out
	if path == "" {
		path = filepath.Join(b.root, ".data", "bench", b.res.Started.Format("20060102T150405Z")+".json")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	j, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the result: %w", err)
	}
	if err := os.WriteFile(path, append(j, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the result: %w", err)
	}
	fmt.Fprintf(w, "\nResult: %s\n", path)
	return nil
}
