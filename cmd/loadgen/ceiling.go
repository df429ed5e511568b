package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
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
	before := cpuTime()
	var next atomic.Int64
	res := runResult{start: time.Now()}
	res.warmEnd = res.start.Add(min(warmup, cfg.duration/4))
	deadline := res.start.Add(cfg.duration)
	var wg sync.WaitGroup
	for range cfg.concurrency {
		w := &worker{statuses: map[string]int64{}}
		res.workers = append(res.workers, w)
		wg.Go(func() {
			var buf []byte
			for ctx.Err() == nil && time.Now().Before(deadline) {
				n := next.Add(1) - 1
				if n >= cfg.maxRequests {
					return
				}
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
				w.sent++
				w.last = done
				if err == nil {
					w.okAll++
					if !done.Before(res.warmEnd) {
						w.ok++
						w.latencies = append(w.latencies, done.Sub(t0))
					}
					continue
				}
				var he *influxhttp.Error
				status := 0
				if errors.As(err, &he) {
					status = he.StatusCode
				}
				w.statuses[statusKey(status)]++
				if w.statuses[statusKey(status)] == 1 {
					logger.Warn("write failed", "err", err)
				}
				pause(ctx, deadline, outcome{status: status})
			}
		})
	}
	wg.Wait()
	res.end = res.start
	for _, w := range res.workers {
		if w.last.After(res.end) {
			res.end = w.last
		}
	}
	rep := newReport(cfg, res, cfg.ceilingBatch)
	rep.ClientCPUSeconds = (cpuTime() - before).Seconds()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return rep, nil
}
