package alert

import (
	"fmt"
	"strings"
	"time"
)

// Kind is what a rule watches.
type Kind string

// The kinds of rule.
const (
	// KindThreshold compares an aggregated metric with thresholds.
	KindThreshold Kind = "threshold"
	// KindAgentSilent fires for an agent that has sent nothing for longer than Rule.After.
	KindAgentSilent Kind = "agent_silent"
)

// Aggregation is how the samples of a window become the one value compared with thresholds.
type Aggregation string

// The aggregations. Count is the number of samples in the window, whatever their values.
const (
	AggLast  Aggregation = "last"
	AggAvg   Aggregation = "avg"
	AggMin   Aggregation = "min"
	AggMax   Aggregation = "max"
	AggCount Aggregation = "count"
)

// Operator compares a value with a threshold: the condition holds when "value Operator threshold".
type Operator string

// The operators.
const (
	OpGT Operator = ">"
	OpGE Operator = ">="
	OpLT Operator = "<"
	OpLE Operator = "<="
	OpEQ Operator = "=="
	OpNE Operator = "!="
)

// Holds reports whether v o threshold is true. An unknown operator never holds.
func (o Operator) Holds(v, threshold float64) bool {
	switch o {
	case OpGT:
		return v > threshold
	case OpGE:
		return v >= threshold
	case OpLT:
		return v < threshold
	case OpLE:
		return v <= threshold
	case OpEQ:
		return v == threshold
	case OpNE:
		return v != threshold
	}
	return false
}

// ordered reports whether o compares magnitudes (so that hysteresis and the order of the
// warning and critical thresholds mean something).
func (o Operator) ordered() bool { return o.upward() || o == OpLT || o == OpLE }

// upward reports whether o fires on high values.
func (o Operator) upward() bool { return o == OpGT || o == OpGE }

// Severity is the level of an alert.
type Severity string

// The severities, in increasing order.
const (
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// severities lists the severities from the lowest to the highest.
var severities = [...]Severity{SeverityWarning, SeverityCritical}

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("5m",
// "1h30m", "250ms"). A JSON number is refused: "300" could mean seconds or nanoseconds.
type Duration time.Duration

// MarshalText writes d in the shortest Go syntax: "5m" rather than time.Duration's "5m0s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string such as "90s" or "1h30m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: use Go syntax such as \"90s\", \"5m\" or \"1h30m\"", b)
	}
	*d = Duration(v)
	return nil
}

// String returns d as time.Duration does, without trailing zero units ("5m", "1h", "1h30m").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// AgentSelector chooses the agents a rule applies to: those listed in IDs, or those whose labels
// include every pair of Labels, or every agent when both are empty. Setting both is invalid.
type AgentSelector struct {
	IDs    []string          `json:"ids,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Selects reports whether the agent with this id and these labels is chosen. Ids compare
// without regard to letter case, as UUIDs do.
func (s AgentSelector) Selects(agentID string, labels map[string]string) bool {
	if len(s.IDs) > 0 {
		for _, id := range s.IDs {
			if strings.EqualFold(id, agentID) {
				return true
			}
		}
		return false
	}
	for k, v := range s.Labels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Threshold is one severity's threshold. Value is required (a pointer, so that a missing value
// is told from 0). Recovery, when set, is the level the value must pass back over for the
// severity to clear (hysteresis): for > and >= it is at most Value, for < and <= at least Value;
// == and != take none. Without it the severity clears as soon as the condition stops holding.
type Threshold struct {
	Value    *float64 `json:"value,omitempty"`
	Recovery *float64 `json:"recovery,omitempty"`
}

// recoveryLevel returns the level a value is compared with while the severity is active:
// Recovery when set, else Value.
func (t *Threshold) recoveryLevel() float64 {
	if t.Recovery != nil {
		return *t.Recovery
	}
	return *t.Value
}

// Thresholds holds the warning and critical thresholds of a threshold rule; at least one is set.
type Thresholds struct {
	Warning  *Threshold `json:"warning,omitempty"`
	Critical *Threshold `json:"critical,omitempty"`
}

// For returns the threshold of severity s, or nil when the rule has none (or s is unknown).
func (t Thresholds) For(s Severity) *Threshold {
	switch s {
	case SeverityWarning:
		return t.Warning
	case SeverityCritical:
		return t.Critical
	}
	return nil
}

// Rule is an alert rule as stored and as exchanged over the API; the package comment shows its
// JSON. A Rule is a value: the alerter reads rules, never changes them. Validate says whether it
// can be stored; the rest of the package assumes valid rules and never fails on invalid ones
// (a rule without thresholds simply never fires).
type Rule struct {
	// ID is assigned by the store. It is part of every State key and Transition id.
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	Kind Kind   `json:"kind"`

	// Metric is "measurement.field" (threshold rules only). Tags, when set, must all be present
	// on a point with exactly these values.
	Metric string            `json:"metric,omitempty"`
	Tags   map[string]string `json:"tags,omitempty"`

	Agents AgentSelector `json:"agents,omitzero"`

	// Aggregation over Window (threshold rules only). Window is required except for AggLast,
	// which always uses the newest sample and ignores Window.
	Aggregation Aggregation `json:"aggregation,omitempty"`
	Window      Duration    `json:"window,omitzero"`

	Operator   Operator   `json:"operator,omitempty"`
	Thresholds Thresholds `json:"thresholds,omitzero"`

	// For is how long a severity's condition must hold before it fires (threshold and pipeline
	// rules; 0 fires on the first sample, or check, that crosses).
	For Duration `json:"for,omitzero"`

	// After is how long an agent may stay silent before an agent_silent rule fires, and
	// Severity the severity it fires with (agent_silent and pipeline rules).
	After    Duration `json:"after,omitzero"`
	Severity Severity `json:"severity,omitempty"`

	// Pipeline says what a pipeline rule checks (pipeline rules only).
	Pipeline *Pipeline `json:"pipeline,omitempty"`

	// Labels are attached to every alert of the rule (notifications, history); Summary is a
	// template rendered by RenderSummary, DefaultSummary when empty.
	Labels  map[string]string `json:"labels,omitempty"`
	Summary string            `json:"summary,omitempty"`

	// Channels are the ids of the notification channels that receive the rule's alerts.
	Channels []string `json:"channels,omitempty"`
	Enabled  bool     `json:"enabled"`
}

// NeedsWindow reports whether evaluating r keeps a Window of samples: threshold rules with any
// aggregation other than last.
func (r *Rule) NeedsWindow() bool {
	return r.Kind == KindThreshold && r.Aggregation != AggLast
}
