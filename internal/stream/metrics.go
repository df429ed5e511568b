package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/ops"
)

const (
	namespace = "agentmonitor"
	subsystem = "stream"
)

// consumerMetrics are one consumer's instruments, curried with its group.
type consumerMetrics struct {
	acked     prometheus.Counter
	dead      *prometheus.CounterVec // by reason class
	batch     prometheus.Observer
	duration  prometheus.Observer
	retries   prometheus.Counter
	reclaimed prometheus.Counter
}

func newConsumerMetrics(reg prometheus.Registerer, group string) (*consumerMetrics, error) {
	var errs []error
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
		}, append([]string{"group"}, labels...))
		v, err := ops.Register(reg, v)
		errs = append(errs, err)
		return v
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets,
		}, []string{"group"})
		v, err := ops.Register(reg, v)
		errs = append(errs, err)
		return v
	}
	g := prometheus.Labels{"group": group}
	m := &consumerMetrics{
		acked: counter("acked_total", "Stream entries acked by the group's consumers (handled, dead-lettered or vanished).").With(g),
		dead: counter("dead_letters_total", "Stream entries moved to the dead-letter stream, by reason: rejected, undecodable, max_deliveries.",
			"reason").MustCurryWith(g),
		batch: histogram("batch_entries", "Entries per batch handed to the handler.",
			prometheus.ExponentialBuckets(1, 2, 14)).With(g),
		duration: histogram("handler_duration_seconds", "Time one handler call took, failed calls included.",
			prometheus.ExponentialBuckets(0.0005, 2, 16)).With(g),
		retries:   counter("handler_retries_total", "Handler calls that failed and were retried.").With(g),
		reclaimed: counter("reclaimed_total", "Entries reclaimed from consumers that left them idle.").With(g),
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering stream metrics: %w", err)
	}
	return m, nil
}

// CollectorConfig configures a Collector.
type CollectorConfig struct {
	// Prefix is prepended to every Redis key.
	Prefix string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
	// Shards is the number of metrics streams.
	Shards int `env:"STREAM_SHARDS" envDefault:"4" help:"number of metrics streams (shards); the same for every binary"`
	// Timeout bounds the Redis calls of one scrape; 0 means 2s.
	Timeout time.Duration
	// Extra are further streams whose length is shown (the alerts stream, other dead letters),
	// so that every stream of the deployment has a length gauge.
	Extra []string
}

// Collector is a prometheus.Collector that reads, at each scrape, the length of every metrics
// stream and of the dead-letter stream (XLEN), and for every consumer group on each metrics stream
// its pending entries and lag (XINFO GROUPS). A scrape that cannot reach Redis reports
// agentmonitor_stream_up 0 instead of failing.
type Collector struct {
	client  redis.UniversalClient
	keys    []string
	deadKey string
	extra   []string
	timeout time.Duration
	logger  *slog.Logger

	length, pending, lag, up *prometheus.Desc
}

// NewCollector returns a Collector for the streams of cfg; the caller registers it. A nil logger
// discards logs.
func NewCollector(client redis.UniversalClient, cfg CollectorConfig, logger *slog.Logger) (*Collector, error) {
	if client == nil {
		return nil, errors.New("creating stream collector: nil redis client")
	}
	if cfg.Shards == 0 {
		cfg.Shards = 4
	}
	if cfg.Shards < 0 || cfg.Shards > 1024 {
		return nil, fmt.Errorf("creating stream collector: STREAM_SHARDS=%d: want 1 to 1024", cfg.Shards)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	name := func(n string) string { return prometheus.BuildFQName(namespace, subsystem, n) }
	return &Collector{
		client:  client,
		keys:    StreamKeys(cfg.Prefix, cfg.Shards),
		deadKey: DeadLetterKey(cfg.Prefix),
		extra:   cfg.Extra,
		timeout: cfg.Timeout,
		logger:  logger.With("component", "stream.collector"),
		length:  prometheus.NewDesc(name("length"), "Entries held in the stream (XLEN), acked or not, until trimmed.", []string{"stream"}, nil),
		pending: prometheus.NewDesc(name("group_pending"), "Entries delivered to the group's consumers and not yet acked.", []string{"stream", "group"}, nil),
		lag:     prometheus.NewDesc(name("group_lag"), "Entries in the stream not yet delivered to the group (-1 when Redis cannot tell).", []string{"stream", "group"}, nil),
		up:      prometheus.NewDesc(name("up"), "Whether the last scrape could read the streams from Redis.", nil, nil),
	}, nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.length
	ch <- c.pending
	ch <- c.lag
	ch <- c.up
}

// Collect implements prometheus.Collector; it makes one pipelined round trip to Redis.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	pipe := c.client.Pipeline()
	keys := append(append(append([]string(nil), c.keys...), c.deadKey), c.extra...)
	lens := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		lens[i] = pipe.XLen(ctx, k)
	}
	groups := make([]*redis.XInfoGroupsCmd, len(c.keys))
	for i, k := range c.keys {
		groups[i] = pipe.XInfoGroups(ctx, k)
	}
	_, _ = pipe.Exec(ctx) // per-command errors below: a missing stream answers XINFO with an error
	up := 1.0
	for i, k := range keys {
		if err := lens[i].Err(); err != nil {
			up = 0
			c.logger.Warn("reading stream length failed", "stream", k, "err", err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.length, prometheus.GaugeValue, float64(lens[i].Val()), k)
	}
	for i, k := range c.keys {
		for _, g := range groups[i].Val() {
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(g.Pending), k, g.Name)
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(g.Lag), k, g.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
}
