package gateway

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are the gateway's own Prometheus metrics.
type gatewayMetrics struct {
	requestDuration *prometheus.HistogramVec

	routes map[string]bool // registered route paths, the only values of the route label

	// observers caches requestDuration's observer of each label set seen, so that a request
	// costs one map lookup rather than hashing and matching its label values in the vector
	// (issue 13). It holds one entry per series the vector holds.
	mu        sync.RWMutex
	observers map[durationLabels]prometheus.Observer
}

// durationLabels are the labels of requestDuration.
type durationLabels struct {
	route, method string
	code          int
}

// observeRequest records one request's latency under its route, method and status code.
func (m *gatewayMetrics) observeRequest(route, method string, code int, d time.Duration) {
	k := durationLabels{route: route, method: method, code: code}
	m.mu.RLock()
	o, ok := m.observers[k]
	m.mu.RUnlock()
	if !ok {
		o = m.requestDuration.WithLabelValues(route, method, statusLabel(code))
		m.mu.Lock()
		if m.observers == nil {
			m.observers = make(map[durationLabels]prometheus.Observer)
		}
		m.observers[k] = o
		m.mu.Unlock()
	}
	o.Observe(d.Seconds())
}

func newGatewayMetrics(reg prometheus.Registerer) (*gatewayMetrics, error) {
	const ns, sub = "agentmonitor", "gateway"
	m := &gatewayMetrics{
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method", "code"}),
	}
	for _, c := range []prometheus.Collector{m.requestDuration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering gateway metrics: %w", err)
		}
	}
	return m, nil
}
