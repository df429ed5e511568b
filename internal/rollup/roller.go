package rollup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

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
	// Concurrency is how many runs of windows one copy computes at once.
	Concurrency int
	// RetryDelay is how long a window whose computation failed waits before the next attempt.
	RetryDelay time.Duration
	// Batch is how many ready windows of a tier one round claims (0: 64 × Concurrency).
	Batch int
	// MaxRun is the most adjacent windows of one measurement computed with one query (0: 60). For
	// coarser tiers it is also capped so that a query reads at most 120 rows of the finer tier
	// per series: 24 5m windows, 10 1h windows, 5 1d windows.
	MaxRun int
}

// Roller is the scheduler loop: it claims ready dirty windows, finest tier first, recomputes them
// from the tier below (adjacent windows of one measurement with one query), writes them
// (overwriting the previous result: same timestamp and tags), marks each parent window dirty and
// releases the leases.
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
	if cfg.Batch <= 0 {
		cfg.Batch = 64 * max(cfg.Concurrency, 1)
	}
	if cfg.MaxRun <= 0 {
		cfg.MaxRun = 60
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	return &Roller{cfg: cfg, store: store, db: db, metrics: m, logger: logger.With("component", "rollup"), now: time.Now}
}

// Run computes ready windows until ctx is done. Windows being computed when ctx ends are put
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
		leases, err := r.store.Claim(ctx, tier, r.now(), r.cfg.Lease, r.cfg.Batch)
		if err != nil {
			r.count(tier, "claim")
			errs = append(errs, err)
		}
		total += len(leases)
		runs := splitRuns(leases, runLimit(tier, r.cfg.MaxRun))
		sem := make(chan struct{}, r.cfg.Concurrency)
		var wg sync.WaitGroup
		for _, run := range runs {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				r.compute(ctx, run)
			})
		}
		wg.Wait()
	}
	return total, errors.Join(errs...)
}

// runLimit returns the most windows of tier computed with one query.
func runLimit(tier, maxRun int) int {
	if tier == 0 {
		return maxRun
	}
	perSeries := int(120 * influx.Tiers[tier-1].Width / influx.Tiers[tier].Width)
	return max(1, min(maxRun, perSeries))
}

// splitRuns groups leases into runs of adjacent windows of one measurement, at most max long.
func splitRuns(leases []Lease, max int) [][]Lease {
	slices.SortFunc(leases, func(a, b Lease) int {
		return cmp.Or(cmp.Compare(a.Window.Measurement, b.Window.Measurement), a.Window.Start.Compare(b.Window.Start))
	})
	var runs [][]Lease
	for i, l := range leases {
		if i > 0 {
			prev := &runs[len(runs)-1]
			last := (*prev)[len(*prev)-1].Window
			if last.Measurement == l.Window.Measurement && last.End().Equal(l.Window.Start) && len(*prev) < max {
				*prev = append(*prev, l)
				continue
			}
		}
		runs = append(runs, []Lease{l})
	}
	return runs
}

func (r *Roller) count(tier int, stage string) {
	if r.metrics != nil {
		r.metrics.errors.WithLabelValues(influx.Tiers[tier].Name, stage).Inc()
	}
}

// compute recomputes a run of leased, adjacent windows of one measurement and releases them.
func (r *Roller) compute(ctx context.Context, run []Lease) {
	first := run[0].Window
	tier := influx.Tiers[first.Tier]
	start := time.Now()
	points, err := r.write(ctx, run)
	if r.metrics != nil {
		r.metrics.duration.WithLabelValues(tier.Name).Observe(time.Since(start).Seconds())
	}
	// Releasing must happen even when ctx ended (shutdown), or the windows wait for their lease.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := r.now()
	what := fmt.Sprintf("%s (%d windows)", first, len(run))
	switch {
	case err == nil:
		for _, l := range run {
			parentReady := now
			if p, ok := l.Window.Parent(); ok {
				parentReady = p.End().Add(r.cfg.Grace)
			}
			held, rerr := r.store.Done(rctx, l, parentReady, now)
			if rerr != nil {
				// The lease expires and the window is computed again: nothing is lost.
				r.count(first.Tier, "release")
				r.logger.Warn("releasing rollup window failed", "window", l.Window.String(), "err", rerr)
				continue
			}
			if !held {
				r.logger.Warn("rollup lease expired before the window was written; it will be computed again", "window", l.Window.String())
			}
		}
		if r.metrics != nil {
			r.metrics.computed.WithLabelValues(tier.Name).Add(float64(len(run)))
			r.metrics.points.WithLabelValues(tier.Name).Add(float64(points))
		}
	case errors.Is(err, influx.ErrInvalid):
		// InfluxDB refuses these points for good (beyond the tier's retention, most likely):
		// retrying cannot help.
		r.count(first.Tier, "invalid")
		r.logger.Warn("rollup windows refused by influxdb; dropped", "windows", what, "err", err)
		for _, l := range run {
			if rerr := r.store.Drop(rctx, l, now); rerr != nil {
				r.count(first.Tier, "release")
			}
		}
	default:
		retryAt := now.Add(r.cfg.RetryDelay)
		if ctx.Err() != nil {
			retryAt = now // shutting down: the next copy may take them at once
		} else {
			r.count(first.Tier, "compute")
			r.logger.Warn("computing rollup windows failed; will retry", "windows", what, "err", err, "in", r.cfg.RetryDelay)
		}
		for _, l := range run {
			if rerr := r.store.Retry(rctx, l, retryAt); rerr != nil {
				r.count(first.Tier, "release")
			}
		}
	}
}

// write computes the run's windows from the tier below with one query and writes them with one
// request, returning the number of points (series × windows) written.
func (r *Roller) write(ctx context.Context, run []Lease) (int, error) {
	first, last := run[0].Window, run[len(run)-1].Window
	aggs, err := aggregate(ctx, r.db, first.Tier, first.Measurement, first.Start, last.End())
	if err != nil {
		return 0, err
	}
	var enc lineprotocol.Encoder
	enc.SetPrecision(lineprotocol.Nanosecond)
	points := 0
	for _, l := range run {
		n, err := encode(&enc, first.Measurement, l.Window.Start, aggs[l.Window.Start.UnixNano()])
		if err != nil {
			return 0, fmt.Errorf("%w: %w", influx.ErrInvalid, err) // the same data fails the same way
		}
		points += n
	}
	if err := r.db.WriteBucket(ctx, r.db.TierBucket(influx.Tiers[first.Tier]), enc.Bytes()); err != nil {
		return 0, err
	}
	return points, nil
}
