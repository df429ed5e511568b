package alerter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// HistoryGroup is the consumer group on the alerts stream that records history.
const HistoryGroup = "alert-history"

// Measurement is the InfluxDB measurement of alert events.
const Measurement = "alerts"

// EventInserter stores alert events, skipping ids already stored; *postgres.AlertEventStore
// implements it.
type EventInserter interface {
	Insert(ctx context.Context, events []postgres.AlertEvent) error
}

// Writer writes line protocol to InfluxDB; *influx.Client implements it (errors matching
// influx.ErrInvalid or influx.ErrTooLarge are the data's fault, any other is transient).
type Writer interface {
	Write(ctx context.Context, body []byte) error
}

// History is the stream.Handler of the alerts stream's history consumer group: it records each
// event in PostgreSQL (alert_events) and in InfluxDB (measurement "alerts"). It is safe for
// concurrent use.
type History struct {
	events  EventInserter
	influx  Writer
	ready   <-chan struct{}
	logger  *slog.Logger
	metrics *metrics
}

// NewHistory returns a History writing to events and w. Until ready is closed (the bucket is
// provisioned) batches are stored in PostgreSQL and then failed, to be retried; a nil ready
// counts as closed. Metrics are registered on reg (nil: none).
func NewHistory(events EventInserter, w Writer, ready <-chan struct{}, logger *slog.Logger, reg prometheus.Registerer) *History {
	return &History{events: events, influx: w, ready: ready, logger: logger.With("component", "alerter.history"),
		metrics: newMetrics(reg)}
}

// errNotProvisioned fails history batches until InfluxDB is provisioned.
var errNotProvisioned = errors.New("influxdb bucket not provisioned yet")

// Handle records a batch of alerts-stream entries: one INSERT … ON CONFLICT DO NOTHING of all
// their events into alert_events, then one InfluxDB write of their points, whose identity
// (measurement, tags, time) makes a rewrite overwrite itself. So a redelivered entry is recorded
// once. An entry that is not an event, or an event PostgreSQL or InfluxDB refuses as invalid, is
// Rejected (dead-lettered) with the reason; any other failure is returned, and the consumer
// retries the batch.
func (h *History) Handle(ctx context.Context, batch []*stream.Message) error {
	type item struct {
		m  *stream.Message
		ev alert.Event
	}
	items := make([]item, 0, len(batch))
	rows := make([]postgres.AlertEvent, 0, len(batch))
	for _, m := range batch {
		if m.Msg == nil {
			m.Reject(errors.New("entry has no message"))
			continue
		}
		ev, err := alert.DecodeEvent(m.Msg.Payload)
		if err == nil {
			err = postgres.AlertEventFrom(ev).Validate()
		}
		if err != nil {
			m.Reject(err)
			h.logger.Warn("rejecting alerts-stream entry", "stream", m.Stream, "id", m.ID, "err", err)
			continue
		}
		items = append(items, item{m, ev})
		rows = append(rows, postgres.AlertEventFrom(ev))
	}
	if len(items) == 0 {
		return nil
	}
	if err := h.events.Insert(ctx, rows); err != nil {
		h.metrics.historyErrors.WithLabelValues("postgres").Inc()
		return fmt.Errorf("recording alert events: %w", err)
	}
	if h.ready != nil {
		select {
		case <-h.ready:
		default:
			return errNotProvisioned
		}
	}
	lines := make([][]byte, len(items))
	var body []byte
	for i, it := range items {
		line, err := eventLine(it.ev)
		if err != nil {
			it.m.Reject(err)
			continue
		}
		lines[i] = line
		body = append(body, line...)
	}
	err := h.influx.Write(ctx, body)
	if errors.Is(err, influx.ErrInvalid) || errors.Is(err, influx.ErrTooLarge) {
		// Find the events InfluxDB refuses on their own; events are few, one write each is fine.
		for i, it := range items {
			if lines[i] == nil {
				continue
			}
			if err := h.influx.Write(ctx, lines[i]); err != nil {
				if !errors.Is(err, influx.ErrInvalid) && !errors.Is(err, influx.ErrTooLarge) {
					h.metrics.historyErrors.WithLabelValues("influxdb").Inc()
					return fmt.Errorf("writing alert events to influxdb: %w", err)
				}
				it.m.Reject(fmt.Errorf("influxdb refused the alert event: %w", err))
			}
		}
		err = nil
	}
	if err != nil {
		h.metrics.historyErrors.WithLabelValues("influxdb").Inc()
		return fmt.Errorf("writing alert events to influxdb: %w", err)
	}
	h.metrics.historyEvents.Add(float64(len(items)))
	return nil
}

// newlines are replaced in string fields: InfluxDB's line protocol cannot carry them.
var newlines = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// eventLine returns the InfluxDB point of ev: measurement "alerts"; tags agent, alert_id,
// rule_id, severity and status (the state it went to); fields value, threshold,
// recovery_value, duration_seconds, from, summary, series and id; the time of the sample.
// alert_id keeps the series of one rule and agent apart, so that two of them changing at the
// same instant are two points.
func eventLine(ev alert.Event) ([]byte, error) {
	var enc lineprotocol.Encoder
	enc.SetPrecision(lineprotocol.Nanosecond)
	enc.StartLine(Measurement)
	// Keys in lexical order, as the encoder requires; an empty value would be dropped by
	// InfluxDB (and refused by the encoder), so it is left out.
	for _, t := range [...]struct{ k, v string }{
		{"agent", ev.AgentID}, {"alert_id", ev.AlertID}, {"rule_id", ev.RuleID},
		{"severity", ev.Severity}, {"status", string(ev.To)},
	} {
		if t.v != "" {
			enc.AddTag(t.k, t.v)
		}
	}
	addFloat := func(k string, v float64) {
		if f, ok := lineprotocol.FloatValue(v); ok {
			enc.AddField(k, f)
		}
	}
	addString := func(k, v string) {
		if s, ok := lineprotocol.StringValue(newlines.Replace(v)); ok {
			enc.AddField(k, s)
		}
	}
	addFloat("duration_seconds", ev.DurationSeconds)
	addString("from", string(ev.From))
	addString("id", ev.ID)
	if ev.RecoveryValue != nil {
		addFloat("recovery_value", *ev.RecoveryValue)
	}
	addString("series", ev.Series)
	addString("summary", ev.Summary)
	if ev.Threshold != nil {
		addFloat("threshold", *ev.Threshold)
	}
	addFloat("value", ev.Value)
	enc.EndLine(ev.At)
	if err := enc.Err(); err != nil {
		return nil, fmt.Errorf("encoding alert event %s for influxdb: %w", ev.ID, err)
	}
	return enc.Bytes(), nil
}
