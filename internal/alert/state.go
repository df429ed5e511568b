package alert

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"
)

// Status is the state of an alert, or (StatusResolved) the end of one.
type Status string

// The statuses. A State is ok, pending or firing; StatusResolved only appears as Transition.To,
// after which the State is ok.
const (
	StatusOK       Status = "ok"
	StatusPending  Status = "pending"
	StatusFiring   Status = "firing"
	StatusResolved Status = "resolved"
)

// ReasonRuleChanged is Transition.Reason for an alert ended by Retire.
const ReasonRuleChanged = "rule_changed"

// Key identifies one alert: a rule, an agent and a series of that agent (SeriesKey; "" for
// agent_silent rules and for points with no tag but "agent").
type Key struct {
	RuleID  string `json:"rule_id"`
	AgentID string `json:"agent_id"`
	Series  string `json:"series,omitempty"`
}

// State is the evaluation state of one Key, as the alerter stores it between samples. Times are
// sample times (for agent_silent rules, last_seen times), never the evaluator's clock, so that
// every copy of the alerter derives the same State from the same samples.
type State struct {
	Key
	Status Status `json:"status"`
	// Severity is the severity of a pending or firing alert; empty when ok.
	Severity Severity `json:"severity,omitempty"`
	// Since is when Status and Severity last changed.
	Since time.Time `json:"since,omitzero"`
	// ActiveSince is when the alert left ok (pending, or firing at once); zero when ok.
	ActiveSince time.Time `json:"active_since,omitzero"`
	// FiringSince is when the alert started firing (kept across severity changes); zero when
	// not firing.
	FiringSince time.Time `json:"firing_since,omitzero"`
	// LastEval is the time of the newest sample evaluated; Step ignores samples not newer.
	// For agent_silent rules it is the last_seen (or registration) time last evaluated.
	LastEval time.Time `json:"last_eval,omitzero"`
	// Value is the value last evaluated.
	Value float64 `json:"value"`
	// WarningSince and CriticalSince are when each severity's condition became true (and has
	// stayed true, recovery levels included); zero while it does not hold. A severity fires
	// once its condition has held for the rule's For.
	WarningSince  time.Time `json:"warning_since,omitzero"`
	CriticalSince time.Time `json:"critical_since,omitzero"`
}

// NewState returns the state of a key never evaluated: ok, with nothing evaluated yet.
func NewState(k Key) State { return State{Key: k, Status: StatusOK} }

// Active reports whether s is an alert: pending or firing.
func (s State) Active() bool { return s.Status == StatusPending || s.Status == StatusFiring }

// AlertID returns the id of the alert s is part of, the same from the moment it left ok to the
// moment it is back (the {id} of POST /api/v1/alerts/{id}/ack), or "" when s is ok.
func (s State) AlertID() string {
	if !s.Active() {
		return ""
	}
	return alertID(s.Key, s.ActiveSince)
}

func alertID(k Key, activeSince time.Time) string {
	return deriveID("alert", k.RuleID, k.AgentID, k.Series, strconv.FormatInt(activeSince.UnixNano(), 10))
}

func (s *State) condSince(sev Severity) *time.Time {
	if sev == SeverityCritical {
		return &s.CriticalSince
	}
	return &s.WarningSince
}

// Transition is one change of an alert's status or severity: what the alerter publishes, appends
// to the alerts stream and records in history.
type Transition struct {
	// ID is derived from Key, From, FromSeverity, To, Severity, At and Reason only: a UUID
	// (version 8, RFC 9562) that every alerter copy computes alike, so that stores and
	// notifiers deduplicate a transition written or delivered twice.
	ID string `json:"id"`
	// AlertID is State.AlertID of the alert the transition belongs to.
	AlertID string `json:"alert_id"`
	Key
	From         Status   `json:"from"`
	FromSeverity Severity `json:"from_severity,omitempty"`
	To           Status   `json:"to"`
	// Severity is the alert's severity after the transition, or, for To ok or resolved, the
	// severity it had.
	Severity Severity `json:"severity"`
	// At is the time of the sample that caused the transition (for agent_silent: see StepSilent).
	At time.Time `json:"at"`
	// Value is the evaluated value at At: for threshold rules the aggregate, for agent_silent
	// the seconds the agent had been silent.
	Value float64 `json:"value"`
	// Threshold is the level crossed: the threshold of Severity when entering pending or
	// firing, the recovery level of Severity when going back to ok or resolved; for
	// agent_silent, After in seconds.
	Threshold float64 `json:"threshold"`
	// RecoveryValue is Value on a resolved transition caused by a recovering sample; nil
	// otherwise (including an alert retired because its rule changed).
	RecoveryValue *float64 `json:"recovery_value,omitempty"`
	// ActiveSince and FiringSince are the alert's (State.ActiveSince, State.FiringSince) after
	// the transition, or, for a transition to ok or resolved, as they were before it.
	ActiveSince time.Time `json:"active_since,omitzero"`
	FiringSince time.Time `json:"firing_since,omitzero"`
	// Duration is, on resolved, how long the alert fired; on pending→ok, how long it was pending.
	Duration Duration `json:"duration,omitzero"`
	// Reason is ReasonRuleChanged for transitions made by Retire, else empty.
	Reason string `json:"reason,omitempty"`
}

