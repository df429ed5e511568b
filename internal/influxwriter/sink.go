// Package influxwriter is the influx-writer worker: it takes batches of metrics entries from the
// stream and writes them to InfluxDB, acking only what InfluxDB stored and dead-lettering only the
// entries InfluxDB refuses.
package influxwriter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Writer writes line protocol to InfluxDB in one request; *influx.Client implements it. An error
// matching influx.ErrInvalid or influx.ErrTooLarge means InfluxDB refused the data (part of it may
// have been written); any other error is transient.
type Writer interface {
	Write(ctx context.Context, body []byte) error
}

// Sink is the influx-writer's stream.Handler: see Handle. It is safe for concurrent use.
type Sink struct {
	w      Writer
	logger *slog.Logger

	points     prometheus.Counter
	rejected   prometheus.Counter
	errors     *prometheus.CounterVec
	latency    prometheus.Histogram
	batchBytes prometheus.Histogram
}

// NewSink returns a sink writing through w. Its metrics (namespace agentmonitor, subsystem
// influxwriter) are registered on reg when it is not nil; a sink built again on the same registry
// shares the instruments already there.
func NewSink(w Writer, logger *slog.Logger, reg prometheus.Registerer) *Sink {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "agentmonitor", Subsystem: "influxwriter", Name: name, Help: help}
	}
	s := &Sink{
		w:      w,
		logger: logger.With("component", "influxwriter.sink"),
		points: prometheus.NewCounter(prometheus.CounterOpts(opts("points_written_total",
			"Points of handled entries that InfluxDB stored (each entry counted once, rejected entries not at all)."))),
		rejected: prometheus.NewCounter(prometheus.CounterOpts(opts("entries_rejected_total",
			"Stream entries InfluxDB refused as invalid or too large, handed to the dead-letter stream."))),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("write_errors_total",
			"Failed write requests to InfluxDB, by class: invalid, too_large, transient.")), []string{"class"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agentmonitor", Subsystem: "influxwriter", Name: "write_duration_seconds",
			Help:    "Duration of one write request to InfluxDB, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agentmonitor", Subsystem: "influxwriter", Name: "batch_bytes",
			Help:    "Size of the line-protocol body built from one batch of entries.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10),
		}),
	}
	s.points = register(reg, s.points, s.logger)
	s.rejected = register(reg, s.rejected, s.logger)
	s.errors = register(reg, s.errors, s.logger)
	s.latency = register(reg, s.latency, s.logger)
	s.batchBytes = register(reg, s.batchBytes, s.logger)
	return s
}

// register is ops.Register for NewSink, which has no error to return: metrics must not stop the
// writer, so a registration failure is logged.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, logger *slog.Logger) C {
	c, err := ops.Register(reg, c)
	if err != nil {
		logger.Error("registering influx-writer metrics", "err", err)
	}
	return c
}

// Handle writes the batch to InfluxDB: the payloads (canonical line protocol) concatenated into one
// body, written once. When InfluxDB refuses the data (invalid or too large) it writes each half
// again, recursively, so that every valid entry is stored and only the single entries InfluxDB
// refuses on their own are Rejected, with InfluxDB's answer as the reason. Writing a point twice is
// harmless: the same measurement, tags and time overwrite it. It returns nil once every entry not
// Rejected is stored, or the first transient error (unwrapping to a stream.RetryAfterError when
// InfluxDB gave Retry-After): then the consumer retries the whole batch.
func (s *Sink) Handle(ctx context.Context, batch []*stream.Message) error {
	// offs[i] is where entry i starts in body; offs[len(batch)] is the end.
	offs := make([]int, len(batch)+1)
	size := 0
	for _, m := range batch {
		size += len(payload(m)) + 1
	}
	body := make([]byte, 0, size)
	for i, m := range batch {
		offs[i] = len(body)
		body = append(body, payload(m)...)
		if len(body) > offs[i] && body[len(body)-1] != '\n' {
			body = append(body, '\n') // keep entries on their own lines
		}
	}
	offs[len(batch)] = len(body)
	s.batchBytes.Observe(float64(len(body)))

	if err := s.writeRange(ctx, batch, body, offs, 0, len(batch)); err != nil {
		return fmt.Errorf("handling batch of %d entries: %w", len(batch), err)
	}
	points := 0
	for i, m := range batch {
		if m.Rejected() == nil {
			points += bytes.Count(body[offs[i]:offs[i+1]], []byte{'\n'})
		}
	}
	s.points.Add(float64(points))
	return nil
}

func payload(m *stream.Message) []byte {
	if m.Msg == nil {
		return nil
	}
	return m.Msg.Payload
}

// writeRange writes entries [lo, hi) and bisects on refusal. It returns only transient errors.
func (s *Sink) writeRange(ctx context.Context, batch []*stream.Message, body []byte, offs []int, lo, hi int) error {
	if offs[lo] == offs[hi] {
		return nil // no entries, or only empty ones: nothing to store
	}
	start := time.Now()
	err := s.w.Write(ctx, body[offs[lo]:offs[hi]])
	s.latency.Observe(time.Since(start).Seconds())
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, influx.ErrTooLarge):
		s.errors.WithLabelValues("too_large").Inc()
	case errors.Is(err, influx.ErrInvalid):
		s.errors.WithLabelValues("invalid").Inc()
	default:
		s.errors.WithLabelValues("transient").Inc()
		return err
	}
	if hi-lo == 1 {
		m := batch[lo]
		m.Reject(err)
		s.rejected.Inc()
		s.logger.Warn("influxdb refused a stream entry; dead-lettering it", "stream", m.Stream, "id", m.ID, "err", err)
		return nil
	}
	mid := lo + (hi-lo)/2
	if err := s.writeRange(ctx, batch, body, offs, lo, mid); err != nil {
		return err
	}
	return s.writeRange(ctx, batch, body, offs, mid, hi)
}
