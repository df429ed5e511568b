package alerter

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
)

// acceptedSource judges agent silence from what the gateway accepted (hotcache.Accepted) instead
// of PostgreSQL's last_seen alone, and tells when the pipeline cannot tell silence from its own
// delay. See Evaluator.JudgeSilenceByAccepted.
type acceptedSource struct {
	rdb     redis.UniversalClient
	prefix  string
	streams []string // the metrics streams, one per shard (the accepted record is kept per shard too)
	group   string   // the alerter's consumer group on them
	maxLag  int64
}

// acceptedView is what one CheckSilent reads: each agent's last accepted batch and the time from
// which that record is complete.
type acceptedView struct {
	at    map[string]time.Time
	since time.Time
}

// JudgeSilenceByAccepted makes CheckSilent take each agent's last report from the time of its
// last batch the gateway accepted (kept in Redis at ingest, hotcache.AcceptedKey), or last_seen
// when that is later, so that a pg-sync or PostgreSQL that falls behind no longer makes every
// agent look silent at once. CheckSilent then holds agent_silent rules back while the pipeline
// cannot tell: while the consumer group on the metrics streams lags by more than maxLag entries
// (the gateway refuses batches once the streams are full, and the alerter is behind anyway), and,
// per rule, while the accepted record is younger than the rule's after (a new deployment, or
// Redis lost the record). Held rules keep their states as they are. maxLag <= 0 disables the
// lag check. It must be called before the evaluator is used.
func (e *Evaluator) JudgeSilenceByAccepted(streams []string, group string, maxLag int64) {
	e.accepted = &acceptedSource{rdb: e.states.rdb, prefix: e.states.prefix, streams: streams, group: group, maxLag: maxLag}
}

// load reads the accepted record (fixing its start at now when it is missing) and the lag of
// the group. held is true when the lag is over the bound.
func (s *acceptedSource) load(ctx context.Context, now time.Time) (view acceptedView, held bool, err error) {
	if s.maxLag > 0 && len(s.streams) > 0 {
		lag, err := s.lag(ctx)
		if err != nil {
			return view, false, err
		}
		if lag > s.maxLag {
			return view, true, nil
		}
	}
	if view.since, err = hotcache.AcceptedSince(ctx, s.rdb, s.prefix, now); err != nil {
		return view, false, err
	}
	if view.at, err = hotcache.Accepted(ctx, s.rdb, s.prefix, len(s.streams)); err != nil {
		return view, false, err
	}
	return view, false, nil
}

// lag returns the entries of the metrics streams not yet delivered to the group, summed over the
// shards. A shard whose lag Redis cannot tell (entries deleted past the group's position) or
// that has no group yet counts as 0.
func (s *acceptedSource) lag(ctx context.Context) (int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.XInfoGroupsCmd, len(s.streams))
	for i, k := range s.streams {
		cmds[i] = pipe.XInfoGroups(ctx, k)
	}
	_, _ = pipe.Exec(ctx) // a stream not created yet answers with an error: read per command
	var total int64
	for i, c := range cmds {
		groups, err := c.Result()
		if err != nil {
			if isNoStream(err) {
				continue
			}
			return 0, fmt.Errorf("reading lag of %s: %w", s.streams[i], err)
		}
		for _, g := range groups {
			if g.Name == s.group && g.Lag > 0 {
				total += g.Lag
			}
		}
	}
	return total, nil
}

// isNoStream reports whether err is Redis's answer for a stream that does not exist.
func isNoStream(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "ERR no such key")
}

// lastReport returns the later of the agent's accepted time and its last_seen (nil: neither).
func (v *acceptedView) lastReport(agentID string, lastSeen *time.Time) *time.Time {
	at, ok := v.at[agentID]
	if !ok {
		return lastSeen
	}
	if lastSeen != nil && lastSeen.After(at) {
		return lastSeen
	}
	return &at
}