// Notifies reports whether notification channels receive t: firing (including a severity
// change while firing) and resolved. Pending and pending→ok only reach dashboards and history.
func (t Transition) Notifies() bool { return t.To == StatusFiring || t.To == StatusResolved }

// Step evaluates value, the rule's aggregate at sample time at, against the thresholds of rule
// (a threshold rule), and returns the next state and the transition that leads to it, if any.
//
// A sample not newer than prev.LastEval, or a value that is not finite (NaN, ±Inf: the caller's
// aggregation failed, and no state or event could carry it), returns prev and nothing:
// redelivered and reordered samples cause nothing, and a transition is caused by exactly one
// sample.
//
// Each severity's condition starts to hold when rule.Operator holds against its threshold, and
// keeps holding until it no longer holds against its recovery level (the threshold when no
// recovery is set): values between the two change nothing (hysteresis). A severity fires once
// its condition has held for rule.For, on the first sample at or after that (For 0: on the
// sample that crosses). A firing alert keeps firing while any condition holds, at no more than
// the severity it fired at unless a higher one has held for For (so neither a later edit of
// For nor, with == and !=, a switch to a severity still waiting for For resolves it). The alert
// fires at the highest severity that fires, else is pending at the highest that holds, else is
// ok. Every change of status or severity is one transition:
//   - ok→pending on a crossing (ok→firing directly when For is 0);
//   - pending→firing once For has passed, even if this sample lies between threshold and
//     recovery level: the condition has held, hysteresis included, for For;
//   - pending→pending when critical starts or stops holding while pending;
//   - firing→firing with another severity: escalation once critical has held for For,
//     de-escalation once critical recovers while warning still holds;
//   - firing→resolved once no condition holds: RecoveryValue is the value, Duration how long
//     it fired; the state is then ok;
//   - pending→ok when the conditions stop holding before For: a transition that does not
//     notify, so that dashboards can drop the pending alert.
func Step(prev State, rule Rule, value float64, at time.Time) (State, []Transition) {
	if !at.After(prev.LastEval) || !finite(value) {
		return prev, nil
	}
	if prev.Status == "" {
		prev.Status = StatusOK
	}
	next := prev
	if next.RuleID == "" {
		next.RuleID = rule.ID
	}
	next.LastEval, next.Value = at, value

	var fired, held Severity // the highest severity that fires, and that holds
	for _, sev := range severities {
		since := next.condSince(sev)
		th := rule.Thresholds.For(sev)
		switch {
		case rule.Kind != KindThreshold || th == nil || th.Value == nil:
			*since = time.Time{}
		case since.IsZero():
			if rule.Operator.Holds(value, *th.Value) {
				*since = at
			}
		case !rule.Operator.Holds(value, th.recoveryLevel()):
			*since = time.Time{}
		}
		if since.IsZero() {
			continue
		}
		held = sev
		switch {
		case at.Sub(*since) >= time.Duration(rule.For):
			fired = sev
		case prev.Status == StatusFiring:
			// A firing alert keeps firing while any condition holds, at no more than the
			// severity it has proven: it escalates only once the higher one has held for For.
			fired = higher(fired, lower(sev, prev.Severity))
		}
	}
	status, sev := StatusOK, Severity("")
	switch {
	case fired != "":
		status, sev = StatusFiring, fired
	case held != "":
		status, sev = StatusPending, held
	}
	if status == prev.Status && sev == prev.Severity {
		return next, nil
	}

	t := Transition{Key: next.Key, From: prev.Status, FromSeverity: prev.Severity, To: status, Severity: sev,
		At: at, Value: value}
	if status == StatusOK {
		// The alert ends: the transition describes it as it was.
		t.Severity, t.ActiveSince, t.FiringSince = prev.Severity, prev.ActiveSince, prev.FiringSince
		t.Threshold = thresholdLevel(rule, prev.Severity, true)
		if prev.Status == StatusFiring {
			t.To = StatusResolved
			recovery := value
			t.RecoveryValue = &recovery
			t.Duration = Duration(at.Sub(prev.FiringSince))
		} else {
			t.Duration = Duration(at.Sub(prev.ActiveSince))
		}
		next.ActiveSince, next.FiringSince = time.Time{}, time.Time{}
	} else {
		if prev.Status == StatusOK {
			next.ActiveSince = at
		}
		if status == StatusFiring && prev.Status != StatusFiring {
			next.FiringSince = at
		}
		t.ActiveSince, t.FiringSince = next.ActiveSince, next.FiringSince
		t.Threshold = thresholdLevel(rule, sev, false)
	}
	t.AlertID = alertID(next.Key, t.ActiveSince)
	t.ID = t.deriveID()
	next.Status, next.Severity, next.Since = status, sev, at
	return next, []Transition{t}
}

