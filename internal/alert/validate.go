package alert

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/textcheck"
)

// Bounds Validate enforces.
const (
	MaxNameLen     = 200  // bytes of Name
	MaxMetricLen   = 512  // bytes of Metric
	MaxMapEntries  = 32   // entries of Tags, Labels and Agents.Labels each
	MaxMapKeyLen   = 128  // bytes of a key of those maps
	MaxMapValueLen = 256  // bytes of a value of those maps
	MaxAgentIDs    = 1000 // entries of Agents.IDs
	MaxChannels    = 32   // entries of Channels
	MaxIDLen       = 128  // bytes of an agent or channel id
	MaxSummaryLen  = 1024 // bytes of Summary
	MaxWindow      = 24 * time.Hour
	MaxFor         = 7 * 24 * time.Hour
	MinAfter       = 10 * time.Second // below this, last_seen's own update lag raises false alarms
	MaxAfter       = 30 * 24 * time.Hour
)

// MinWindow is the shortest window, and the shortest For other than 0: agents report every few
// seconds at most, so a shorter window holds one sample or none, and "1ns" is a slip rather
// than a choice; one second is also the finest unit people set alerting durations in.
const MinWindow = time.Second

// reservedLabels are set on every alert by the notifier (Alertmanager's body): a rule label
// with one of these names would be overwritten or would overwrite them.
var reservedLabels = map[string]bool{"alertname": true, "severity": true, "agent": true}

// ValidationError says which member of a rule is invalid and why.
type ValidationError struct {
	// Field is the JSON path of the member, dot-separated: "thresholds.critical.recovery".
	Field string
	// Reason is a sentence fragment for the client, naming offending keys or values.
	Reason string
}

// Error returns "field: reason".
func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports the first problem that keeps r from being stored, as a *ValidationError, or
// nil. It checks the members in the order of the JSON shape (package comment), and rejects
// members that do not apply to r's kind rather than ignoring them. It does not check ID (the
// store sets it) nor that agents and channels exist (the store knows them).
func (r Rule) Validate() error {
	if err := r.validate(); err != nil {
		return err
	}
	return nil // not a nil *ValidationError in a non-nil error
}

func (r *Rule) validate() *ValidationError {
	if err := checkText("name", r.Name, MaxNameLen); err != nil {
		return err
	}
	if strings.TrimSpace(r.Name) == "" {
		return invalid("name", "must not be blank")
	}
	var err *ValidationError
	switch r.Kind {
	case KindThreshold:
		err = r.validateThreshold()
	case KindAgentSilent:
		err = r.validateSilent()
	case KindPipeline:
		err = r.validatePipeline()
	case "":
		return invalid("kind", "is required: %q, %q or %q", KindThreshold, KindAgentSilent, KindPipeline)
	default:
		return invalid("kind", "must be %q, %q or %q, got %q", KindThreshold, KindAgentSilent, KindPipeline, r.Kind)
	}
	if err == nil && r.Kind != KindPipeline && r.Pipeline != nil {
		err = invalid("pipeline", "applies only to pipeline rules")
	}
	if err != nil {
		return err
	}
	if err := checkLabels(r.Labels); err != nil {
		return err
	}
	if err := checkSummary(r.Summary); err != nil {
		return err
	}
	return checkIDs("channels", r.Channels, MaxChannels)
}

func (r *Rule) validateThreshold() *ValidationError {
	if err := checkMetric(r.Metric); err != nil {
		return err
	}
	if err := checkMap("tags", r.Tags); err != nil {
		return err
	}
	if _, ok := r.Tags["agent"]; ok {
		return invalid("tags", `must not filter on "agent": select agents with agents.ids`)
	}
	if err := checkSelector(r.Agents); err != nil {
		return err
	}
	switch r.Aggregation {
	case AggLast, AggAvg, AggMin, AggMax, AggCount:
	case "":
		return invalid("aggregation", "is required: last, avg, min, max or count")
	default:
		return invalid("aggregation", "must be last, avg, min, max or count, got %q", r.Aggregation)
	}
	switch w := time.Duration(r.Window); {
	case w < 0:
		return invalid("window", "must not be negative, got %s", Duration(w))
	case w == 0 && r.Aggregation != AggLast:
		return invalid("window", "is required for aggregation %q: at least %s (got none or 0s)", r.Aggregation, Duration(MinWindow))
	case w > 0 && w < MinWindow:
		return invalid("window", "must be at least %s, got %s", Duration(MinWindow), Duration(w))
	case w > MaxWindow:
		return invalid("window", "must be at most %s, got %s", Duration(MaxWindow), Duration(w))
	}
	switch r.Operator {
	case OpGT, OpGE, OpLT, OpLE, OpEQ, OpNE:
	case "":
		return invalid("operator", "is required: >, >=, <, <=, == or !=")
	default:
		return invalid("operator", "must be >, >=, <, <=, == or !=, got %q", r.Operator)
	}
	if err := r.checkThresholds(); err != nil {
		return err
	}
	if err := checkFor(r.For, "fire on the first crossing sample"); err != nil {
		return err
	}
	if r.After != 0 {
		return invalid("after", "applies only to agent_silent rules")
	}
	if r.Severity != "" {
		return invalid("severity", "applies only to agent_silent rules: threshold rules take it from thresholds.warning and thresholds.critical")
	}
	return nil
}

