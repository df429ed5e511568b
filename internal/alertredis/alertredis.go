// Package alertredis is the Redis side of alert state that the alerter writes and the gateway
// reads: the keys and pub/sub channel of alert transitions (alert.Event, carried on the durable
// alerts streams as Watermill messages), the hashes of active alerts with their
// acknowledgements, and the rules version that tells every alerter copy to reload its rules.
//
// # Shards
//
// Alert state is split into the same STREAM_SHARDS shards as the metrics streams, so that Redis
// Cluster spreads alerting over its nodes: an alert of agent A lives in shard
// Shard(A, shards) = stream.ShardFor(A, shards), whose keys all carry the hash tag "{i}" of
// metrics stream shard i (one slot):
//
//	P alert:state:{i}:<alert id>   the alert's evaluation state (the alerter's)
//	P alerts:active:{i}            hash alert id -> alert.Active, the pending and firing alerts
//	P alerts:acks:{i}              hash alert id -> alert.Ack of an active alert
//	P alerts:{i}                   the alerts stream of the shard (Watermill messages)
//
// Alerts without an agent (pipeline rules such as the watchdog) live in shard 0: they are few,
// and one fixed place keeps them findable whatever their subject. The alerter changes one
// shard's keys in one transaction, so transitions are exactly once per shard; readers merge
// the shards (ListActive reads them all in one pipelined round trip). Only the pub/sub channel
// P alerts is global (PUBLISH reaches every node of a cluster).
//
// Changing STREAM_SHARDS moves agents' alerts to other shards. The set P alerts:shards records
// every shard alert state was written in (RecordShards), so that after a change the alerter
// still finds the old shards (KnownShards): it ends an active alert found in a shard that is no
// longer its agent's (Evaluator.Retire), writing the end to that shard's stream, which the
// notifier and the history writer keep reading; the alert fires again in its new shard if its
// condition still holds.
package alertredis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for an alert id that is not active.
var ErrNotFound = errors.New("alert not active")

// Shard returns the shard of the alerts of agentID among shards: the agent's metrics shard
// (stream.ShardFor), or 0 for an alert without agent.
func Shard(agentID string, shards int) int {
	if agentID == "" {
		return 0
	}
	return stream.ShardFor(agentID, shards)
}

// tag is the hash tag of shard i, the metrics stream shard's.
func tag(shard int) string { return "{" + strconv.Itoa(shard) + "}" }

// StateKey returns the key of the evaluation state of alert id in shard: prefix +
// "alert:state:{shard}:" + id.
func StateKey(prefix string, shard int, id string) string {
	return prefix + "alert:state:" + tag(shard) + ":" + id
}

// ActiveKey returns the key of shard's hash of active alerts (alert id -> alert.Active JSON).
func ActiveKey(prefix string, shard int) string { return prefix + "alerts:active:" + tag(shard) }

// AcksKey returns the key of shard's hash of acknowledgements (alert id -> alert.Ack JSON).
func AcksKey(prefix string, shard int) string { return prefix + "alerts:acks:" + tag(shard) }

// StreamKey returns the key of shard's alerts stream.
func StreamKey(prefix string, shard int) string { return prefix + "alerts:" + tag(shard) }

// StreamKeys returns the keys of the alerts streams of every shard, in shard order (one at
// least).
func StreamKeys(prefix string, shards int) []string {
	keys := make([]string, max(shards, 1))
	for i := range keys {
		keys[i] = StreamKey(prefix, i)
	}
	return keys
}

// StreamKeysOf returns the keys of the alerts streams of shards, in their order.
func StreamKeysOf(prefix string, shards []int) []string {
	keys := make([]string, len(shards))
	for i, s := range shards {
		keys[i] = StreamKey(prefix, s)
	}
	return keys
}

// ShardsKey returns the key of the set of every shard alert state has been written in.
func ShardsKey(prefix string) string { return prefix + "alerts:shards" }

// RecordShards adds shards 0 to shards-1 to ShardsKey: the alerter calls it before it writes
// any alert state.
func RecordShards(ctx context.Context, rdb redis.UniversalClient, prefix string, shards int) error {
	members := make([]any, max(shards, 1))
	for i := range members {
		members[i] = i
	}
	if err := rdb.SAdd(ctx, ShardsKey(prefix), members...).Err(); err != nil {
		return fmt.Errorf("recording alert shards: %w", err)
	}
	return nil
}

