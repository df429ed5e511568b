package rollup

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// errNotWritten is returned by Marker.Handle while the writer group has not yet stored the
// batch's points: marking now could compute a window before its points are in InfluxDB, and
// nothing would mark it again. The consumer retries the batch after RetryAfter.
type errNotWritten struct {
	stream, id, group string
	wait              time.Duration
}

func (e *errNotWritten) Error() string {
	return fmt.Sprintf("entry %s of %s not yet written by group %q", e.id, e.stream, e.group)
}

// RetryAfter implements stream.RetryAfterError.
func (e *errNotWritten) RetryAfter() time.Duration { return e.wait }

// writtenBelow returns, per stream of the batch, the first id that group has not yet finished
// (acked): its smallest pending id, or the id after its last-delivered one. Every entry below it
// has been handled by the group. A stream without that group is left out.
func writtenBelow(ctx context.Context, rdb redis.UniversalClient, group string, keys []string) (map[string]stream.ID, error) {
	infos := make([]*redis.XInfoGroupsCmd, len(keys))
	pend := make([]*redis.XPendingCmd, len(keys))
	// One MULTI per stream, so that the group's position and its pending entries describe the same
	// moment; the streams are in different Redis Cluster slots (one per shard), so each has its own,
	// all sent at once.
	var eg errgroup.Group
	for i, k := range keys {
		eg.Go(func() error {
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				infos[i] = p.XInfoGroups(ctx, k)
				pend[i] = p.XPending(ctx, k, group)
				return nil
			})
			if err != nil && !strings.Contains(err.Error(), "NOGROUP") {
				return fmt.Errorf("reading position of group %q on %s: %w", group, k, err)
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]stream.ID, len(keys))
	for i, k := range keys {
		for _, g := range infos[i].Val() {
			if g.Name != group {
				continue
			}
			last, err := stream.ParseID(g.LastDeliveredID)
			if err != nil {
				return nil, err
			}
			below := last.Next()
			if p := pend[i].Val(); p != nil && p.Count > 0 {
				lower, err := stream.ParseID(p.Lower)
				if err != nil {
					return nil, err
				}
				if lower.Less(below) {
					below = lower
				}
			}
			out[k] = below
		}
	}
	return out, nil
}

// waitForWriter returns nil when group has handled every message of batch, an *errNotWritten
// when it has not yet, or a Redis error.
func waitForWriter(ctx context.Context, rdb redis.UniversalClient, group string, batch []*stream.Message, wait time.Duration) error {
	maxByStream := map[string]stream.ID{}
	for _, m := range batch {
		id, err := stream.ParseID(m.ID)
		if err != nil {
			return err
		}
		if cur, ok := maxByStream[m.Stream]; !ok || cur.Less(id) {
			maxByStream[m.Stream] = id
		}
	}
	keys := slices.Collect(maps.Keys(maxByStream))
	below, err := writtenBelow(ctx, rdb, group, keys)
	if err != nil {
		return err
	}
	for k, maxID := range maxByStream {
		b, ok := below[k]
		if !ok || !maxID.Less(b) {
			return &errNotWritten{stream: k, id: maxID.String(), group: group, wait: wait}
		}
	}
	return nil
}
