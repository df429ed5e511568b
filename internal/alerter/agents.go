package alerter

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/worker"
	"github.com/prometheus/client_golang/prometheus"
)

// AgentSource pages through the agent registry; *postgres.AgentStore implements it.
type AgentSource interface {
	List(ctx context.Context, limit, offset int) ([]agent.Agent, int, error)
}

// agentPage is how many agents one List call reads.
const agentPage = 5000

// minOnDemandRefresh bounds how often a batch from an agent the snapshot does not know (one
// registered since the last refresh) may reload the registry.
const minOnDemandRefresh = 250 * time.Millisecond

// Agents is a snapshot of the agent registry (ids, names, labels, registration and last_seen
// times), reloaded periodically: label selectors and agent_silent rules read it. It is safe for
// concurrent use.
type Agents struct {
	src     AgentSource
	logger  *slog.Logger
	metrics *metrics

	snap atomic.Pointer[agentSnapshot]

	mu     sync.Mutex // one reload at a time; guards loaded
	loaded time.Time  // when the current snapshot's reload began
}

type agentSnapshot struct {
	list []agent.Agent
	byID map[string]*agent.Agent
}

// NewAgents returns an empty Agents reading from src; its metrics are registered on reg (nil:
// none).
func NewAgents(src AgentSource, logger *slog.Logger, reg prometheus.Registerer) *Agents {
	a := &Agents{src: src, logger: logger.With("component", "alerter.agents"), metrics: newMetrics(reg)}
	a.snap.Store(&agentSnapshot{byID: map[string]*agent.Agent{}})
	return a
}

// Get returns the agent with id from the snapshot, and whether it is there. The agent belongs
// to the snapshot: callers must not modify it.
func (a *Agents) Get(id string) (*agent.Agent, bool) {
	ag, ok := a.snap.Load().byID[id]
	return ag, ok
}

// All returns every agent of the snapshot, ordered by name. The slice belongs to the snapshot:
// callers must not modify it.
func (a *Agents) All() []agent.Agent { return a.snap.Load().list }

// Refresh reloads the whole registry and swaps in the new snapshot. On error the current
// snapshot stays.
func (a *Agents) Refresh(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refreshLocked(ctx)
}

func (a *Agents) refreshLocked(ctx context.Context) error {
	start := time.Now()
	var list []agent.Agent
	for {
		page, total, err := a.src.List(ctx, agentPage, len(list))
		if err != nil {
			a.metrics.agentRefresh.WithLabelValues("error").Inc()
			return fmt.Errorf("loading agents: %w", err)
		}
		list = append(list, page...)
		// Pages are separate snapshots: an agent created or deleted between two of them may
		// shift one in or out, which the next refresh repairs.
		if len(page) < agentPage || len(list) >= total {
			break
		}
	}
	snap := &agentSnapshot{list: list, byID: make(map[string]*agent.Agent, len(list))}
	for i := range list {
		snap.byID[list[i].ID] = &list[i]
	}
	a.snap.Store(snap)
	a.loaded = start
	a.metrics.agentRefresh.WithLabelValues("ok").Inc()
	a.metrics.agentsCached.Set(float64(len(list)))
	return nil
}

// refreshIfOlder reloads the registry unless the current snapshot's reload began less than age
// ago (waiting for a reload under way, which may be recent enough).
func (a *Agents) refreshIfOlder(ctx context.Context, age time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.loaded) < age {
		return nil
	}
	return a.refreshLocked(ctx)
}

// Run reloads the registry every interval until ctx is done, then returns nil. Errors are
// logged; the previous snapshot serves meanwhile.
func (a *Agents) Run(ctx context.Context, interval time.Duration) error {
	return worker.Every(ctx, interval, func(ctx context.Context) {
		if err := a.Refresh(ctx); err != nil && ctx.Err() == nil {
			a.logger.Warn("reloading agents; keeping the current snapshot", "err", err)
		}
	})
}
