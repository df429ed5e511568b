package rollup

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// Window is one rollup window of one measurement: tier index into influx.Tiers, the measurement,
// and the window's start (aligned to the tier's width from the Unix epoch, UTC).
type Window struct {
	Tier        int
	Measurement string
	Start       time.Time
}

// End returns the end of the window (exclusive).
func (w Window) End() time.Time { return w.Start.Add(influx.Tiers[w.Tier].Width) }

// String names the window for logs: "5m cpu 2026-11-30T10:05:00Z".
func (w Window) String() string {
	return influx.Tiers[w.Tier].Name + " " + w.Measurement + " " + w.Start.UTC().Format(time.RFC3339)
}

// Parent returns the window of the next coarser tier that holds w, and false for the coarsest.
func (w Window) Parent() (Window, bool) {
	if w.Tier+1 >= len(influx.Tiers) {
		return Window{}, false
	}
	return WindowAt(w.Tier+1, w.Measurement, w.Start), true
}

// WindowAt returns the window of tier that holds time t.
func WindowAt(tier int, measurement string, t time.Time) Window {
	return Window{Tier: tier, Measurement: measurement, Start: alignStart(t, influx.Tiers[tier].Width)}
}

// alignStart truncates t to a multiple of width since the Unix epoch (also before 1970).
func alignStart(t time.Time, width time.Duration) time.Time {
	ns, w := t.UnixNano(), int64(width)
	start := ns - ns%w
	if ns%w < 0 {
		start -= w
	}
	return time.Unix(0, start).UTC()
}

// member is the window's member in its tier's sets: "<start unix seconds>|<measurement>". The
// measurement goes last, so any byte it holds is kept.
func (w Window) member() string {
	return strconv.FormatInt(w.Start.Unix(), 10) + "|" + w.Measurement
}

func parseMember(tier int, m string) (Window, error) {
	sec, name, ok := strings.Cut(m, "|")
	s, err := strconv.ParseInt(sec, 10, 64)
	if !ok || err != nil || name == "" {
		return Window{}, fmt.Errorf("malformed rollup window %q", m)
	}
	return Window{Tier: tier, Measurement: name, Start: time.Unix(s, 0).UTC()}, nil
}

// Store keeps the rollup windows waiting to be computed, in Redis: per tier a sorted set of dirty
// windows scored by the time (Unix ms) they may be computed, and a sorted set of windows in flight
// scored by the expiry of their lease. A window is in flight with one worker at a time; a mark
// that arrives meanwhile stays in the dirty set and is computed again after the lease is released,
// and a lease that expires (its worker died) puts the window back in the dirty set.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewStore returns a Store for the keys under prefix (REDIS_KEY_PREFIX).
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix}
}

// rollupTag is the Redis Cluster hash tag of every rollup key: the scripts that move a window
// between a tier's sets and its parent's dirty set, and the MULTI that reads every tier, touch
// several of these keys at once, so they share one slot. They are few and small (one member per
// dirty window), so one node holds them all.
const rollupTag = "{rollup}"

// DirtyKey returns the key of tier's dirty set.
func (s *Store) DirtyKey(tier int) string {
	return s.prefix + "rollup:" + rollupTag + ":dirty:" + influx.Tiers[tier].Name
}