func (r *Rule) checkThresholds() *ValidationError {
	w, c := r.Thresholds.Warning, r.Thresholds.Critical
	if w == nil && c == nil {
		return invalid("thresholds", "at least one of warning and critical is required")
	}
	for _, s := range severities {
		if err := r.checkThreshold(s); err != nil {
			return err
		}
	}
	if w == nil || c == nil || !r.Operator.ordered() {
		return nil
	}
	// Warning and critical nest: critical lies beyond warning, and clears no later than warning
	// does, so that an active critical always has an active warning under it (de-escalation
	// then lands on warning, never on nothing).
	up := r.Operator.upward()
	if beyond(*c.Value, *w.Value, up) <= 0 {
		return invalid("thresholds.critical.value", "must be %s the warning threshold (%s) for operator %s",
			direction(up, false), num(*w.Value), r.Operator)
	}
	if beyond(c.recoveryLevel(), w.recoveryLevel(), up) < 0 {
		return invalid("thresholds.critical.recovery", "must be %s the warning recovery level (%s) for operator %s",
			direction(up, true), num(w.recoveryLevel()), r.Operator)
	}
	return nil
}

func (r *Rule) checkThreshold(s Severity) *ValidationError {
	t := r.Thresholds.For(s)
	if t == nil {
		return nil
	}
	field := "thresholds." + string(s)
	if t.Value == nil {
		return invalid(field+".value", "is required")
	}
	if !finite(*t.Value) {
		return invalid(field+".value", "must be a finite number")
	}
	if t.Recovery == nil {
		return nil
	}
	switch {
	case !finite(*t.Recovery):
		return invalid(field+".recovery", "must be a finite number")
	case !r.Operator.ordered():
		return invalid(field+".recovery", "applies only to operators >, >=, < and <=")
	case beyond(*t.Recovery, *t.Value, r.Operator.upward()) > 0:
		// The recovery level lies on the healthy side of (or at) the threshold, else the
		// severity would clear while its own condition still holds.
		return invalid(field+".recovery", "must be %s the threshold (%s) for operator %s",
			direction(!r.Operator.upward(), true), num(*t.Value), r.Operator)
	}
	return nil
}

// beyond compares a with b in the direction an alert grows: >0 when a is further (above b for
// upward operators, below for downward ones), 0 when equal.
func beyond(a, b float64, up bool) int {
	switch {
	case a == b:
		return 0
	case (a > b) == up:
		return 1
	}
	return -1
}

func direction(above, orEqual bool) string {
	s := "below"
	if above {
		s = "above"
	}
	if orEqual {
		s = "at or " + s
	}
	return s
}

func (r *Rule) validateSilent() *ValidationError {
	if err := r.checkNotThreshold(func() *ValidationError { return checkSelector(r.Agents) }); err != nil {
		return err
	}
	if r.For != 0 {
		return invalid("for", "applies only to threshold rules: agent_silent rules wait for after")
	}
	switch a := time.Duration(r.After); {
	case a == 0:
		return invalid("after", "is required for agent_silent rules: at least %s (got none or 0s)", Duration(MinAfter))
	case a < 0:
		return invalid("after", "must not be negative, got %s", Duration(a))
	case a < MinAfter:
		return invalid("after", "must be at least %s, got %s", Duration(MinAfter), Duration(a))
	case a > MaxAfter:
		return invalid("after", "must be at most %s, got %s", Duration(MaxAfter), Duration(a))
	}
	return checkSeverity(r.Severity, r.Kind)
}

// checkNotThreshold rejects, on a rule that is not a threshold rule, the members only threshold
// rules take, in the order of the JSON shape: metric and tags, then (agents) the agent selector
// as the rule's kind wants it, then aggregation, window, operator and thresholds.
func (r *Rule) checkNotThreshold(agents func() *ValidationError) *ValidationError {
	switch {
	case r.Metric != "":
		return invalid("metric", "applies only to threshold rules")
	case len(r.Tags) > 0:
		return invalid("tags", "applies only to threshold rules")
	}
	if err := agents(); err != nil {
		return err
	}
	switch {
	case r.Aggregation != "":
		return invalid("aggregation", "applies only to threshold rules")
	case r.Window != 0:
		return invalid("window", "applies only to threshold rules")
	case r.Operator != "":
		return invalid("operator", "applies only to threshold rules")
	case r.Thresholds.Warning != nil || r.Thresholds.Critical != nil:
		return invalid("thresholds", "applies only to threshold rules")
	}
	return nil
}

