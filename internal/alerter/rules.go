package alerter

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/worker"
)

// RulesMaxAge is how long the alerter keeps a rule index without reloading it even when the
// rules version did not change: a safety net for a bump that was lost (say, Redis restarted
// between a rule's commit and its BumpRulesVersion).
const RulesMaxAge = 30 * time.Second

// RuleSource lists every alert rule, enabled or not; *postgres.RuleStore implements it.
type RuleSource interface {
	List(ctx context.Context) ([]alert.Rule, error)
}

// Rules holds the current rules as an alert.Index, reloaded from a RuleSource whenever the rules
// version in Redis (alertredis.RulesVersion) changes. Readers get the index with Index; a reload
// swaps in a new one atomically, so a batch sees one consistent set of rules. It is safe for
// concurrent use.
type Rules struct {
	src     RuleSource
	rdb     redis.UniversalClient
	prefix  string
	logger  *slog.Logger
	metrics *metrics

	idx atomic.Pointer[alert.Index]

	mu       sync.Mutex // serialises loads; guards the fields below
	version  int64
	loadedAt time.Time
}

// NewRules returns a Rules with no index yet (Index returns nil until Load succeeds). It reads
// the version under prefix in rdb and registers its metrics on reg (nil: none).
func NewRules(src RuleSource, rdb redis.UniversalClient, prefix string, logger *slog.Logger, reg prometheus.Registerer) *Rules {
	return &Rules{src: src, rdb: rdb, prefix: prefix, logger: logger.With("component", "alerter.rules"),
		metrics: newMetrics(reg)}
}

// Index returns the current rule index, or nil before the first successful Load. The index is
// immutable.
func (r *Rules) Index() *alert.Index { return r.idx.Load() }

// Version returns the rules version the current index was loaded at.
func (r *Rules) Version() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

// Load reads the rules version, then every rule, and swaps in their index. Reading the version
// first means that a change committed during the load bumps the version past the one recorded,
// so the next poll loads again. On error the current index stays.
func (r *Rules) Load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked(ctx)
}

func (r *Rules) loadLocked(ctx context.Context) error {
	v, err := alertredis.RulesVersion(ctx, r.rdb, r.prefix)
	if err != nil {
		r.metrics.ruleReloads.WithLabelValues("error").Inc()
		return fmt.Errorf("loading rules: %w", err)
	}
	rules, err := r.src.List(ctx)
	if err != nil {
		r.metrics.ruleReloads.WithLabelValues("error").Inc()
		return fmt.Errorf("loading rules: %w", err)
	}
	idx := alert.NewIndex(rules)
	r.idx.Store(idx)
	changed := v != r.version || r.loadedAt.IsZero()
	r.version, r.loadedAt = v, time.Now()
	r.metrics.ruleReloads.WithLabelValues("ok").Inc()
	r.metrics.rulesLoaded.Set(float64(idx.Len()))
	if changed {
		r.logger.Info("rules loaded", "rules", idx.Len(), "version", v)
	}
	return nil
}

// Run polls the rules version every poll and reloads the rules when it changed, or when the
// index is older than RulesMaxAge, until ctx is done; then it returns nil. Errors are logged and
// retried at the next poll, keeping the current index meanwhile.
func (r *Rules) Run(ctx context.Context, poll time.Duration) error {
	return worker.Every(ctx, poll, func(ctx context.Context) {
		if err := r.poll(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("reloading rules; keeping the current ones", "err", err)
		}
	})
}

// poll reloads the rules if their version changed or the index is too old.
func (r *Rules) poll(ctx context.Context) error {
	v, err := alertredis.RulesVersion(ctx, r.rdb, r.prefix)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v == r.version && time.Since(r.loadedAt) < RulesMaxAge && r.idx.Load() != nil {
		return nil
	}
	return r.loadLocked(ctx)
}
