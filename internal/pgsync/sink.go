// Package pgsync is the pg-sync worker: it reads agent batches from the metrics streams and moves
// each agent's last_seen in PostgreSQL forward, one coalesced statement per batch.
package pgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Sink is the pg-sync stream handler. It is safe for concurrent use.
type Sink struct {
	store  *postgres.AgentStore
	logger *slog.Logger
	now    func() time.Time

	flushAgents  prometheus.Histogram
	flushSeconds prometheus.Histogram
	flushErrors  prometheus.Counter
	rejected     prometheus.Counter
}

// NewSink returns a Sink that writes to store and registers its metrics on reg (nil: not
// registered). Registering twice on one registry reuses the metrics already there.
func NewSink(store *postgres.AgentStore, logger *slog.Logger, reg prometheus.Registerer) *Sink {
	s := &Sink{
		store:  store,
		logger: logger.With("component", "pgsync"),
		now:    time.Now,
		flushAgents: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agentmonitor", Subsystem: "pgsync", Name: "flush_agents",
			Help:    "Distinct agents whose last_seen one flush updated.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		})),
		flushSeconds: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agentmonitor", Subsystem: "pgsync", Name: "flush_duration_seconds",
			Help:    "Time one last_seen UPDATE took, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		})),
		flushErrors: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agentmonitor", Subsystem: "pgsync", Name: "flush_errors_total",
			Help: "last_seen UPDATEs that failed; their batch is retried.",
		})),
		rejected: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agentmonitor", Subsystem: "pgsync", Name: "rejected_total",
			Help: "Stream entries rejected (dead-lettered) for missing or garbled metadata.",
		})),
	}
	return s
}

// register is ops.Register for metrics built where no error can be returned: a clash is a
// programming error, and the metric then works unexported.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, _ = ops.Register(reg, c)
	return c
}

// Handle is a stream.Handler. It reads each message's agent id (metadata stream.MetaAgent) and the
// time the gateway accepted the batch (stream.MetaReceivedAt, Unix nanoseconds): last_seen is that
// time, not the points' own timestamps, so back- or forward-dated points cannot fake liveness. It
// keeps the latest time per agent and writes them all with one AgentStore.TouchLastSeen. A message
// with missing or garbled metadata is Rejected with the reason (the consumer dead-letters it) and
// the others proceed. A database error is returned as is: it is transient, and the consumer
// retries the whole batch, which is harmless because last_seen only moves forward.
func (s *Sink) Handle(ctx context.Context, batch []*stream.Message) error {
	seen := make(map[string]time.Time, len(batch))
	// ids maps each agent metadata value seen in the batch to its canonical id, so that an
	// agent's many entries in a batch parse its UUID once.
	ids := make(map[string]string)
	now := s.now()
	for _, m := range batch {
		agent, at, err := parseMeta(m, ids)
		if err != nil {
			m.Reject(err)
			s.rejected.Inc()
			s.logger.Debug("rejecting entry", "stream", m.Stream, "id", m.ID, "err", err)
			continue
		}
		// A gateway whose clock runs ahead must not push last_seen into the future, where
		// GREATEST would pin it: the entry was accepted by now at the latest.
		if at.After(now) {
			at = now
		}
		if prev, ok := seen[agent]; !ok || at.After(prev) {
			seen[agent] = at
		}
	}
	if len(seen) == 0 {
		return nil
	}
	start := time.Now()
	err := s.store.TouchLastSeen(ctx, seen)
	s.flushSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.flushErrors.Inc()
		return fmt.Errorf("flushing last_seen: %w", err)
	}
	s.flushAgents.Observe(float64(len(seen)))
	return nil
}

// parseMeta returns the agent id (lowercased canonical UUID) and acceptance time of a message.
// ids caches the canonical ids of the agent values already parsed.
func parseMeta(m *stream.Message, ids map[string]string) (string, time.Time, error) {
	if m.Msg == nil {
		return "", time.Time{}, errors.New("entry has no message")
	}
	agent := m.Msg.Metadata.Get(stream.MetaAgent)
	if agent == "" {
		return "", time.Time{}, fmt.Errorf("metadata %q is missing", stream.MetaAgent)
	}
	id, ok := ids[agent]
	if !ok {
		u, err := uuid.Parse(agent)
		if err != nil || len(agent) != 36 {
			return "", time.Time{}, fmt.Errorf("metadata %q = %q is not a UUID", stream.MetaAgent, agent)
		}
		id = u.String()
		ids[agent] = id
	}
	raw := m.Msg.Metadata.Get(stream.MetaReceivedAt)
	if raw == "" {
		return "", time.Time{}, fmt.Errorf("metadata %q is missing", stream.MetaReceivedAt)
	}
	ns, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || ns <= 0 {
		return "", time.Time{}, fmt.Errorf("metadata %q = %q is not positive Unix nanoseconds", stream.MetaReceivedAt, raw)
	}
	return id, time.Unix(0, ns).UTC(), nil
}
