package alerter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/ops"
)

// metrics are the alerter's instruments (namespace agentmonitor, subsystem alerter).
type metrics struct {
	samples       prometheus.Counter
	transitions   *prometheus.CounterVec // by to-state
	txConflicts   prometheus.Counter
	txExhausted   prometheus.Counter
	corrupt       prometheus.Counter
	rejected      prometheus.Counter
	ruleErrors    *prometheus.CounterVec // by rule id and reason
	unencodable   prometheus.Counter
	evalSeconds   prometheus.Histogram
	latency       prometheus.Histogram
	rulesLoaded   prometheus.Gauge
	ruleReloads   *prometheus.CounterVec // by result
	agentsCached  prometheus.Gauge
	agentRefresh  *prometheus.CounterVec // by result
	silentSeconds prometheus.Histogram
	// pipelineSeconds times CheckPipeline.
	pipelineSeconds prometheus.Histogram
	silentHeld      *prometheus.CounterVec // by reason
	retired         prometheus.Counter
	historyEvents   prometheus.Counter
	historyErrors   *prometheus.CounterVec // by store
}

// newMetrics builds the instruments and registers them on reg (nil: not registered). An
// instrument already registered under the same name, by another component of the same binary
// or an earlier one in a test, is reused.
func newMetrics(reg prometheus.Registerer) *metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "agentmonitor", Subsystem: "alerter", Name: name, Help: help}
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agentmonitor", Subsystem: "alerter", Name: name, Help: help, Buckets: buckets,
		}))
	}
	return &metrics{
		samples: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("samples_evaluated_total",
			"Samples (one field of one point against one matching rule) evaluated.")))),
		transitions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts("transitions_total",
			"Alert transitions committed by this copy, by the state they lead to.")), []string{"to"})),
		txConflicts: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("tx_conflicts_total",
			"State transactions aborted because another copy changed a watched state first; each is retried.")))),
		txExhausted: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("tx_exhausted_total",
			"Batches that lost every transaction attempt and were handed back to the consumer for a later retry.")))),
		corrupt: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("state_unreadable_total",
			"Stored alert states that could not be decoded and were started afresh.")))),
		rejected: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("entries_rejected_total",
			"Stream entries dead-lettered because their payload or metadata could not be read, or their evaluation fails every time (an alert state or event that cannot be encoded).")))),
		ruleErrors: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts("rule_errors_total",
			"Samples a rule could not evaluate and skipped, by rule id and reason (non_finite_aggregate).")), []string{"rule", "reason"})),
		unencodable: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("unencodable_updates_total",
			"Alert state changes of agent_silent checks or retirements left out because they could not be encoded; tried again at the next check.")))),
		evalSeconds: hist("evaluation_duration_seconds",
			"Time to evaluate one batch of metrics entries and commit its states, transaction retries included.",
			prometheus.ExponentialBuckets(0.0002, 2, 16)),
		latency: hist("transition_latency_seconds",
			"From the gateway accepting a sample to the commit of the transition it caused.",
			prometheus.ExponentialBuckets(0.001, 2, 16)),
		rulesLoaded: register(reg, prometheus.NewGauge(prometheus.GaugeOpts(opts("rules_loaded",
			"Alert rules in the current index, disabled ones included.")))),
		ruleReloads: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts("rule_reloads_total",
			"Rule reloads from PostgreSQL, by result: ok or error.")), []string{"result"})),
		agentsCached: register(reg, prometheus.NewGauge(prometheus.GaugeOpts(opts("agents_cached",
			"Agents in the registry snapshot used for selectors and agent_silent rules.")))),
		agentRefresh: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts("agent_refreshes_total",
			"Agent registry reloads from PostgreSQL, by result: ok or error.")), []string{"result"})),
		silentSeconds: hist("silent_check_duration_seconds",
			"Time one agent_silent check of every rule and agent took.",
			prometheus.ExponentialBuckets(0.0005, 2, 16)),
		pipelineSeconds: hist("pipeline_check_duration_seconds",
			"Time one check of every pipeline rule (groups, dead letters, stores) took.",
			prometheus.ExponentialBuckets(0.0005, 2, 16)),
		silentHeld: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts("silent_checks_held_total",
			"agent_silent rule checks held back because the pipeline could not tell silence from its own delay, by reason: lag (the alerter's metrics backlog over SILENT_HOLD_LAG) or record_young (the accepted record, new or lost with Redis, covers less than the rule's after).")), []string{"reason"})),
		retired: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("alerts_retired_total",
			"Active alerts ended because their rule was deleted, disabled or changed, or their agent deleted.")))),
		historyEvents: register(reg, prometheus.NewCounter(prometheus.CounterOpts(opts("history_events_total",
			"Alert events recorded into history (PostgreSQL and InfluxDB); redeliveries count again.")))),
		historyErrors: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts(opts("history_errors_total",
			"Failed history writes, by store: postgres or influxdb; the batch is retried.")), []string{"store"})),
	}
}

// register is ops.Register for metrics built where no error can be returned: a clash is a
// programming error, and the metric then works unexported.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	c, _ = ops.Register(reg, c)
	return c
}
