package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ConsumerInfo is one consumer of a group as XINFO CONSUMERS tells it.
type ConsumerInfo struct {
	Name    string
	Pending int64
	// Idle is the time since the consumer last read (XREADGROUP, XCLAIM, XAUTOCLAIM).
	Idle time.Duration
}

// GroupInfo is one consumer group on one stream as XINFO GROUPS tells it, with its consumers.
type GroupInfo struct {
	Stream, Group string
	// Lag is the entries not yet delivered to the group, or -1 when Redis cannot tell
	// (entries were deleted past the group's position).
	Lag             int64
	Pending         int64
	EntriesRead     int64
	LastDeliveredID string
	Consumers       []ConsumerInfo
}

// Groups returns every consumer group of each stream of keys, in order, with its consumers. A
// stream that does not exist (a replay stream nobody created yet) has none.
func Groups(ctx context.Context, client redis.UniversalClient, keys ...string) ([]GroupInfo, error) {
	var out []GroupInfo
	for _, key := range keys {
		groups, err := client.XInfoGroups(ctx, key).Result()
		if err != nil {
			if strings.Contains(err.Error(), "no such key") || errors.Is(err, redis.Nil) {
				continue
			}
			return nil, fmt.Errorf("reading the groups of %s: %w", key, err)
		}
		for _, gr := range groups {
			g := GroupInfo{Stream: key, Group: gr.Name, Lag: gr.Lag, Pending: gr.Pending, EntriesRead: gr.EntriesRead,
				LastDeliveredID: gr.LastDeliveredID, Consumers: []ConsumerInfo{}}
			consumers, err := client.XInfoConsumers(ctx, key, gr.Name).Result()
			if err != nil {
				return nil, fmt.Errorf("reading the consumers of group %s on %s: %w", gr.Name, key, err)
			}
			for _, c := range consumers {
				g.Consumers = append(g.Consumers, ConsumerInfo{Name: c.Name, Pending: c.Pending, Idle: c.Idle})
			}
			out = append(out, g)
		}
	}
	return out, nil
}

// OldestUndelivered returns the time (from its id) of the first entry of key after
// lastDelivered, the group's last delivered id: the oldest entry waiting for the group. ok is
// false when none waits.
func OldestUndelivered(ctx context.Context, client redis.UniversalClient, key, lastDelivered string) (at time.Time, ok bool, err error) {
	msgs, err := client.XRangeN(ctx, key, "("+lastDelivered, "+", 1).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading the first undelivered entry of %s: %w", key, err)
	}
	if len(msgs) == 0 {
		return time.Time{}, false, nil
	}
	ms, _, _ := strings.Cut(msgs[0].ID, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("entry id %q of %s: %w", msgs[0].ID, key, err)
	}
	return time.UnixMilli(n), true, nil
}
