package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event is one alert transition as published on the pub/sub channel, appended to the alerts
// stream (as a Watermill message whose UUID is ID and payload is this JSON) and sent to
// WebSocket clients. ID is deterministic in the rule, agent, series, states and sample time, so
// every store can deduplicate a transition written twice.
type Event struct {
	ID            string   `json:"id"`
	AlertID       string   `json:"alert_id"`
	RuleID        string   `json:"rule_id"`
	RuleName      string   `json:"rule_name"`
	Kind          string   `json:"kind"`
	AgentID       string   `json:"agent_id"`
	Series        string   `json:"series,omitempty"`
	Metric        string   `json:"metric,omitempty"`
	From          Status   `json:"from"`
	To            Status   `json:"to"`
	Severity      string   `json:"severity,omitempty"`
	Value         float64  `json:"value"`
	Threshold     *float64 `json:"threshold,omitempty"`
	RecoveryValue *float64 `json:"recovery_value,omitempty"`
	// DurationSeconds is, on a resolved event, how long the alert fired.
	DurationSeconds float64           `json:"duration_seconds,omitempty"`
	At              time.Time         `json:"at"` // the time of the sample that caused the transition
	Labels          map[string]string `json:"labels,omitempty"`
	Summary         string            `json:"summary,omitempty"`
	Channels        []string          `json:"channels,omitempty"` // the rule's notification channels
	// Notify says whether notification channels receive this transition (firing, a severity
	// change while firing, resolved), as opposed to ok↔pending.
	Notify bool `json:"notify"`
}

// Ack is an operator's acknowledgement of an active alert.
type Ack struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// Active is an alert that is pending or firing, as GET /api/v1/alerts lists it.
type Active struct {
	ID          string            `json:"id"`
	RuleID      string            `json:"rule_id"`
	RuleName    string            `json:"rule_name"`
	Kind        string            `json:"kind"`
	AgentID     string            `json:"agent_id"`
	Series      string            `json:"series,omitempty"`
	Metric      string            `json:"metric,omitempty"`
	Status      Status            `json:"status"` // pending or firing
	Severity    string            `json:"severity,omitempty"`
	Value       float64           `json:"value"`
	Threshold   *float64          `json:"threshold,omitempty"`
	Since       time.Time         `json:"since"`                  // when it entered Status
	FiringSince *time.Time        `json:"firing_since,omitempty"` // when it began firing
	Labels      map[string]string `json:"labels,omitempty"`
	Summary     string            `json:"summary,omitempty"`
	Ack         *Ack              `json:"ack,omitempty"`
}

// ID is the id of the alert of one rule, agent and series: stable, URL-safe, 24 hex digits.
func ID(ruleID, agentID, series string) string {
	sum := sha256.Sum256([]byte(ruleID + "\x00" + agentID + "\x00" + series))
	return hex.EncodeToString(sum[:12])
}

// DecodeEvent reads the JSON payload of an alerts-stream message or pub/sub message.
func DecodeEvent(payload []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return Event{}, fmt.Errorf("decoding alert event: %w", err)
	}
	if ev.ID == "" || ev.AlertID == "" {
		return Event{}, errors.New("decoding alert event: missing id")
	}
	return ev, nil
}
