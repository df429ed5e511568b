package stream

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// MaxShards is the largest STREAM_SHARDS accepted.
const MaxShards = 1024

// ShardsBeyondError is returned when streams of shards at or beyond the configured shard count
// hold entries that some consumer group has not handled: a deployment lowered STREAM_SHARDS
// without draining first (or some binary still runs with a larger count), and those entries would
// never be read. The README's shard-count procedure avoids it.
type ShardsBeyondError struct {
	Shards  int      // the configured STREAM_SHARDS
	Streams []string // the streams beyond it with unhandled entries, with their lengths
}

func (e *ShardsBeyondError) Error() string {
	return fmt.Sprintf("streams beyond STREAM_SHARDS=%d hold entries not yet handled by every consumer group: %s; "+
		"start every binary with the shard count they were written with, let every group drain (lag and pending 0), "+
		"then change STREAM_SHARDS (see the README, Redis key layout)", e.Shards, strings.Join(e.Streams, ", "))
}

// ShardsBeyond looks at the metrics streams of shards shards … MaxShards-1, which a deployment
// with shards shards neither writes nor reads. unhandled names those holding an entry some
// consumer group on it has not acked (or any entry, when the stream has no group), with its
// length; handled names those holding only entries every group acked, which can be deleted. One
// pipelined XLEN per possible shard, then the groups of each non-empty one.
func ShardsBeyond(ctx context.Context, client redis.UniversalClient, prefix string, shards int) (unhandled, handled []string, err error) {
	shards = max(shards, 1)
	if shards >= MaxShards {
		return nil, nil, nil
	}
	keys := StreamKeys(prefix, MaxShards)[shards:]
	pipe := client.Pipeline()
	lens := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		lens[i] = pipe.XLen(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("reading the lengths of streams beyond shard %d: %w", shards-1, err)
	}
	for i, k := range keys {
		n := lens[i].Val()
		if n == 0 {
			continue
		}
		done, err := allHandled(ctx, client, k)
		if err != nil {
			return nil, nil, err
		}
		if done {
			handled = append(handled, k)
		} else {
			unhandled = append(unhandled, k+" ("+strconv.FormatInt(n, 10)+" entries)")
		}
	}
	return unhandled, handled, nil
}

// allHandled reports whether every consumer group on key has acked its last entry.
func allHandled(ctx context.Context, client redis.UniversalClient, key string) (bool, error) {
	groups, err := client.XInfoGroups(ctx, key).Result()
	if err != nil {
		return false, fmt.Errorf("reading groups of %s: %w", key, err)
	}
	need, ok, err := groupsNeed(ctx, client, key, groups)
	if err != nil || !ok {
		return false, err
	}
	last, err := client.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return false, fmt.Errorf("reading the last entry of %s: %w", key, err)
	}
	if len(last) == 0 {
		return true, nil
	}
	id, err := ParseID(last[0].ID)
	if err != nil {
		return false, fmt.Errorf("last entry of %s: %w", key, err)
	}
	return id.Less(need), nil
}