// Evaluate is the alerter's step for one sample of a threshold rule: it adds (at, v) to w when
// rule.NeedsWindow (w nil then evaluates v alone, as last does), and steps prev with the
// aggregate. The caller stores w and the returned state together, atomically: a sample the
// window already holds is one the state has already evaluated, so both ignore it alike.
func Evaluate(prev State, w *Window, rule Rule, v float64, at time.Time) (State, []Transition) {
	value := v
	if rule.NeedsWindow() && w != nil {
		w.Add(at, v, time.Duration(rule.Window))
		agg, ok := w.Aggregate(rule.Aggregation)
		if !ok {
			return prev, nil
		}
		value = agg
	}
	return Step(prev, rule, value, at)
}

// rank orders severities: 0 for none, then warning, then critical.
func (s Severity) rank() int {
	switch s {
	case SeverityWarning:
		return 1
	case SeverityCritical:
		return 2
	}
	return 0
}

func higher(a, b Severity) Severity {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

func lower(a, b Severity) Severity {
	if b.rank() < a.rank() {
		return b
	}
	return a
}

// thresholdLevel returns the threshold of severity s in rule (its recovery level when recovery
// is true), or 0 when the rule has none, as after an edit that removed it.
func thresholdLevel(rule Rule, s Severity, recovery bool) float64 {
	th := rule.Thresholds.For(s)
	switch {
	case th == nil || th.Value == nil:
		return 0
	case recovery:
		return th.recoveryLevel()
	}
	return *th.Value
}

// Retire ends the alert of prev because its rule was deleted or disabled, or no longer selects
// the agent or series: firing→resolved or pending→ok, with Reason ReasonRuleChanged and no
// RecoveryValue. at should be a time every alerter copy agrees on, such as the rule's update
// time, since the transition's id derives from it. An ok prev returns prev and nothing. The
// returned state is ok; the caller may as well delete it.
func Retire(prev State, at time.Time) (State, []Transition) {
	if !prev.Active() {
		return prev, nil
	}
	t := Transition{Key: prev.Key, From: prev.Status, FromSeverity: prev.Severity, To: StatusOK,
		Severity: prev.Severity, At: at, Value: prev.Value, ActiveSince: prev.ActiveSince,
		FiringSince: prev.FiringSince, Reason: ReasonRuleChanged, AlertID: prev.AlertID()}
	if prev.Status == StatusFiring {
		t.To = StatusResolved
		t.Duration = Duration(max(at.Sub(prev.FiringSince), 0))
	} else {
		t.Duration = Duration(max(at.Sub(prev.ActiveSince), 0))
	}
	t.ID = t.deriveID()
	next := State{Key: prev.Key, Status: StatusOK, Since: at, LastEval: prev.LastEval, Value: prev.Value}
	if at.After(next.LastEval) {
		next.LastEval = at
	}
	return next, []Transition{t}
}

func (t *Transition) deriveID() string {
	return deriveID("transition", t.RuleID, t.AgentID, t.Series, string(t.From), string(t.FromSeverity),
		string(t.To), string(t.Severity), strconv.FormatInt(t.At.UnixNano(), 10), t.Reason)
}

// deriveID hashes the length-prefixed parts (so that no two different lists collide by
// concatenation) into a UUID of version 8, the RFC 9562 version for custom derivations: it fits
// a PostgreSQL uuid column. Hand-written rather than google/uuid (whose NewSHA1 is version 5,
// with SHA-1) to keep this package on the standard library.
func deriveID(parts ...string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}
