package notify

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// WebhookBody is the JSON body POSTed to a webhook channel: Alertmanager's webhook payload,
// version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), with one
// alert per notification, plus the transition's value, and on a resolve the recovery value and
// how long the alert fired. Receivers written for Alertmanager read it unchanged.
type WebhookBody struct {
	Version  string `json:"version"` // "4"
	GroupKey string `json:"groupKey"`
	// TruncatedAlerts is always 0: a notification carries one alert.
	TruncatedAlerts int `json:"truncatedAlerts"`
	// Status is "firing" (also for a severity change while firing) or "resolved".
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"` // the channel's name
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`

	// Value is the evaluated value that caused the transition.
	Value float64 `json:"value"`
	// RecoveryValue (a *float64, null for an alert retired because its rule changed) and
	// Duration (seconds the alert fired, a float64) are set on resolved notifications only.
	RecoveryValue any `json:"recovery_value,omitempty"`
	Duration      any `json:"duration,omitempty"`
}

// WebhookAlert is the one alert of a WebhookBody.
type WebhookAlert struct {
	Status string `json:"status"`
	// Labels: alertname (the rule's name), rule_id, and agent, severity, metric and series
	// when set, and the alert's labels (which cannot override the former).
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"` // summary
	StartsAt    time.Time         `json:"startsAt"`
	// EndsAt is when it resolved; the zero time while firing, as Alertmanager sends it.
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"` // the rule in the API; empty without EXTERNAL_URL
	Fingerprint  string    `json:"fingerprint"`  // the alert id
	// Value is this alert's value, in a grouped notification only (several alerts).
	Value *float64 `json:"value,omitempty"`
}

// alertLabels are the labels of ev's alert in notifications, and what silences match.
func alertLabels(ev alert.Event) map[string]string {
	labels := make(map[string]string, len(ev.Labels)+6)
	maps.Copy(labels, ev.Labels)
	labels["alertname"] = ev.RuleName
	labels["rule_id"] = ev.RuleID
	// agent is left out for alerts without one (pipeline rules), as the others when empty.
	for k, v := range map[string]string{"agent": ev.AgentID, "severity": ev.Severity, "metric": ev.Metric, "series": ev.Series} {
		if v != "" {
			labels[k] = v
		} else {
			delete(labels, k)
		}
	}
	return labels
}

// webhookBody builds the body of ev for the channel named receiver.
func (n *Notifier) webhookBody(ev alert.Event, labels map[string]string, receiver string, startsAt time.Time) WebhookBody {
	status := "firing"
	if ev.To == alert.StatusResolved {
		status = "resolved"
	}
	// One alert per group: the group is the alert itself, so that a receiver that correlates by
	// groupKey (PagerDuty's dedup key, for one) matches the resolve with its firing.
	group := map[string]string{"alertname": ev.RuleName, "rule_id": ev.RuleID}
	if ev.AgentID != "" {
		group["agent"] = ev.AgentID
	}
	if ev.Series != "" {
		group["series"] = ev.Series
	}
	annotations := map[string]string{}
	if ev.Summary != "" {
		annotations["summary"] = ev.Summary
	}
	alert := WebhookAlert{
		Status:       status,
		Labels:       labels,
		Annotations:  annotations,
		StartsAt:     startsAt.UTC(),
		GeneratorURL: n.generatorURL(ev.RuleID),
		Fingerprint:  ev.AlertID,
	}
	body := WebhookBody{
		Version:           "4",
		GroupKey:          groupKey(group),
		Status:            status,
		Receiver:          receiver,
		GroupLabels:       group,
		CommonLabels:      labels,
		CommonAnnotations: annotations,
		ExternalURL:       strings.TrimSuffix(n.cfg.ExternalURL, "/"),
		Value:             ev.Value,
	}
	if status == "resolved" {
		alert.EndsAt = ev.At.UTC()
		body.RecoveryValue = ev.RecoveryValue
		body.Duration = ev.DurationSeconds
	}
	body.Alerts = []WebhookAlert{alert}
	return body
}

// groupKey renders labels the way Alertmanager renders a group key: {}:{a="1", b="2"}.
func groupKey(labels map[string]string) string {
	var b strings.Builder
	b.WriteString("{}:{")
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// generatorURL links the rule in the gateway's API, or is empty without EXTERNAL_URL.
func (n *Notifier) generatorURL(ruleID string) string {
	if n.cfg.ExternalURL == "" {
		return ""
	}
	u, err := url.JoinPath(n.cfg.ExternalURL, "api", "v1", "alert-rules", ruleID)
	if err != nil {
		return ""
	}
	return u
}
