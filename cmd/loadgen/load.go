package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// stamp is the spacing of consecutive requests' timestamps for one agent: request seq of an agent
// carries base + seq*stamp, so every point of a run is distinct and a run's points lie in a narrow,
// known time range that --verify can count.
const stamp = time.Microsecond

// warmup is the start of a run left out of the rates and latencies (connections are opened, the
// gateway's key cache fills); its requests are still in the ledger.
const warmup = time.Second

// newHTTPClient returns a keep-alive client with an idle connection kept for every worker, so that
// the run measures requests, not TCP handshakes.
func newHTTPClient(concurrency int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        concurrency + 16,
			MaxIdleConnsPerHost: concurrency + 16,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// requester builds the request that sends batch seq of agent a; body is a fresh slice the request
// owns (the transport may still read a body after Do returns, so bodies are never reused).
type requester func(ctx context.Context, a int, seq int64) (*http.Request, error)

// outcome is one answered or failed request, as the workers record it.
type outcome struct {
	status  int // 0: transport error
	latency time.Duration
	done    time.Time
}

// worker is one sender's private tally; tallies are merged after the run, so the hot path takes
// no lock.
type worker struct {
	latencies []time.Duration // of 2xx answers completed after the warm-up
	ok        int64           // 2xx answers after the warm-up
	okAll     int64           // 2xx answers in all
	sent      int64
	statuses  map[string]int64 // non-2xx answers by status ("error" for transport failures)
	acked     []uint64         // ledger: agent<<40 | seq of every 2xx answer
	last      time.Time
}

// run is what one load run measured, before it becomes a report.
type runResult struct {
	start, warmEnd, end time.Time
	workers             []*worker
}

// plan is the shape of a run's traffic.
type plan struct {
	agents, concurrency int
	duration            time.Duration
	maxRequests         int64
	// rate, when above 0, paces the run: request n is due at start + n/rate, whoever sends it,
	// and its latency counts from when it was due, so that a server falling behind shows in the
	// latency instead of slowing the senders down (no coordinated omission). 0: every worker
	// sends its next request as soon as the last one was answered (closed loop).
	rate float64
	// warmup is the start left out of the rates and latencies.
	warmup time.Duration
}

// drive runs p.concurrency workers sending batches round robin over p.agents agents until
// p.duration has passed since the start, p.maxRequests were sent, or ctx is done (a request in
// flight at the deadline is awaited, bounded by the client's timeout). Request n goes to agent
// n%agents as that agent's batch n/agents.
func drive(ctx context.Context, hc *http.Client, p plan, build requester) runResult {
	return runPlan(ctx, p, func() sender {
		return func(ctx context.Context, n int64) outcome {
			return send(ctx, hc, build, int(n%int64(p.agents)), n/int64(p.agents))
		}
	})
}

// sender makes request n of a run and returns its outcome; a 2xx status is a success.
type sender func(ctx context.Context, n int64) outcome

// runPlan is the engine of drive and of --mode ceiling: p.concurrency workers, each with its own
// sender from newSender, make requests 0, 1, ... as drive describes, pacing and pausing as p and
// the outcomes say, and tally what they measured.
func runPlan(ctx context.Context, p plan, newSender func() sender) runResult {
	var next atomic.Int64
	res := runResult{start: time.Now()}
	res.warmEnd = res.start.Add(p.warmup)
	deadline := res.start.Add(p.duration)
	var wg sync.WaitGroup
	for range p.concurrency {
		w := &worker{statuses: map[string]int64{}}
		res.workers = append(res.workers, w)
		do := newSender()
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				n := next.Add(1) - 1
				if n >= p.maxRequests {
					return
				}
				var due time.Time
				if p.rate > 0 {
					due = res.start.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
					if !due.Before(deadline) || !sleepUntil(ctx, due) {
						return
					}
				}
				a, seq := int(n%int64(p.agents)), n/int64(p.agents)
				o := do(ctx, n)
				if !due.IsZero() {
					o.latency = o.done.Sub(due)
				}
				w.sent++
				w.last = o.done
				if o.status/100 == 2 {
					w.okAll++
					w.acked = append(w.acked, uint64(a)<<40|uint64(seq))
					if !o.done.Before(res.warmEnd) {
						w.ok++
						w.latencies = append(w.latencies, o.latency)
					}
					continue
				}
				w.statuses[statusKey(o.status)]++
				pause(ctx, deadline, o)
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
	return res
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func statusKey(status int) string {
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status)
}

// send performs one request and reads the answer to its end so that the connection is reused.
func send(ctx context.Context, hc *http.Client, build requester, a int, seq int64) outcome {
	req, err := build(ctx, a, seq)
	if err != nil {
		return outcome{done: time.Now()}
	}
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return outcome{latency: time.Since(t0), done: time.Now()}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	done := time.Now()
	return outcome{status: resp.StatusCode, latency: done.Sub(t0), done: done}
}

// pause slows a worker down after a failure, as a well-behaved agent would: 429 and 503 say the
// server is saturated, and a transport error (refused connection) would otherwise spin.
func pause(ctx context.Context, deadline time.Time, o outcome) {
	d := 20 * time.Millisecond
	if o.status == http.StatusTooManyRequests || o.status == http.StatusServiceUnavailable {
		d = 200 * time.Millisecond
	}
	d = min(d, time.Until(deadline))
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// runLoad is --mode load: agent batches to the gateway or straight to InfluxDB.
func runLoad(ctx context.Context, cfg config, logger *slog.Logger) (*report, error) {
	hc := newHTTPClient(cfg.concurrency, cfg.timeout)
	defer hc.CloseIdleConnections()
	base := time.Now().Truncate(time.Millisecond)
	runID := strconv.FormatInt(base.UnixMilli(), 36)

	var (
		build requester
		ids   []string
		err   error
	)
	switch cfg.target {
	case "gateway":
		var agents []registered
		agents, err = registerAgents(ctx, hc, cfg, runID, logger)
		if err != nil {
			return nil, err
		}
		for _, a := range agents {
			ids = append(ids, a.ID)
		}
		build = gatewayRequester(cfg.gateway, agents, base, cfg.batchPoints)
	case "influx":
		if err := createInfluxDatabase(ctx, cfg); err != nil {
			return nil, err
		}
		for i := range cfg.agents {
			ids = append(ids, fmt.Sprintf("lg-%s-%d", runID, i))
		}
		build = influxRequester(cfg.influxURL, cfg.influxDB, cfg.influxToken, ids, base, cfg.batchPoints)
	}

	if cfg.onAgents != nil {
		cfg.onAgents(ids)
	}
	logger.Info("sending", "target", cfg.target, "agents", len(ids), "concurrency", cfg.concurrency, "duration", cfg.duration)
	before := cpuTime()
	res := drive(ctx, hc, plan{agents: len(ids), concurrency: cfg.concurrency, duration: cfg.duration,
		maxRequests: cfg.maxRequests, rate: cfg.rate, warmup: min(warmup, cfg.duration/4)}, build)
	if cfg.onSent != nil {
		cfg.onSent()
	}
	rep := newReport(cfg, res, cfg.batchPoints)
	rep.ClientCPUSeconds = (cpuTime() - before).Seconds()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if cfg.verify {
		qURL := cfg.influxURL
		if cfg.verifyURL != "" {
			qURL = cfg.verifyURL
		}
		q, err := newInfluxQL(qURL, cfg.influxDB, cfg.influxToken)
		if err != nil {
			return nil, err
		}
		defer q.close()
		v, err := verify(ctx, q, ids, mergeLedger(res.workers), cfg.batchPoints, base, res, cfg.verifyTimeout, logger)
		if err != nil {
			return nil, err
		}
		rep.Verify = v
	}
	return rep, nil
}

// gatewayRequester posts JSON batches to POST /api/v1/agents/{id}/metrics with each agent's key.
func gatewayRequester(gateway string, agents []registered, base time.Time, points int) requester {
	urls := make([]string, len(agents))
	auths := make([]string, len(agents))
	for i, a := range agents {
		urls[i] = gateway + "/api/v1/agents/" + url.PathEscape(a.ID) + "/metrics"
		auths[i] = "Bearer " + a.APIKey
	}
	size := len(appendJSONBatch(nil, base, 1e6, points))
	return func(ctx context.Context, a int, seq int64) (*http.Request, error) {
		body := appendJSONBatch(make([]byte, 0, size+64), base.Add(time.Duration(seq)*stamp), value(seq), points)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, urls[a], bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", auths[a])
		req.Header.Set("Content-Type", "application/json")
		return req, nil
	}
}

// influxRequester posts the same batches as line protocol to InfluxDB's /api/v2/write.
func influxRequester(influxURL, db, token string, agents []string, base time.Time, points int) requester {
	u := influxURL + "/api/v2/write?" + url.Values{"bucket": {db}, "org": {""}, "precision": {"ns"}}.Encode()
	size := len(appendLineBatch(nil, agents[0], base, 1e6, points))
	return func(ctx context.Context, a int, seq int64) (*http.Request, error) {
		body := appendLineBatch(make([]byte, 0, size+64), agents[a], base.Add(time.Duration(seq)*stamp), value(seq), points)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Token "+token)
		}
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		return req, nil
	}
}

// value is the first field value of batch seq (the others follow it): varied, always finite.
func value(seq int64) float64 { return float64(seq%100_000) / 4 }

// mergeLedger returns every acknowledged (agent, seq) of the run.
func mergeLedger(ws []*worker) []uint64 {
	var n int
	for _, w := range ws {
		n += len(w.acked)
	}
	all := make([]uint64, 0, n)
	for _, w := range ws {
		all = append(all, w.acked...)
	}
	return all
}
