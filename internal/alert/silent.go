package alert

import "time"

// StepSilent evaluates an agent_silent rule for one agent (prev.Key has the rule, the agent and
// no series) at the evaluator's time now, given the agent's last_seen (nil if it never sent
// anything) and registration time, and returns the next state and the transitions leading to it.
// prev must come from NewState or StepSilent.
//
// The agent is silent when now is more than rule.After past its reference time: last_seen, or
// registration for an agent that never sent anything. The reference never goes back (a stale
// read of last_seen is ignored). Transitions are keyed by reference times only, never by now, so
// every copy evaluating at its own now derives the same transitions with the same ids:
//   - ok→firing when silent, at reference+After (when the silence crossed After, however late
//     it is noticed), with Value and Threshold After in seconds;
//   - firing→resolved when the reference moves past the one the alert fired on (the agent
//     reported again), at the new reference, with Value and RecoveryValue the seconds the agent
//     was silent, and Duration how long the alert fired. Should the new reference be silent
//     too (the agent reported, then stopped again long ago), a new ok→firing follows at once.
//
// There is no pending state: After already is the time the condition must hold.
func StepSilent(prev State, rule Rule, lastSeen *time.Time, registeredAt, now time.Time) (State, []Transition) {
	if prev.Status == "" {
		prev.Status = StatusOK
	}
	next := prev
	if next.RuleID == "" {
		next.RuleID = rule.ID
	}
	ref := registeredAt
	if lastSeen != nil && lastSeen.After(ref) {
		ref = *lastSeen
	}
	if ref.Before(prev.LastEval) {
		ref = prev.LastEval
	}
	after := time.Duration(rule.After)
	var out []Transition
	if prev.Status == StatusFiring {
		if !ref.After(prev.LastEval) {
			return prev, nil // still silent
		}
		silence := ref.Sub(prev.LastEval).Seconds()
		out = append(out, Transition{Key: next.Key, From: StatusFiring, FromSeverity: prev.Severity,
			To: StatusResolved, Severity: prev.Severity, At: ref, Value: silence, Threshold: after.Seconds(),
			RecoveryValue: &silence, ActiveSince: prev.ActiveSince, FiringSince: prev.FiringSince,
			// The report may predate the firing time when last_seen lagged behind: not negative.
			Duration: Duration(max(ref.Sub(prev.FiringSince), 0)), AlertID: prev.AlertID()})
		next = State{Key: next.Key, Status: StatusOK, Since: ref, Value: silence}
	}
	next.LastEval = ref
	if rule.Kind == KindAgentSilent && after > 0 && now.Sub(ref) > after {
		sev := rule.Severity
		if sev == "" {
			sev = SeverityCritical
		}
		at := ref.Add(after)
		next.Status, next.Severity, next.Value = StatusFiring, sev, after.Seconds()
		next.Since, next.ActiveSince, next.FiringSince = at, at, at
		out = append(out, Transition{Key: next.Key, From: StatusOK, To: StatusFiring, Severity: sev, At: at,
			Value: after.Seconds(), Threshold: after.Seconds(), ActiveSince: at, FiringSince: at,
			AlertID: next.AlertID()})
	}
	for i := range out {
		out[i].ID = out[i].deriveID()
	}
	return next, out
}
