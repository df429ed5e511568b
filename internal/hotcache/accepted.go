package hotcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The accepted record: one hash per stream shard, agent id -> Unix nanoseconds of the agent's
// last batch the gateway accepted, written with the hot data by the ingest script (or Update). The alerter judges
// agent_silent from it rather than from PostgreSQL's last_seen, which lags whenever pg-sync or
// PostgreSQL does. The hash has no TTL: it holds one field per agent.

// AcceptedKey is the key of shard's part of the accepted record under prefix: prefix +
// "agents:accepted:{shard}", in the slot of the shard's stream (see Cache.Keys).
func AcceptedKey(prefix string, shard int) string {
	return prefix + "agents:accepted:{" + strconv.Itoa(shard) + "}"
}

// AcceptedSinceKey is the key holding the time (Unix nanoseconds) from which the accepted record
// is complete: written once by the first reader (AcceptedSince), and missing again whenever
// Redis lost the record with it.
func AcceptedSinceKey(prefix string) string { return prefix + "agents:accepted:since" }

// Accepted returns the time of every agent's last accepted batch under prefix, merging the
// record of shards 0 to shards-1 (STREAM_SHARDS) read in one pipeline. A field that is not a
// number is left out.
func Accepted(ctx context.Context, client redis.UniversalClient, prefix string, shards int) (map[string]time.Time, error) {
	shards = max(shards, 1)
	pipe := client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, shards)
	for i := range cmds {
		cmds[i] = pipe.HGetAll(ctx, AcceptedKey(prefix, i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading accepted times: %w", err)
	}
	out := make(map[string]time.Time)
	for _, cmd := range cmds {
		for id, v := range cmd.Val() {
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			if t := time.Unix(0, ns); t.After(out[id]) {
				out[id] = t
			}
		}
	}
	return out, nil
}

// AcceptedSince returns the time from which the accepted record under prefix is complete. When
// the key is missing (a new deployment, or Redis lost its data) it is set to now, atomically
// (SET NX), so every reader agrees on one time.
func AcceptedSince(ctx context.Context, client redis.UniversalClient, prefix string, now time.Time) (time.Time, error) {
	key := AcceptedSinceKey(prefix)
	v, err := client.SetArgs(ctx, key, now.UnixNano(), redis.SetArgs{Mode: "NX", Get: true}).Result()
	if errors.Is(err, redis.Nil) {
		return now, nil // set by this call
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading %s: %w", key, err)
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading %s: %q is not a time: %w", key, v, err)
	}
	return time.Unix(0, ns), nil
}
