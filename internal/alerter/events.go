package alerter

import (
	"log/slog"
	"maps"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// subject is what an alert is about besides its rule: the agent (as far as the registry knows
// it) and, for threshold rules, the tags of the series.
type subject struct {
	agentID string
	agent   *agent.Agent // nil when the registry does not know the agent
	tags    []metric.Tag // without "agent"
	// labels replaces the computed labels when set (an alert retired after its rule was
	// deleted keeps the labels it had).
	labels map[string]string
	// name is what {{.Agent}} shows for an alert without agent (pipeline rules): the group,
	// store or stream, or "alerting" for the watchdog.
	name string
}

// alertLabels returns the labels of an alert: the agent's labels, overlaid by the series tags,
// overlaid by the rule's labels.
func (s subject) alertLabels(rule *alert.Rule) map[string]string {
	if s.labels != nil {
		return s.labels
	}
	n := len(rule.Labels) + len(s.tags)
	if s.agent != nil {
		n += len(s.agent.Labels)
	}
	if n == 0 {
		return nil
	}
	out := make(map[string]string, n)
	if s.agent != nil {
		maps.Copy(out, s.agent.Labels)
	}
	for _, t := range s.tags {
		out[t.Key] = t.Value
	}
	maps.Copy(out, rule.Labels)
	return out
}

// agentName is what {{.Agent}} shows: the agent's name, or its id when the registry does not
// know it.
func (s subject) agentName() string {
	if s.agent != nil && s.agent.Name != "" {
		return s.agent.Name
	}
	if s.agentID == "" && s.name != "" {
		return s.name
	}
	return s.agentID
}

// summary renders the rule's summary for t. A summary that cannot be rendered (Validate keeps
// those out of the store) is logged and left empty rather than hold the alert back.
func summary(rule *alert.Rule, t alert.Transition, subj subject, labels map[string]string, logger *slog.Logger) string {
	s, err := rule.RenderSummary(alert.SummaryData{
		Rule: rule.Name, Agent: subj.agentName(), Value: t.Value, Threshold: t.Threshold,
		Severity: t.Severity, Labels: labels,
	})
	if err != nil {
		logger.Warn("rendering alert summary", "rule", rule.ID, "err", err)
		return ""
	}
	return s
}

// event maps a transition of rule to its wire form.
func event(rule *alert.Rule, t alert.Transition, subj subject, logger *slog.Logger) alert.Event {
	labels := subj.alertLabels(rule)
	threshold := t.Threshold
	ev := alert.Event{
		ID:            t.ID,
		AlertID:       alert.ID(t.RuleID, t.AgentID, t.Series),
		RuleID:        t.RuleID,
		RuleName:      rule.Name,
		Kind:          string(rule.Kind),
		AgentID:       t.AgentID,
		Series:        t.Series,
		Metric:        rule.Metric,
		From:          t.From,
		To:            t.To,
		Severity:      string(t.Severity),
		Value:         t.Value,
		Threshold:     &threshold,
		RecoveryValue: t.RecoveryValue,
		At:            t.At.UTC(),
		Labels:        labels,
		Summary:       summary(rule, t, subj, labels, logger),
		Channels:      rule.Channels,
		Notify:        t.Notifies(),
	}
	if ev.Metric == "" {
		ev.Metric = rule.PipelineMetric()
	}
	if t.To == alert.StatusResolved {
		ev.DurationSeconds = time.Duration(t.Duration).Seconds()
	}
	return ev
}

// activeEntry returns the alertredis.ActiveKey entry of an alert in state st, described by
// last, the event that brought it there.
func activeEntry(st alert.State, last alert.Event) *alert.Active {
	a := &alert.Active{
		ID:        last.AlertID,
		RuleID:    last.RuleID,
		RuleName:  last.RuleName,
		Kind:      last.Kind,
		AgentID:   last.AgentID,
		Series:    last.Series,
		Metric:    last.Metric,
		Status:    st.Status,
		Severity:  string(st.Severity),
		Value:     last.Value,
		Threshold: last.Threshold,
		Since:     st.Since.UTC(),
		Labels:    last.Labels,
		Summary:   last.Summary,
	}
	if !st.FiringSince.IsZero() {
		t := st.FiringSince.UTC()
		a.FiringSince = &t
	}
	return a
}

// checkUpdate is the update of one alert a periodic check (agent_silent, pipeline) stepped from
// its stored state to next through trs: the new record (with the rule's channels while active,
// an expiry once back to ok), the events of subj, and the active-alert changes.
func (e *Evaluator) checkUpdate(key string, rule *alert.Rule, next alert.State, trs []alert.Transition, subj subject) update {
	u := update{key: key, rec: &record{State: next}}
	if next.Active() {
		u.rec.Channels = rule.Channels
	} else {
		u.ttl = okTTL(rule)
	}
	for _, t := range trs {
		u.events = append(u.events, event(rule, t, subj, e.logger))
	}
	transitionUpdate(&u, next, u.events)
	return u
}

// transitionUpdate completes u, the update of one alert whose state went from prev to next
// through events, with the ActiveKey and AcksKey changes: the entry replaced while the alert is
// active, removed when it is not, and the acknowledgement removed once the alert it was given
// to has ended (resolved, or pending back to ok), even if a new one began in the same batch.
func transitionUpdate(u *update, next alert.State, events []alert.Event) {
	if len(events) == 0 {
		return
	}
	u.alertID = events[0].AlertID
	for _, ev := range events {
		if ev.To == alert.StatusResolved || ev.To == alert.StatusOK {
			u.clearAck = true
		}
	}
	if next.Active() {
		u.active = activeEntry(next, events[len(events)-1])
	} else {
		u.inactive = true
	}
}
