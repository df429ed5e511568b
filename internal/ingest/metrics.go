package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/httpapi"
)

// Metrics are the Prometheus metrics of ingest. They keep the gateway's names
// (agentmonitor_gateway_*): ingest is a part of the gateway binary.
type Metrics struct {
	ingestRequests *prometheus.CounterVec
	ingestDuration *prometheus.HistogramVec
	pointsAccepted prometheus.Counter
	hotCacheErrors prometheus.Counter

	// accepted holds the series of each route's accepted requests, resolved once: the
	// outcome of nearly every request, which then costs no label lookup (issue 13).
	accepted map[string]acceptedSeries
}

// acceptedSeries are the ingest series of one route's accepted requests.
type acceptedSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// NewMetrics creates the ingest metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "agentmonitor", "gateway"
	m := &Metrics{
		ingestRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "ingest_requests_total",
			Help: "Ingest requests by route (json, line_protocol) and outcome (accepted, invalid, unauthorized, forbidden, too_large, unsupported_media, rate_limited, backlog_full, unavailable, error).",
		}, []string{"route", "outcome"}),
		ingestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "ingest_duration_seconds",
			Help:    "Time to handle an ingest request, body read to answer, by route and outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "outcome"}),
		pointsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "points_accepted_total",
			Help: "Points appended to the metrics streams.",
		}),
		hotCacheErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "hot_cache_errors_total",
			Help: "Accepted batches whose hot-cache refresh failed (the batch itself is stored).",
		}),
	}
	for _, c := range []prometheus.Collector{m.ingestRequests, m.ingestDuration, m.pointsAccepted, m.hotCacheErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering ingest metrics: %w", err)
		}
	}
	m.accepted = make(map[string]acceptedSeries)
	for _, route := range []string{routeJSON, routeLine} {
		m.accepted[route] = acceptedSeries{
			requests: m.ingestRequests.WithLabelValues(route, outcomeAccepted),
			duration: m.ingestDuration.WithLabelValues(route, outcomeAccepted),
		}
	}
	return m, nil
}

// outcomeAccepted is the outcome label of a request whose batch was appended.
const outcomeAccepted = "accepted"

// observe counts one ingest request by its outcome, derived from the error it returned.
func (m *Metrics) observe(route string, err error, points int, d time.Duration) {
	if s, ok := m.accepted[route]; ok && err == nil {
		s.requests.Inc()
		s.duration.Observe(d.Seconds())
		m.pointsAccepted.Add(float64(points))
		return
	}
	outcome := ingestOutcome(err)
	m.ingestRequests.WithLabelValues(route, outcome).Inc()
	m.ingestDuration.WithLabelValues(route, outcome).Observe(d.Seconds())
	if err == nil {
		m.pointsAccepted.Add(float64(points))
	}
}

func ingestOutcome(err error) string {
	if err == nil {
		return outcomeAccepted
	}
	if ae := (*httpapi.Error)(nil); errors.As(err, &ae) && ae.Outcome != "" {
		return ae.Outcome
	}
	status, _, _, _ := httpapi.Answer(err)
	switch status {
	case http.StatusBadRequest:
		return "invalid"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "error"
}
