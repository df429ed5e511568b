package notify

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/ops"
)

// Outcomes of a delivery to one channel, the label of agentmonitor_notifier_deliveries_total.
const (
	outcomeSent      = "sent"
	outcomeFailed    = "failed"            // an attempt that failed; it is retried
	outcomeSilenced  = "silenced"          // held back by a silence
	outcomeDuplicate = "skipped_duplicate" // already delivered (redelivery, another copy)
	outcomeStale     = "skipped_stale"     // a newer transition of the alert was delivered
	outcomeNoChannel = "skipped_channel"   // the channel does not exist or is disabled
)

type metrics struct {
	deliveries *prometheus.CounterVec
	latency    prometheus.Observer
	poisoned   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "agentmonitor", "notifier"
	deliveries, err1 := ops.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "deliveries_total",
		Help: "Deliveries of alert transitions to notification channels, by outcome: sent, failed (an attempt, retried), silenced, skipped_duplicate, skipped_stale, skipped_channel.",
	}, []string{"outcome"}))
	latency, err2 := ops.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "delivery_duration_seconds",
		Help:    "Time one webhook POST took, failed ones included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 13),
	}))
	poisoned, err3 := ops.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "poisoned_total",
		Help: "Alerts-stream entries the notifier gave up on (a delivery failed for good or past the retries, a panic), moved to the dead-letter stream alerts:poison.",
	}))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("registering notifier metrics: %w", err)
	}
	for _, o := range []string{outcomeSent, outcomeFailed, outcomeSilenced, outcomeDuplicate, outcomeStale, outcomeNoChannel} {
		deliveries.WithLabelValues(o)
	}
	return &metrics{deliveries: deliveries, latency: latency, poisoned: poisoned}, nil
}
