package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// gatewayMetrics are the gateway's own Prometheus metrics.
type gatewayMetrics struct {
	requestDuration *prometheus.HistogramVec

	routes map[string]bool // registered route paths, the only values of the route label
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
