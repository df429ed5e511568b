package alerter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// PipelineProbe is what pipeline rules (alert.KindPipeline) look at.
type PipelineProbe struct {
	// Streams are the streams whose consumer groups group_lag and no_consumer rules watch (the
	// metrics shards and the alerts streams); each watched group's replay stream
	// (stream.ReplayKey) is added.
	Streams []string
	// DeadLetters are the dead-letter streams dead_letters rules watch, by full key; the subject
	// of each alert is the key without the Redis prefix ("metrics:dead").
	DeadLetters []string
	// Stores checks each store store_down rules can name (alert.StoreRedis, StorePostgreSQL,
	// StoreInfluxDB): nil means reachable. Redis is pinged through the evaluator's own client
	// when absent here.
	Stores map[string]func(context.Context) error
	// StoreTimeout bounds each store check; 0 means 5s.
	StoreTimeout time.Duration
}

// WatchPipeline makes CheckPipeline evaluate the pipeline rules against p. It must be called
// before the evaluator is used; without it CheckPipeline does nothing.
func (e *Evaluator) WatchPipeline(p PipelineProbe) { e.pipeline = &p }

// pipelineItem is one subject of one pipeline rule with its measured value.
type pipelineItem struct {
	key   alert.Key
	rule  *alert.Rule
	value float64
	label string // the label naming the subject: group, store or stream
}

// CheckPipeline evaluates every enabled pipeline rule at now (alert.StepPipeline), one alert
// per subject: a group_lag rule per group with its lag summed over the streams it reads (a
// group Redis cannot tell the lag of, or that does not exist, is not evaluated); a no_consumer
// rule per group with the number of its consumers that read within the rule's idle (a group
// that does not exist has none); a dead_letters rule per dead-letter stream with its length; a
// store_down rule per store with 1 when the alerter cannot reach it; a watchdog rule with 1,
// always. The changes are committed in one transaction like CheckSilent's, so several copies
// checking at once emit each transition once.
//
// Redis unreachable is the one failure it cannot report: the states, the alerts stream and
// the notifier all live there, so nothing fires (it returns the error, which RunSilent logs);
// the watchdog's notifications stop, which is what a dead man's switch receiver alerts on, and
// the alerter's /readyz fails.
func (e *Evaluator) CheckPipeline(ctx context.Context, now time.Time) error {
	idx := e.rules.Index()
	if e.pipeline == nil || idx == nil || len(idx.Pipeline()) == 0 {
		return nil
	}
	start := time.Now()
	defer func() { e.metrics.pipelineSeconds.Observe(time.Since(start).Seconds()) }()
	items, err := e.measurePipeline(ctx, idx.Pipeline())
	if err != nil {
		return fmt.Errorf("checking pipeline rules: %w", err)
	}
	refs := make([]stateRef, len(items))
	for i, it := range items {
		refs[i] = e.states.ref(it.key) // no agent: shard 0
	}
	ups, err := e.states.commit(ctx, refs, func(sel []int, recs []*record) []update {
		var ups []update
		for j, i := range sel {
			it := items[i]
			prev := alert.NewState(it.key)
			if recs[j] != nil {
				prev = recs[j].State
				prev.Key = it.key
			}
			next, trs := alert.StepPipeline(prev, *it.rule, it.value, now)
			if len(trs) == 0 && next.Status == prev.Status && next.WarningSince.Equal(prev.WarningSince) &&
				next.CriticalSince.Equal(prev.CriticalSince) && (recs[j] != nil || !next.Active()) {
				continue // nothing but the value changed: not worth a write per subject per check
			}
			ups = append(ups, e.checkUpdate(refs[i].key, it.rule, next, trs, pipelineSubject(it)))
		}
		return e.keepEncodable(ups)
	})
	e.committed(ups)
	if err != nil {
		return fmt.Errorf("checking pipeline rules: %w", err)
	}
	return nil
}

// pipelineSubject describes the subject of a pipeline alert: no agent, its name for {{.Agent}}
// in summaries, and labels check and group, store or stream.
func pipelineSubject(it pipelineItem) subject {
	s := subject{name: "alerting", tags: []metric.Tag{{Key: "check", Value: string(it.rule.Pipeline.Check)}}}
	if it.label != "" {
		s.name = it.key.Series
		s.tags = append(s.tags, metric.Tag{Key: it.label, Value: it.key.Series})
	}
	return s
}

