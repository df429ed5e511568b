package rollup

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// Metrics are the rollup's instruments (namespace agentmonitor, subsystem rollup). The waiting
// windows are read from Redis at each scrape, so they are the same whichever copy is scraped.
type Metrics struct {
	marked   prometheus.Counter
	computed *prometheus.CounterVec
	points   *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec

	store  *Store
	logger *slog.Logger
	now    func() time.Time

	dirty, ready, inflight, oldest, up *prometheus.Desc
}

// NewMetrics builds the instruments and the collector of the waiting windows in store.
func NewMetrics(store *Store, logger *slog.Logger) *Metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "agentmonitor", Subsystem: "rollup", Name: name, Help: help}
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("agentmonitor", "rollup", name), help, labels, nil)
	}
	return &Metrics{
		marked: prometheus.NewCounter(prometheus.CounterOpts(opts("marked_windows_total",
			"1m windows marked dirty from stream batches (a window marked by several batches counts each time)."))),
		computed: prometheus.NewCounterVec(prometheus.CounterOpts(opts("windows_computed_total",
			"Rollup windows computed and written, by tier.")), []string{"tier"}),
		points: prometheus.NewCounterVec(prometheus.CounterOpts(opts("points_written_total",
			"Rollup points (one per series and window) written, by tier.")), []string{"tier"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("errors_total",
			"Rollup failures by tier and stage: mark, claim, compute, write (retried), invalid (dropped), release.")), []string{"tier", "stage"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "agentmonitor", Subsystem: "rollup", Name: "window_duration_seconds",
			Help:    "Time to compute and write one window, failed ones included, by tier.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"tier"}),
		store:    store,
		logger:   logger.With("component", "rollup.metrics"),
		now:      time.Now,
		dirty:    desc("dirty_windows", "Windows marked dirty and not yet claimed, closed or not, by tier.", "tier"),
		ready:    desc("ready_windows", "Dirty windows whose ready time (end plus grace) has passed, by tier.", "tier"),
		inflight: desc("inflight_windows", "Windows being computed (leased), by tier.", "tier"),
		oldest: desc("oldest_ready_age_seconds",
			"How long the oldest dirty window of the tier has been ready and is still not computed; 0 when none.", "tier"),
		up: desc("state_up", "Whether the last scrape could read the rollup state from Redis."),
	}
}

// Register registers the instruments and the collector on reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.marked, m.computed, m.points, m.errors, m.duration, m} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Describe implements prometheus.Collector for the waiting-window gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.dirty, m.ready, m.inflight, m.oldest, m.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads every tier's sets from Redis.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	now := m.now()
	states, err := m.store.State(ctx, now)
	if err != nil {
		m.logger.Warn("reading rollup state failed", "err", err)
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, 1)
	for i, s := range states {
		tier := influx.Tiers[i].Name
		age := 0.0
		if !s.OldestReady.IsZero() && s.OldestReady.Before(now) {
			age = now.Sub(s.OldestReady).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(m.dirty, prometheus.GaugeValue, float64(s.Dirty), tier)
		ch <- prometheus.MustNewConstMetric(m.ready, prometheus.GaugeValue, float64(s.Ready), tier)
		ch <- prometheus.MustNewConstMetric(m.inflight, prometheus.GaugeValue, float64(s.Inflight), tier)
		ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, age, tier)
	}
}
