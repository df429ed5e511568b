package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// runCeiling is --mode ceiling: InfluxDB's own ceiling for the run's kind of points, written the
// way InfluxDB is meant to be fed: batches of --ceiling-batch points through the official client's
// blocking write API, --concurrency writers. The points have the shape of the agent batches (six
// measurements, tags agent and host, five float fields) over --agents agents.
func runCeiling(ctx context.Context, cfg config, logger *slog.Logger) (*report, error) {
	hc := newHTTPClient(cfg.concurrency, cfg.timeout)
	defer hc.CloseIdleConnections()
	if err := createInfluxDatabase(ctx, cfg); err != nil {
		return nil, err
	}
	client := influxdb2.NewClientWithOptions(cfg.influxURL, cfg.influxToken,
		influxdb2.DefaultOptions().SetHTTPClient(hc).SetPrecision(time.Nanosecond))
	defer client.Close()
	// Blocking writes with batches built here, as influx-writer does (PITFALLS.md: the
	// non-blocking API drops data).
	write := client.WriteAPIBlocking("", cfg.influxDB)

	base := time.Now().Truncate(time.Millisecond)
	runID := strconv.FormatInt(base.UnixMilli(), 36)
	agents := make([]string, cfg.agents)
	for i := range agents {
		agents[i] = fmt.Sprintf("ceil-%s-%d", runID, i)
	}
	series := int64(cfg.agents * len(measurements))
	batch := int64(cfg.ceilingBatch)

	logger.Info("writing to InfluxDB directly", "batch", batch, "concurrency", cfg.concurrency, "duration", cfg.duration)
	if cfg.onAgents != nil {
		cfg.onAgents(agents)
	}
	before := cpuTime()
	p := plan{agents: cfg.agents, concurrency: cfg.concurrency, duration: cfg.duration,
		maxRequests: cfg.maxRequests, warmup: min(warmup, cfg.duration/4)}
	res := runPlan(ctx, p, func() sender {
		var buf []byte
		logged := map[int]bool{}
		return func(ctx context.Context, n int64) outcome {
			// Point k of the run: series k%series, at base + (k/series)*stamp, so that every
			// point is distinct and every batch spreads over all series.
			buf = buf[:0]
			for k := n * batch; k < (n+1)*batch; k++ {
				s := k % series
				buf = appendLine(buf, measurements[s%int64(len(measurements))], agents[s/int64(len(measurements))],
					base.Add(time.Duration(k/series)*stamp).UnixNano(), value(k))
			}
			t0 := time.Now()
			err := write.WriteRecord(ctx, string(buf[:len(buf)-1]))
			done := time.Now()
			if err == nil {
				return outcome{status: http.StatusNoContent, latency: done.Sub(t0), done: done}
			}
			var he *influxhttp.Error
			status := 0
			if errors.As(err, &he) {
				status = he.StatusCode
			}
			if !logged[status] {
				logged[status] = true
				logger.Warn("write failed", "err", err)
			}
			return outcome{status: status, latency: done.Sub(t0), done: done}
		}
	})
	if cfg.onSent != nil {
		cfg.onSent()
	}
	rep := newReport(cfg, res, cfg.ceilingBatch)
	rep.ClientCPUSeconds = (cpuTime() - before).Seconds()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return rep, nil
}