// KnownShards returns, sorted, shards 0 to shards-1 and every other shard in ShardsKey: those
// that a larger STREAM_SHARDS left alert state in.
func KnownShards(ctx context.Context, rdb redis.UniversalClient, prefix string, shards int) ([]int, error) {
	members, err := rdb.SMembers(ctx, ShardsKey(prefix)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading alert shards: %w", err)
	}
	out := make([]int, max(shards, 1))
	for i := range out {
		out[i] = i
	}
	for _, m := range members {
		if s, err := strconv.Atoi(m); err == nil && s >= len(out) && s < maxShards {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// maxShards bounds the shard numbers KnownShards believes (STREAM_SHARDS is at most 1024).
const maxShards = 1024

// Channel returns the pub/sub channel every transition is published on, whatever its shard.
func Channel(prefix string) string { return prefix + "alerts" }

// RulesVersionKey returns the key of the rules version (BumpRulesVersion).
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
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal("alerts", msg)
	if err != nil {
		return nil, fmt.Errorf("marshalling alert event: %w", err)
	}
	return values, nil
}

// ListActive returns the pending and firing alerts of every shard with their
// acknowledgements, most severe and then oldest first. It reads every shard's active and acks
// hashes in one pipelined round trip (on a cluster, one per node, concurrently).
func ListActive(ctx context.Context, rdb redis.UniversalClient, prefix string, shards int) ([]alert.Active, error) {
	located, err := ListActiveShards(ctx, rdb, prefix, shards)
	if err != nil {
		return nil, err
	}
	out := make([]alert.Active, len(located))
	for i, l := range located {
		out[i] = l.Active
	}
	return out, nil
}

// Located is an active alert with the shard whose keys hold it: Shard(AgentID, shards), unless
// STREAM_SHARDS changed since it began.
type Located struct {
	alert.Active
	Shard int
}

// ListActiveShards is ListActive with the shard of each alert.
func ListActiveShards(ctx context.Context, rdb redis.UniversalClient, prefix string, shards int) ([]Located, error) {
	all := make([]int, max(shards, 1))
	for i := range all {
		all[i] = i
	}
	return ListActiveIn(ctx, rdb, prefix, all)
}

// ListActiveIn is ListActiveShards over the given shards (KnownShards, for example). An alert
// found in several shards (only a change of STREAM_SHARDS leaves one behind) is listed once per
// shard.
func ListActiveIn(ctx context.Context, rdb redis.UniversalClient, prefix string, shards []int) ([]Located, error) {
	pipe := rdb.Pipeline()
	activeCmds, acksCmds := make([]*redis.MapStringStringCmd, len(shards)), make([]*redis.MapStringStringCmd, len(shards))
	for i, s := range shards {
		activeCmds[i] = pipe.HGetAll(ctx, ActiveKey(prefix, s))
		acksCmds[i] = pipe.HGetAll(ctx, AcksKey(prefix, s))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading active alerts: %w", err)
	}
	var out []Located
	for i, s := range shards {
		acks := acksCmds[i].Val()
		for id, raw := range activeCmds[i].Val() {
			a, err := decodeActive(id, raw, acks[id])
			if err != nil {
				return nil, err
			}
			out = append(out, Located{Active: a, Shard: s})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := rank(out[i].Active), rank(out[j].Active)
		if ri != rj {
			return ri > rj
		}
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Shard < out[j].Shard
	})
	return out, nil
}

// decodeActive reads an active-alerts entry and its acknowledgement (rawAck "" for none; an
// unreadable one is left out).
func decodeActive(id, raw, rawAck string) (alert.Active, error) {
	var a alert.Active
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return alert.Active{}, fmt.Errorf("decoding active alert %s: %w", id, err)
	}
	if rawAck != "" {
		var ack alert.Ack
		if err := json.Unmarshal([]byte(rawAck), &ack); err == nil {
			a.Ack = &ack
		}
	}
	return a, nil
}

// GetActive returns the active alert id of agentID (its shard's entry, with its
// acknowledgement) in one round trip; ErrNotFound when it is not active.
func GetActive(ctx context.Context, rdb redis.UniversalClient, prefix string, shards int, agentID, id string) (alert.Active, error) {
	shard := Shard(agentID, shards)
	pipe := rdb.Pipeline()
	activeCmd := pipe.HGet(ctx, ActiveKey(prefix, shard), id)
	ackCmd := pipe.HGet(ctx, AcksKey(prefix, shard), id)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return alert.Active{}, fmt.Errorf("reading active alert %s: %w", id, err)
	}
	raw, err := activeCmd.Result()
	if errors.Is(err, redis.Nil) {
		return alert.Active{}, ErrNotFound
	}
	if err != nil {
		return alert.Active{}, fmt.Errorf("reading active alert %s: %w", id, err)
	}
	return decodeActive(id, raw, ackCmd.Val())
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
// removes the acknowledgement when the alert resolves. An alert id does not tell its shard, so
// the script runs on every shard in one pipelined round trip, and records the acknowledgement
// only in the shard where the alert is active.
func SetAck(ctx context.Context, rdb redis.UniversalClient, prefix string, shards int, id string, ack alert.Ack) error {
	raw, err := json.Marshal(ack)
	if err != nil {
		return fmt.Errorf("encoding ack: %w", err)
	}
	shards = max(shards, 1)
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, shards)
	for i := range shards {
		// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT, and acks are rare.
		cmds[i] = ackScript.Eval(ctx, pipe, []string{ActiveKey(prefix, i), AcksKey(prefix, i)}, id, raw)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("recording ack: %w", err)
	}
	found := false
	for _, c := range cmds {
		if n, _ := c.Int(); n == 1 {
			found = true
		}
	}
	if !found {
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
