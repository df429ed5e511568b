// Package alertredis is the Redis side of alert state that the alerter writes and the gateway
// reads: the keys and pub/sub channel of alert transitions (alert.Event, carried on the durable
// alerts stream as Watermill messages), the hash of active alerts with their acknowledgements, and
// the rules version that tells every alerter copy to reload its rules.
package alertredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for an alert id that is not active.
var ErrNotFound = errors.New("alert not active")

// Redis keys and the pub/sub channel, all under the deployment's prefix.
func ActiveKey(prefix string) string       { return prefix + "alerts:active" }
func AcksKey(prefix string) string         { return prefix + "alerts:acks" }
func StreamKey(prefix string) string       { return prefix + "alerts" }
func Channel(prefix string) string         { return prefix + "alerts" }
func RulesVersionKey(prefix string) string { return prefix + "alert-rules:version" }

// Message wraps ev as the Watermill message appended to the alerts stream.
func Message(ev alert.Event) (*message.Message, error) {
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
func StreamValues(ev alert.Event) (map[string]any, error) {
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

// ListActive returns the pending and firing alerts with their acknowledgements, most severe and
// then oldest first.
func ListActive(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]alert.Active, error) {
	pipe := rdb.Pipeline()
	activeCmd := pipe.HGetAll(ctx, ActiveKey(prefix))
	acksCmd := pipe.HGetAll(ctx, AcksKey(prefix))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading active alerts: %w", err)
	}
	acks := acksCmd.Val()
	out := make([]alert.Active, 0, len(activeCmd.Val()))
	for id, raw := range activeCmd.Val() {
		var a alert.Active
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return nil, fmt.Errorf("decoding active alert %s: %w", id, err)
		}
		if rawAck, ok := acks[id]; ok {
			var ack alert.Ack
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

func rank(a alert.Active) int {
	r := 0
	if a.Status == alert.StatusFiring {
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
func SetAck(ctx context.Context, rdb redis.UniversalClient, prefix, id string, ack alert.Ack) error {
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