// checkFor checks a rule's For: 0 (which means what zero says) or from MinWindow to MaxFor.
func checkFor(d Duration, zero string) *ValidationError {
	switch f := time.Duration(d); {
	case f < 0:
		return invalid("for", "must not be negative, got %s", Duration(f))
	case f > 0 && f < MinWindow:
		return invalid("for", "must be 0s (%s) or at least %s, got %s", zero, Duration(MinWindow), Duration(f))
	case f > MaxFor:
		return invalid("for", "must be at most %s, got %s", Duration(MaxFor), Duration(f))
	}
	return nil
}

// checkSeverity checks the severity of an agent_silent or pipeline rule (kind), which the rule
// states itself: warning or critical.
func checkSeverity(sev Severity, kind Kind) *ValidationError {
	switch sev {
	case SeverityWarning, SeverityCritical:
	case "":
		return invalid("severity", "is required for %s rules: warning or critical", kind)
	default:
		return invalid("severity", "must be warning or critical, got %q", sev)
	}
	return nil
}

func checkMetric(m string) *ValidationError {
	if m == "" {
		return invalid("metric", `is required: "measurement.field"`)
	}
	if err := checkText("metric", m, MaxMetricLen); err != nil {
		return err
	}
	if i := strings.IndexByte(m, '.'); i <= 0 || m[len(m)-1] == '.' {
		return invalid("metric", `must be "measurement.field", got %q`, m)
	}
	return nil
}

func checkSelector(s AgentSelector) *ValidationError {
	if len(s.IDs) > 0 && len(s.Labels) > 0 {
		return invalid("agents", "give ids or labels, not both")
	}
	if err := checkIDs("agents.ids", s.IDs, MaxAgentIDs); err != nil {
		return err
	}
	return checkMap("agents.labels", s.Labels)
}

// checkIDs checks a list of ids (of agents or channels, which the stores key by UUID): bounded,
// each a UUID, listed once (in any letter case).
func checkIDs(field string, ids []string, limit int) *ValidationError {
	if len(ids) > limit {
		return invalid(field, "must list at most %d ids, got %d", limit, len(ids))
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" {
			return invalid(field, "must not contain an empty id")
		}
		if err := checkText(field, id, MaxIDLen); err != nil {
			return err
		}
		if !IsUUID(id) {
			return invalid(field, "%q is not a UUID: want 32 hex digits as 8-4-4-4-12, such as %q", id, exampleUUID)
		}
		if seen[strings.ToLower(id)] {
			return invalid(field, "lists %q twice", id)
		}
		seen[strings.ToLower(id)] = true
	}
	return nil
}

const exampleUUID = "9d4c1f6e-2b7a-4c3d-8e5f-0a1b2c3d4e5f"

// IsUUID reports whether s is a UUID in its text form: 32 hex digits, in either case, grouped
// 8-4-4-4-12 by hyphens (RFC 9562), the form PostgreSQL prints and the API returns. Any
// version and variant is accepted: the stores assign the ids.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// checkMap checks a tag or label map: bounded, non-empty printable keys and values.
func checkMap(field string, m map[string]string) *ValidationError {
	if len(m) > MaxMapEntries {
		return invalid(field, "must have at most %d entries, got %d", MaxMapEntries, len(m))
	}
	for _, k := range sortedKeys(m) {
		v := m[k]
		if k == "" {
			return invalid(field, "must not have an empty key")
		}
		if err := checkText(field, k, MaxMapKeyLen); err != nil {
			return invalid(field, "key %q: %s", k, err.Reason)
		}
		if v == "" {
			return invalid(field, "key %q: the value must not be empty", k)
		}
		if err := checkText(field, v, MaxMapValueLen); err != nil {
			return invalid(field, "key %q: value %s", k, err.Reason)
		}
	}
	return nil
}

// checkLabels checks the rule's labels: a map whose keys are label names (letters, digits and
// underscores, not starting with a digit nor "__", which also makes them reachable from the
// summary as {{.Labels.name}}) and not one of the reserved names.
func checkLabels(m map[string]string) *ValidationError {
	if err := checkMap("labels", m); err != nil {
		return err
	}
	for _, k := range sortedKeys(m) {
		if !isLabelName(k) || strings.HasPrefix(k, "__") {
			return invalid("labels", "key %q is not a label name: letters, digits and _, not starting with a digit or __", k)
		}
		if reservedLabels[k] {
			return invalid("labels", "key %q is reserved: every alert carries it", k)
		}
	}
	return nil
}

func isLabelName(s string) bool {
	for i, c := range []byte(s) {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// checkText checks a string against a byte bound, UTF-8 validity and control characters.
func checkText(field, s string, limit int) *ValidationError {
	if err := textcheck.Bounded(s, limit); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// num formats a number the way messages and summaries show it: the shortest form that reads
// back, no trailing zeros, and no exponent unless the magnitude is below 1e-6 or at least 1e21
// (as JavaScript prints numbers): 1.7e308 in 309 digits would swamp a summary.
func num(f float64) string {
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// sortedKeys returns m's keys in order, so that Validate names the same problem every time.
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
