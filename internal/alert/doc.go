// Package alert is the domain of alerting: rules and their validation, the index that finds the
// rules a point can match, window aggregation, and the state machine that turns evaluated values
// into transitions, the wire form of a transition and of an active alert (Event, Active, Ack) that
// the Redis side, the history and the notifier share, and notification channels with their
// validation. It is pure: no clock, no I/O, no adapter; every function is deterministic in
// its arguments, so that any number of alerter copies derive the same transitions, with the same
// ids, from the same samples.
//
// # Rule JSON
//
// A Rule is the body of POST/PUT /api/v1/alert-rules. A threshold rule:
//
//	{
//	  "id": "5b0c6a52-...",                  // set by the store; ignored on create
//	  "name": "CPU busy",
//	  "kind": "threshold",                    // or "agent_silent", "pipeline"
//	  "metric": "cpu.usage_percent",          // measurement.field
//	  "tags": {"core": "total"},              // optional: exact tag matches (not "agent")
//	  "agents": {"labels": {"env": "prod"}},  // {"ids": [...]} or {"labels": {...}}; omitted: all agents
//	  "aggregation": "avg",                   // last | avg | min | max | count
//	  "window": "5m",                         // Go duration, 1s to 24h; required except for "last"
//	  "operator": ">",                        // > >= < <= == !=
//	  "thresholds": {
//	    "warning":  {"value": 80, "recovery": 70},
//	    "critical": {"value": 95}             // without recovery: recovers at the threshold itself
//	  },
//	  "for": "2m",                            // how long the condition must hold before firing
//	  "labels": {"team": "infra"},
//	  "summary": "{{.Rule}}: {{.Agent}} at {{.Value}}% ({{.Severity}} above {{.Threshold}})",
//	  "channels": ["9d4c..."],                // notification channel ids
//	  "enabled": true
//	}
//
// An agent_silent rule fires per selected agent when it has sent nothing for longer than "after"
// (counted from registration for an agent that never sent anything):
//
//	{"name": "Agent silent", "kind": "agent_silent", "after": "5m", "severity": "critical",
//	 "agents": {"ids": ["..."]}, "labels": {...}, "summary": "...", "channels": [...], "enabled": true}
//
// A pipeline rule watches the pipeline rather than agents; its alerts have no agent (AgentID ""),
// and their series is the subject: a group, a store or a dead-letter stream. pipeline.check is
// group_lag (groups, bound in entries, for), dead_letters, no_consumer (groups, idle: no
// consumer read within it), store_down (stores among redis, postgresql, influxdb, for) or
// watchdog (always firing):
//
//	{"name": "Pipeline lag", "kind": "pipeline", "severity": "critical", "for": "2m",
//	 "pipeline": {"check": "group_lag", "groups": ["influx-writer", "pg-sync"], "bound": 100000}}
//
// Durations are JSON strings in Go syntax ("90s", "1h30m") and are written back in the shortest
// such form ("5m", not "5m0s"). "enabled" omitted decodes as false: an API that wants true by
// default decodes into a Rule{Enabled: true}. Rule.Validate returns a *ValidationError whose
// Field is the JSON path of the first invalid member ("thresholds.critical.recovery").
//
// # Evaluation
//
// The alerter finds the rules for a point's measurement.field with Index.For, keeps those whose
// Rule.Matches accepts the agent and the point's tags, and keeps one State (and, for windowed
// aggregations, one Window) per Key: rule, agent and series (SeriesKey: the point's tags other
// than "agent"; "" when it has none), so that a rule without a tag filter on a per-core metric
// alerts per core instead of mixing the cores' values. Evaluate adds the sample to the Window
// and steps the State; StepSilent does the same for agent_silent rules from the registry, and
// Retire ends the alerts of rules deleted or disabled. Each evaluation is keyed by the sample's
// time: a sample not newer than State.LastEval is ignored, so redelivered or reordered stream
// entries produce no transition, and every Transition has an id derived from its key, its from
// and to states and its sample time, so stores can deduplicate what a retry writes twice. The
// caller stores a key's State and Window together and atomically (compare-and-set on the
// previous value), or two copies evaluating the same key could both emit its transition.
//
// States are ok, pending and firing (each of the last two with a severity, warning or
// critical); resolved is the transition from firing back to ok. Every change of status or
// severity is a Transition, including ok→pending and pending→ok (so that a dashboard showing a
// pending alert can remove it); Transition.Notifies says which ones notification channels
// receive (firing, a severity change while firing, resolved).
package alert
