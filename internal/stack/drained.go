package stack

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Drained reports whether the consumer group has read and acknowledged every entry of each
// stream: XINFO GROUPS says lag 0 (nothing left to deliver) and pending 0 (nothing delivered but
// unacknowledged). With group "" every group of each stream must be drained. A stream that does
// not exist yet counts as drained (nothing was written to it); a stream that exists without the
// group does not (the consumer has not started). When Redis cannot tell the lag (entries were
// deleted from the middle), the group's last delivered id is compared with the stream's last id.
// The string says what is not drained yet.
func Drained(ctx context.Context, rdb redis.UniversalClient, group string, streams ...string) (bool, string, error) {
	for _, key := range streams {
		groups, err := rdb.XInfoGroups(ctx, key).Result()
		if err != nil {
			if strings.Contains(err.Error(), "no such key") {
				continue
			}
			return false, "", fmt.Errorf("XINFO GROUPS %s: %w", key, err)
		}
		found := false
		for _, g := range groups {
			if group != "" && g.Name != group {
				continue
			}
			found = true
			lag := g.Lag
			if lag < 0 {
				info, err := rdb.XInfoStream(ctx, key).Result()
				if err != nil {
					return false, "", fmt.Errorf("XINFO STREAM %s: %w", key, err)
				}
				lag = 0
				if g.LastDeliveredID != info.LastGeneratedID {
					lag = 1
				}
			}
			if lag != 0 || g.Pending != 0 {
				return false, fmt.Sprintf("group %s on %s: lag %d, pending %d", g.Name, key, g.Lag, g.Pending), nil
			}
		}
		if !found {
			if group == "" {
				return false, fmt.Sprintf("no consumer group on %s yet", key), nil
			}
			return false, fmt.Sprintf("no group %s on %s yet", group, key), nil
		}
	}
	return true, "", nil
}