// measurePipeline reads what rules need and returns one item per rule and subject.
func (e *Evaluator) measurePipeline(ctx context.Context, rules []*alert.Rule) ([]pipelineItem, error) {
	p := e.pipeline
	var groups []stream.GroupInfo
	needGroups, needDead := false, false
	var watched, storeNames []string
	rules = slices.DeleteFunc(slices.Clone(rules), func(r *alert.Rule) bool { return r.Pipeline == nil })
	for _, r := range rules {
		switch r.Pipeline.Check {
		case alert.CheckGroupLag, alert.CheckNoConsumer:
			needGroups = true
			for _, g := range r.Pipeline.Groups {
				if !slices.Contains(watched, g) {
					watched = append(watched, g)
				}
			}
		case alert.CheckDeadLetters:
			needDead = true
		case alert.CheckStoreDown:
			for _, s := range r.Pipeline.Stores {
				if !slices.Contains(storeNames, s) {
					storeNames = append(storeNames, s)
				}
			}
		}
	}
	if needGroups {
		keys := slices.Clone(p.Streams)
		for _, g := range watched {
			keys = append(keys, stream.ReplayKey(e.states.prefix, g))
		}
		var err error
		if groups, err = stream.Groups(ctx, e.states.rdb, keys...); err != nil {
			return nil, err
		}
	}
	dead := map[string]int64{}
	if needDead {
		pipe := e.states.rdb.Pipeline()
		cmds := make([]interface{ Val() int64 }, len(p.DeadLetters))
		for i, k := range p.DeadLetters {
			cmds[i] = pipe.XLen(ctx, k) // a missing stream has length 0
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("counting dead letters: %w", err)
		}
		for i, k := range p.DeadLetters {
			dead[k] = cmds[i].Val()
		}
	}
	down := e.storesDown(ctx, storeNames)

	var items []pipelineItem
	add := func(r *alert.Rule, subject, label string, v float64) {
		items = append(items, pipelineItem{key: alert.Key{RuleID: r.ID, Series: subject}, rule: r, value: v, label: label})
	}
	for _, r := range rules {
		switch r.Pipeline.Check {
		case alert.CheckGroupLag:
			for _, g := range r.Pipeline.Groups {
				if lag, ok := groupLag(groups, g); ok {
					add(r, g, "group", float64(lag))
				}
			}
		case alert.CheckNoConsumer:
			for _, g := range r.Pipeline.Groups {
				n, err := e.liveConsumers(ctx, groups, g, time.Duration(r.Pipeline.Idle))
				if err != nil {
					return nil, err
				}
				add(r, g, "group", float64(n))
			}
		case alert.CheckDeadLetters:
			for _, k := range p.DeadLetters {
				add(r, strings.TrimPrefix(k, e.states.prefix), "stream", float64(dead[k]))
			}
		case alert.CheckStoreDown:
			for _, s := range r.Pipeline.Stores {
				v := 0.0
				if down[s] {
					v = 1
				}
				add(r, s, "store", v)
			}
		case alert.CheckWatchdog:
			add(r, "", "", 1)
		}
	}
	return items, nil
}

// groupLag returns the lag of group summed over the streams it reads, and false when the group
// exists nowhere or Redis cannot tell its lag on one of them.
func groupLag(groups []stream.GroupInfo, group string) (int64, bool) {
	var total int64
	found := false
	for _, g := range groups {
		if g.Group != group {
			continue
		}
		if g.Lag < 0 {
			return 0, false
		}
		found = true
		total += g.Lag
	}
	return total, found
}

// liveConsumers returns how many distinct consumers of group count as live: those that read
// any of its streams within idle, or, while no entry has waited for the group longer than idle,
// all of them. Redis before 7.2 refreshes a consumer's idle time only when a read delivers
// something, so on a quiet stream a healthy consumer looks idle: absence is told only when work
// waits. A group that exists nowhere has none.
func (e *Evaluator) liveConsumers(ctx context.Context, groups []stream.GroupInfo, group string, idle time.Duration) (int, error) {
	live, all := map[string]bool{}, map[string]bool{}
	waiting := false
	for _, g := range groups {
		if g.Group != group {
			continue
		}
		for _, c := range g.Consumers {
			all[c.Name] = true
			if c.Idle < idle {
				live[c.Name] = true
			}
		}
		if g.Lag == 0 || waiting {
			continue
		}
		at, ok, err := stream.OldestUndelivered(ctx, e.states.rdb, g.Stream, g.LastDeliveredID)
		if err != nil {
			return 0, err
		}
		waiting = ok && time.Since(at) > idle
	}
	if !waiting {
		return len(all), nil
	}
	return len(live), nil
}

// storesDown checks the named stores at once, each within the probe's timeout, and returns
// those that failed. A store the probe has no check for (other than Redis) counts as reachable:
// the alerter cannot tell.
func (e *Evaluator) storesDown(ctx context.Context, names []string) map[string]bool {
	timeout := e.pipeline.StoreTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	down := map[string]bool{}
	for _, name := range names {
		check := e.pipeline.Stores[name]
		if check == nil && name == alert.StoreRedis {
			check = func(ctx context.Context) error { return e.states.rdb.Ping(ctx).Err() }
		}
		if check == nil {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := check(cctx); err != nil {
				e.logger.Warn("store unreachable", "store", name, "err", err)
				mu.Lock()
				down[name] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return down
}