// InflightKey returns the key of tier's in-flight set.
func (s *Store) InflightKey(tier int) string {
	return s.prefix + "rollup:" + rollupTag + ":inflight:" + influx.Tiers[tier].Name
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// Mark records the windows as dirty, each computable from its ready time on. A window already
// dirty keeps the later of the two times (ZADD GT), so a retry's backoff is not cut short.
func (s *Store) Mark(ctx context.Context, ready map[Window]time.Time) error {
	if len(ready) == 0 {
		return nil
	}
	byTier := map[int][]redis.Z{}
	for w, at := range ready {
		byTier[w.Tier] = append(byTier[w.Tier], redis.Z{Score: float64(ms(at)), Member: w.member()})
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for tier, zs := range byTier {
			for i := 0; i < len(zs); i += 1000 {
				p.ZAddGT(ctx, s.DirtyKey(tier), zs[i:min(i+1000, len(zs))]...)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("marking %d rollup windows dirty: %w", len(ready), err)
	}
	return nil
}

// claimScript returns expired leases to the dirty set, then moves up to ARGV[3] dirty windows
// whose ready time has come (ARGV[1], ms) and which are not in flight to the in-flight set with
// the lease expiry ARGV[2]. It returns the members claimed.
var claimScript = redis.NewScript(`
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZADD', KEYS[1], 'GT', ARGV[1], m)
end
local limit = tonumber(ARGV[3])
local scan = limit + redis.call('ZCARD', KEYS[2])
local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, scan)
local out = {}
for _, m in ipairs(ready) do
  if #out >= limit then break end
  if not redis.call('ZSCORE', KEYS[2], m) then
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZADD', KEYS[2], ARGV[2], m)
    out[#out + 1] = m
  end
end
return out
`)

// Lease is a claimed window: the worker holds it until Until (Unix ms), which also identifies
// the claim.
type Lease struct {
	Window Window
	Until  int64
}

// Claim takes up to limit windows of tier that are ready at now and in flight nowhere, leasing
// them for lease. Windows whose lease expired are first made dirty again.
func (s *Store) Claim(ctx context.Context, tier int, now time.Time, lease time.Duration, limit int) ([]Lease, error) {
	until := ms(now.Add(lease))
	res, err := claimScript.Run(ctx, s.rdb, []string{s.DirtyKey(tier), s.InflightKey(tier)},
		ms(now), until, limit).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claiming %s rollup windows: %w", influx.Tiers[tier].Name, err)
	}
	leases := make([]Lease, 0, len(res))
	var bad []string
	for _, m := range res {
		w, err := parseMember(tier, m)
		if err != nil {
			bad = append(bad, m)
			continue
		}
		leases = append(leases, Lease{Window: w, Until: until})
	}
	if len(bad) > 0 {
		// Nothing but this package writes these sets; drop what it cannot read rather than
		// claiming it forever.
		s.rdb.ZRem(ctx, s.InflightKey(tier), bad)
		return leases, fmt.Errorf("dropped malformed rollup windows %q", bad)
	}
	return leases, nil
}

// releaseScript ends the lease ARGV[2] on window ARGV[1] in KEYS[1] (in flight). It then adds
// ARGV[3] to KEYS[2] with score ARGV[4] (GT) when given: the parent window after a success, the
// window itself after a failure. When the lease was no longer ours (it expired and another worker
// took the window over), the window is marked dirty again at ARGV[5] in KEYS[3]: what we wrote may
// have overwritten a newer computation. Returns 1 when the lease was still ours.
var releaseScript = redis.NewScript(`
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], 'GT', ARGV[4], ARGV[3])
end
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[3], 'GT', ARGV[5], ARGV[1])
return 0
`)

// Done releases a lease after the window was written and marks the parent window (if any) dirty,
// ready at parentReady, in the same step. It reports whether the lease was still held; when not,
// the window was marked dirty again (ready at now) so that it is recomputed.
func (s *Store) Done(ctx context.Context, l Lease, parentReady, now time.Time) (bool, error) {
	parentKey, parentMember := s.DirtyKey(l.Window.Tier), ""
	if p, ok := l.Window.Parent(); ok {
		parentKey, parentMember = s.DirtyKey(p.Tier), p.member()
	}
	return s.release(ctx, l, parentKey, parentMember, parentReady, now)
}

// Retry releases a lease after a failed computation and marks the window dirty again, ready at
// retryAt (or later if it already was).
func (s *Store) Retry(ctx context.Context, l Lease, retryAt time.Time) error {
	_, err := s.release(ctx, l, s.DirtyKey(l.Window.Tier), l.Window.member(), retryAt, retryAt)
	return err
}

// Drop releases a lease without marking anything: the window cannot be computed (its data is
// refused by InfluxDB for good).
func (s *Store) Drop(ctx context.Context, l Lease, now time.Time) error {
	_, err := s.release(ctx, l, s.DirtyKey(l.Window.Tier), "", now, now)
	return err
}

func (s *Store) release(ctx context.Context, l Lease, markKey, markMember string, markAt, now time.Time) (bool, error) {
	n, err := releaseScript.Run(ctx, s.rdb,
		[]string{s.InflightKey(l.Window.Tier), markKey, s.DirtyKey(l.Window.Tier)},
		l.Window.member(), l.Until, markMember, ms(markAt), ms(now)).Int()
	if err != nil {
		return false, fmt.Errorf("releasing rollup window %s: %w", l.Window, err)
	}
	return n == 1, nil
}

// TierState is what waits in one tier: dirty windows (closed or not), those whose ready time has
// passed, those in flight, and the ready time of the oldest dirty window (zero when none).
type TierState struct {
	Dirty, Ready, Inflight int64
	OldestReady            time.Time
}

// State reads every tier's TierState at now.
func (s *Store) State(ctx context.Context, now time.Time) ([]TierState, error) {
	type cmds struct {
		dirty, inflight *redis.IntCmd
		ready           *redis.IntCmd
		oldest          *redis.ZSliceCmd
	}
	cs := make([]cmds, len(influx.Tiers))
	// One MULTI: a window moving between a tier's sets (or to its parent's) is counted once.
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := range influx.Tiers {
			cs[i].dirty = p.ZCard(ctx, s.DirtyKey(i))
			cs[i].inflight = p.ZCard(ctx, s.InflightKey(i))
			cs[i].ready = p.ZCount(ctx, s.DirtyKey(i), "-inf", strconv.FormatInt(ms(now), 10))
			cs[i].oldest = p.ZRangeWithScores(ctx, s.DirtyKey(i), 0, 0)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading rollup state: %w", err)
	}
	out := make([]TierState, len(influx.Tiers))
	for i, c := range cs {
		out[i] = TierState{Dirty: c.dirty.Val(), Ready: c.ready.Val(), Inflight: c.inflight.Val()}
		if z := c.oldest.Val(); len(z) == 1 {
			out[i].OldestReady = time.UnixMilli(int64(z[0].Score)).UTC()
		}
	}
	return out, nil
}
