package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/ops"
)

// AgedStream is a stream kept for a time rather than until consumed: entries older than MaxAge
// are deleted, but never one that a consumer group on it has not acked yet.
type AgedStream struct {
	Key    string
	MaxAge time.Duration // 0: never trimmed
}

// AgeTrimmer bounds streams by age (XTRIM MINID at now-MaxAge, raised to no more than the
// smallest id a group still needs): the alerts stream, read by the notifier and the history
// writer, grows with every alert transition and would otherwise grow forever. Several may run at
// once: trimming below a MINID is idempotent.
type AgeTrimmer struct {
	client  redis.UniversalClient
	streams []AgedStream
	logger  *slog.Logger
	trimmed *prometheus.CounterVec
	now     func() time.Time
}

// NewAgeTrimmer returns an AgeTrimmer of streams; its counter agentmonitor_stream_aged_out_total
// goes to reg (nil: not registered). A nil logger discards logs.
func NewAgeTrimmer(client redis.UniversalClient, streams []AgedStream, reg prometheus.Registerer, logger *slog.Logger) (*AgeTrimmer, error) {
	if client == nil {
		return nil, errors.New("creating age trimmer: nil redis client")
	}
	for _, s := range streams {
		if s.MaxAge < 0 {
			return nil, fmt.Errorf("creating age trimmer: max age of %s is %s: want >= 0", s.Key, s.MaxAge)
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	trimmed, err := ops.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "aged_out_total",
		Help: "Entries deleted from a stream kept by age (the alerts stream) once older than its maximum age and acked by every group.",
	}, []string{"stream"}))
	if err != nil {
		return nil, fmt.Errorf("creating age trimmer: registering metrics: %w", err)
	}
	return &AgeTrimmer{client: client, streams: streams, logger: logger.With("component", "stream.agetrimmer"), trimmed: trimmed, now: time.Now}, nil
}

// Run trims every interval until ctx is done, then returns nil; errors are logged.
func (a *AgeTrimmer) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if _, err := a.TrimOnce(ctx); err != nil && ctx.Err() == nil {
			a.logger.Warn("trimming streams by age failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// TrimOnce trims every stream once and returns how many entries it deleted.
func (a *AgeTrimmer) TrimOnce(ctx context.Context) (int64, error) {
	var total int64
	var errs []error
	for _, s := range a.streams {
		if s.MaxAge == 0 {
			continue
		}
		n, err := a.trim(ctx, s)
		if err != nil {
			errs = append(errs, err)
		}
		if n > 0 {
			a.trimmed.WithLabelValues(s.Key).Add(float64(n))
			a.logger.Debug("trimmed stream by age", "stream", s.Key, "deleted", n, "max_age", s.MaxAge)
		}
		total += n
	}
	return total, errors.Join(errs...)
}

func (a *AgeTrimmer) trim(ctx context.Context, s AgedStream) (int64, error) {
	cutoff := a.now().Add(-s.MaxAge).UnixMilli()
	if cutoff <= 0 {
		return 0, nil
	}
	minID := ID{ms: uint64(cutoff)}
	groups, err := a.client.XInfoGroups(ctx, s.Key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return 0, nil
		}
		return 0, fmt.Errorf("reading groups of %s: %w", s.Key, err)
	}
	need, ok, err := groupsNeed(ctx, a.client, s.Key, groups)
	if err != nil {
		return 0, err
	}
	if ok && need.Less(minID) {
		minID = need
	}
	n, err := a.client.XTrimMinID(ctx, s.Key, minID.String()).Result()
	if err != nil {
		return 0, fmt.Errorf("trimming %s below %s: %w", s.Key, minID, err)
	}
	return n, nil
}

// groupsNeed returns the smallest id a consumer group on key still needs: for each of groups
// (XINFO GROUPS read by the caller), its smallest pending id, or the id after its last-delivered
// id when nothing is pending; ok is false without groups.
//
// XINFO GROUPS and each group's XPENDING summary are read again in one MULTI, so that they
// describe the same moment: read apart, a group could deliver entries between the two reads and
// its new pending entries would be trimmed.
func groupsNeed(ctx context.Context, client redis.UniversalClient, key string, groups []redis.XInfoGroup) (ID, bool, error) {
	if len(groups) == 0 {
		return ID{}, false, nil
	}
	var info *redis.XInfoGroupsCmd
	pending := make([]*redis.XPendingCmd, len(groups))
	if _, err := client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		info = pipe.XInfoGroups(ctx, key)
		for i, g := range groups {
			pending[i] = pipe.XPending(ctx, key, g.Name)
		}
		return nil
	}); err != nil {
		return ID{}, false, fmt.Errorf("reading group positions on %s: %w", key, err)
	}
	byName := make(map[string]*redis.XPending, len(groups))
	for i, g := range groups {
		byName[g.Name] = pending[i].Val()
	}
	var minID ID
	found := false
	for _, g := range info.Val() {
		last, err := ParseID(g.LastDeliveredID)
		if err != nil {
			return ID{}, false, fmt.Errorf("group %s on %s: %w", g.Name, key, err)
		}
		need := last.Next()
		// A group created between the two reads has no XPENDING here: nothing of it is pending yet.
		if p := byName[g.Name]; p != nil && p.Count > 0 {
			lower, err := ParseID(p.Lower)
			if err != nil {
				return ID{}, false, fmt.Errorf("group %s on %s: %w", g.Name, key, err)
			}
			if lower.Less(need) {
				need = lower
			}
		}
		if !found || need.Less(minID) {
			minID, found = need, true
		}
	}
	return minID, found, nil
}

// AgeTrimConfig is how long the streams kept by age keep their entries.
type AgeTrimConfig struct {
	AlertsMaxAge time.Duration `env:"ALERTS_STREAM_MAX_AGE" envDefault:"168h" help:"how long alerts-stream entries are kept once every group has acked them (0: forever)"`
}

// Validate reports a negative age.
func (c AgeTrimConfig) Validate() error {
	if c.AlertsMaxAge < 0 {
		return fmt.Errorf("ALERTS_STREAM_MAX_AGE=%s: want >= 0", c.AlertsMaxAge)
	}
	return nil
}
