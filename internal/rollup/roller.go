package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// RollerConfig tunes the scheduler loop.
type RollerConfig struct {
	// Grace is added to a window's end before it is computed, for points still on their way.
	Grace time.Duration
	// Interval is how long the loop sleeps when no window is ready.
	Interval time.Duration
	// Lease is how long a claimed window stays with its worker before another may take it over.
	Lease time.Duration
	// Concurrency is how many windows one copy computes at once.
	Concurrency int
	// RetryDelay is how long a window whose computation failed waits before the next attempt.
	RetryDelay time.Duration
}

// Roller is the scheduler loop: it claims ready dirty windows, finest tier first, recomputes each
// from the tier below, writes it (overwriting the previous result: same timestamp and tags),
// marks the parent window dirty and releases the lease.
type Roller struct {
	cfg     RollerConfig
	store   *Store
	db      Influx
	metrics *Metrics
	logger  *slog.Logger
	now     func() time.Time
}

// NewRoller returns a Roller; m may be nil.
func NewRoller(cfg RollerConfig, store *Store, db Influx, m *Metrics, logger *slog.Logger) *Roller {
	return &Roller{cfg: cfg, store: store, db: db, metrics: m, logger: logger.With("component", "rollup"), now: time.Now}
}

// Run computes ready windows until ctx is done. A window being computed when ctx ends is put
// back (dirty, ready at once) for the next copy.
func (r *Roller) Run(ctx context.Context) error {
	for {
		n, err := r.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.logger.Warn("rollup round failed", "err", err)
		}
		if n > 0 && err == nil {
			continue // more may be ready
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.Interval):
		}
	}
}

// RunOnce claims and computes one round of ready windows, finest tier first, and returns how
// many it claimed.
func (r *Roller) RunOnce(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	for tier := range influx.Tiers {
		leases, err := r.store.Claim(ctx, tier, r.now(), r.cfg.Lease, 4*r.cfg.Concurrency)
		if err != nil {
			r.count(tier, "claim")
			errs = append(errs, err)
		}
		total += len(leases)
		r.computeAll(ctx, leases)
	}
	return total, errors.Join(errs...)
}

func (r *Roller) computeAll(ctx context.Context, leases []Lease) {
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, l := range leases {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r.compute(ctx, l)
		})
	}
	wg.Wait()
}

func (r *Roller) count(tier int, stage string) {
	if r.metrics != nil {
		r.metrics.errors.WithLabelValues(influx.Tiers[tier].Name, stage).Inc()
	}
}

// compute recomputes one leased window and releases it.
func (r *Roller) compute(ctx context.Context, l Lease) {
	w := l.Window
	tier := influx.Tiers[w.Tier]
	start := time.Now()
	points, err := r.Window(ctx, w)
	if r.metrics != nil {
		r.metrics.duration.WithLabelValues(tier.Name).Observe(time.Since(start).Seconds())
	}
	// Releasing must happen even when ctx ended (shutdown), or the window waits for its lease.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now := r.now()
	switch {
	case err == nil:
		parentReady := now
		if p, ok := w.Parent(); ok {
			parentReady = p.End().Add(r.cfg.Grace)
		}
		held, rerr := r.store.Done(rctx, l, parentReady, now)
		if rerr != nil {
			// The lease expires and the window is computed again: nothing is lost.
			r.count(w.Tier, "release")
			r.logger.Warn("releasing rollup window failed", "window", w.String(), "err", rerr)
			return
		}
		if !held {
			r.logger.Warn("rollup lease expired before the window was written; it will be computed again", "window", w.String())
		}
		if r.metrics != nil {
			r.metrics.computed.WithLabelValues(tier.Name).Inc()
			r.metrics.points.WithLabelValues(tier.Name).Add(float64(points))
		}
	case errors.Is(err, influx.ErrInvalid):
		// InfluxDB refuses this window's points for good (beyond the tier's retention, most
		// likely): retrying cannot help.
		r.count(w.Tier, "invalid")
		r.logger.Warn("rollup window refused by influxdb; dropped", "window", w.String(), "err", err)
		if rerr := r.store.Drop(rctx, l, now); rerr != nil {
			r.count(w.Tier, "release")
		}
	default:
		retryAt := now.Add(r.cfg.RetryDelay)
		if ctx.Err() != nil {
			retryAt = now // shutting down: the next copy may take it at once
		} else {
			r.count(w.Tier, "compute")
			r.logger.Warn("computing rollup window failed; will retry", "window", w.String(), "err", err, "in", r.cfg.RetryDelay)
		}
		if rerr := r.store.Retry(rctx, l, retryAt); rerr != nil {
			r.count(w.Tier, "release")
		}
	}
}

// Window computes w from the tier below and writes it, returning the number of points (series)
// written. It neither claims nor releases anything: Run does that around it.
func (r *Roller) Window(ctx context.Context, w Window) (int, error) {
	series, err := aggregate(ctx, r.db, w)
	if err != nil {
		return 0, err
	}
	body, n, err := encode(w.Measurement, w.Start, series)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", influx.ErrInvalid, err) // the same data fails the same way
	}
	if err := r.db.WriteBucket(ctx, r.db.TierBucket(influx.Tiers[w.Tier]), body); err != nil {
		return 0, err
	}
	return n, nil
}
