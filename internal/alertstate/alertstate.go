// Package alertstate is the Redis side of alerting that the alerter writes and the gateway reads:
// the wire form of an alert transition (on pub/sub, on the durable alerts stream and on the
// WebSocket), the set of active alerts with their acknowledgements, and the rules version that
// tells every alerter copy to reload its rules.
package alertstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for an alert id that is not active.
var ErrNotFound = errors.New("alert not active")

// Statuses of an alert; StatusResolved only appears as the target of a transition.
const (
	StatusOK       = "ok"
	StatusPending  = "pending"
	StatusFiring   = "firing"
	StatusResolved = "resolved"
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
	From          string   `json:"from"`
	To            string   `json:"to"`
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
	Status      string            `json:"status"` // pending or firing
	Severity    string            `json:"severity,omitempty"`
	Value       float64           `json:"value"`
	Threshold   *float64          `json:"threshold,omitempty"`
	Since       time.Time         `json:"since"`                  // when it entered Status
	FiringSince *time.Time        `json:"firing_since,omitempty"` // when it began firing
	Labels      map[string]string `json:"labels,omitempty"`
	Summary     string            `json:"summary,omitempty"`
	Ack         *Ack              `json:"ack,omitempty"`
}

// AlertID is the id of the alert of one rule, agent and series: stable, URL-safe, 24 hex digits.
func AlertID(ruleID, agentID, series string) string {
	sum := sha256.Sum256([]byte(ruleID + "\x00" + agentID + "\x00" + series))
	return hex.EncodeToString(sum[:12])
}

// Redis keys and the pub/sub channel, all under the deployment's prefix.
func ActiveKey(prefix string) string       { return prefix + "alerts:active" }
func AcksKey(prefix string) string         { return prefix + "alerts:acks" }
func StreamKey(prefix string) string       { return prefix + "alerts" }
func Channel(prefix string) string         { return prefix + "alerts" }
func RulesVersionKey(prefix string) string { return prefix + "alert-rules:version" }

// Message wraps ev as the Watermill message appended to the alerts stream.
func Message(ev Event) (*message.Message, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encoding alert event: %w", err)
	}
	uuid := ev.ID
	if uuid == "" {
		uuid = watermill.NewUUID()
	}
	return message.NewMessage(uuid, payload), nil
}

// StreamValues returns the fields of the alerts-stream entry for ev in Watermill's format, for an
// XADD inside a transaction (Watermill's publisher cannot join one).
func StreamValues(ev Event) (map[string]any, error) {
	msg, err := Message(ev)
	if err != nil {
		return nil, err
	}
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(StreamKey(""), msg)
	if err != nil {
		return nil, fmt.Errorf("marshalling alert event: %w", err)
	}
	return values, nil
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

// ListActive returns the pending and firing alerts with their acknowledgements, most severe and
// then oldest first.
func ListActive(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]Active, error) {
	pipe := rdb.Pipeline()
	activeCmd := pipe.HGetAll(ctx, ActiveKey(prefix))
	acksCmd := pipe.HGetAll(ctx, AcksKey(prefix))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading active alerts: %w", err)
	}
	acks := acksCmd.Val()
	out := make([]Active, 0, len(activeCmd.Val()))
	for id, raw := range activeCmd.Val() {
		var a Active
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return nil, fmt.Errorf("decoding active alert %s: %w", id, err)
		}
		if rawAck, ok := acks[id]; ok {
			var ack Ack
			if err := json.Unmarshal([]byte(rawAck), &ack); err == nil {
				a.Ack = &ack
			}
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := rank(out[i]), rank(out[j])
		if ri != rj {
			return ri > rj
		}
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func rank(a Active) int {
	r := 0
	if a.Status == StatusFiring {
		r = 10
	}
	if a.Severity == "critical" {
		r++
	}
	return r
}

// ackScript records an acknowledgement only while the alert is active, atomically.
var ackScript = redis.NewScript(`
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call("HSET", KEYS[2], ARGV[1], ARGV[2])
return 1`)

// SetAck records ack on the active alert id; ErrNotFound when it is not active. The alerter
// removes the acknowledgement when the alert resolves.
func SetAck(ctx context.Context, rdb redis.UniversalClient, prefix, id string, ack Ack) error {
	raw, err := json.Marshal(ack)
	if err != nil {
		return fmt.Errorf("encoding ack: %w", err)
	}
	n, err := ackScript.Run(ctx, rdb, []string{ActiveKey(prefix), AcksKey(prefix)}, id, raw).Int()
	if err != nil {
		return fmt.Errorf("recording ack: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// BumpRulesVersion tells every alerter copy that the rules changed; they reload within their
// poll interval.
func BumpRulesVersion(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	if err := rdb.Incr(ctx, RulesVersionKey(prefix)).Err(); err != nil {
		return fmt.Errorf("bumping rules version: %w", err)
	}
	return nil
}

// RulesVersion returns the current rules version (0 before the first change).
func RulesVersion(ctx context.Context, rdb redis.UniversalClient, prefix string) (int64, error) {
	v, err := rdb.Get(ctx, RulesVersionKey(prefix)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading rules version: %w", err)
	}
	return v, nil
}
