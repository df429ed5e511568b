package alerter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/worker"
)

// Evaluator turns samples and the agent registry into alert transitions. Handle evaluates
// batches of metrics entries against the threshold rules; CheckSilent evaluates agent_silent
// rules; Retire ends the alerts whose rule or agent went away. All three change states in Redis
// the same way (see states.commit), so any number of Evaluators, in any number of processes,
// emit each transition exactly once. It keeps nothing in memory but the rule and agent
// snapshots: a new Evaluator on the same Redis carries on where another stopped. It is safe for
// concurrent use.
type Evaluator struct {
	rules   *Rules
	agents  *Agents
	states  states
	logger  *slog.Logger
	metrics *metrics

	accepted *acceptedSource // nil: agent_silent reads last_seen only (JudgeSilenceByAccepted)
	pipeline *PipelineProbe  // nil: pipeline rules are not checked (WatchPipeline)
}

// NewEvaluator returns an Evaluator that keeps its states under prefix in rdb, split into
// shards shards like the metrics streams (STREAM_SHARDS; see package alertredis), reads rules
// and agents from the given snapshots, and registers its metrics on reg (nil: none).
func NewEvaluator(rdb redis.UniversalClient, prefix string, shards int, rules *Rules, agents *Agents, logger *slog.Logger, reg prometheus.Registerer) *Evaluator {
	logger = logger.With("component", "alerter")
	m := newMetrics(reg)
	return &Evaluator{
		rules:   rules,
		agents:  agents,
		states:  states{rdb: rdb, prefix: prefix, shards: max(shards, 1), logger: logger, metrics: m},
		logger:  logger,
		metrics: m,
	}
}

// errNoRules is returned by Handle until the rules are loaded: evaluating against no rules would
// ack samples that should have alerted.
var errNoRules = errors.New("alert rules not loaded yet")

// sample is one value of one series for one rule.
type sample struct {
	at       time.Time
	v        float64
	received time.Time // when the gateway accepted the entry; zero if unknown
}

// group gathers the samples of one alert (rule, agent, series) in a batch.
type group struct {
	key     alert.Key
	rule    *alert.Rule
	subj    subject
	samples []sample
}

// Handle is the stream.Handler of the metrics consumer. For each entry it takes the agent id
// from the metadata (stream.MetaAgent) and reads the payload (decoding only the points and
// fields some rule watches: pointReader); an entry without either, or whose line protocol cannot
// be read, is Rejected. For each point and numeric or boolean field it finds the rules that
// match (metric, agent selector, tag filter) and groups the samples per alert, in sample-time
// order. Then, in one transaction per shard over every alert of the batch in that shard, it
// applies alert.Step to each sample (through the alert's Window for aggregated rules) and writes
// the new states with their transitions (see states.commit). A sample whose aggregate is not
// finite is skipped and counted as an error of its rule (rule_errors_total), never a failure of
// the batch.
//
// When the transaction cannot be written for a reason that the same entries cause every time
// (a state or event that cannot be encoded: a permanentError), Handle splits the batch in halves
// and commits each on its own, recursively, so that every entry that can be evaluated is, and
// only the single entries that fail on their own are Rejected with the reason; the consumer
// dead-letters those and acks the rest, so one poisoned entry never holds back the alerts of
// other agents. It returns nil once every entry not Rejected is committed; any error it returns
// is transient (Redis unreachable, transaction conflicts) and the consumer retries the batch,
// which then changes nothing already changed: a sample not newer than an alert's last evaluated
// one is ignored, and halves and shards committed before the failure count as such.
func (e *Evaluator) Handle(ctx context.Context, batch []*stream.Message) error {
	start := time.Now()
	defer func() { e.metrics.evalSeconds.Observe(time.Since(start).Seconds()) }()
	idx := e.rules.Index()
	if idx == nil {
		return errNoRules
	}
	entries := make([]decoded, 0, len(batch))
	unknown := false
	reader := newPointReader(idx)
	for _, m := range batch {
		agentID, points, received, err := decodeEntry(reader, m)
		if err != nil {
			m.Reject(err)
			e.metrics.rejected.Inc()
			e.logger.Warn("rejecting metrics entry", "stream", m.Stream, "id", m.ID, "err", err)
			continue
		}
		if _, ok := e.agents.Get(agentID); !ok {
			unknown = true
		}
		entries = append(entries, decoded{m, agentID, points, received})
	}
	if unknown {
		// An agent registered since the last refresh: its labels decide the label selectors.
		if err := e.agents.refreshIfOlder(ctx, minOnDemandRefresh); err != nil {
			e.logger.Warn("reloading agents for an unknown agent", "err", err)
		}
	}
	return e.evaluateOrSplit(ctx, idx, entries)
}

// decoded is a metrics entry read by Handle.
type decoded struct {
	m        *stream.Message
	agentID  string
	points   []metric.Point
	received time.Time
}

// evaluateOrSplit evaluates entries in one transaction; on a permanentError it bisects them
// (see Handle) and Rejects the single entries that fail on their own. It returns only
// transient errors.
func (e *Evaluator) evaluateOrSplit(ctx context.Context, idx *alert.Index, entries []decoded) error {
	err := e.evaluate(ctx, idx, entries)
	if err == nil || !isPermanent(err) {
		return err
	}
	if len(entries) == 1 {
		m := entries[0].m
		m.Reject(err)
		e.metrics.rejected.Inc()
		e.logger.Error("metrics entry cannot be evaluated; dead-lettering it", "stream", m.Stream, "id", m.ID,
			"agent", entries[0].agentID, "err", err)
		return nil
	}
	mid := len(entries) / 2
	if err := e.evaluateOrSplit(ctx, idx, entries[:mid]); err != nil {
		return err
	}
	return e.evaluateOrSplit(ctx, idx, entries[mid:])
}

// evaluate groups the samples of entries per alert and commits their evaluation in one
// transaction per shard.
func (e *Evaluator) evaluate(ctx context.Context, idx *alert.Index, entries []decoded) error {
	groups := map[alert.Key]*group{}
	var order []*group
	var n int
	for _, en := range entries {
		agent, _ := e.agents.Get(en.agentID)
		var labels map[string]string
		if agent != nil {
			labels = agent.Labels
		}
		for i := range en.points {
			p := &en.points[i]
			series, seriesDone := "", false
			for _, f := range p.Fields {
				candidates := idx.For(p.Measurement, f.Key)
				if len(candidates) == 0 {
					continue
				}
				v, ok := alert.SampleValue(f.Value)
				if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				for _, r := range candidates {
					if !r.Matches(en.agentID, labels, p, f.Key) {
						continue
					}
					if !seriesDone {
						series, seriesDone = alert.SeriesKey(p), true
					}
					k := alert.Key{RuleID: r.ID, AgentID: en.agentID, Series: series}
					g := groups[k]
					if g == nil {
						// The series key is made of the tags, so every sample of g has these.
						g = &group{key: k, rule: r, subj: subject{agentID: en.agentID, agent: agent, tags: seriesTags(p)}}
						groups[k] = g
						order = append(order, g)
					}
					g.samples = append(g.samples, sample{at: time.Unix(0, p.Time).UTC(), v: v, received: en.received})
					n++
				}
			}
		}
	}
	if len(order) == 0 {
		return nil
	}
	refs := make([]stateRef, len(order))
	for i, g := range order {
		slices.SortStableFunc(g.samples, func(a, b sample) int { return a.at.Compare(b.at) })
		refs[i] = e.states.ref(g.key)
	}
	// The rule errors of each alert's last planning (a shard may plan again after a conflict).
	ruleErrs := make([][]ruleError, len(order))
	ups, err := e.states.commit(ctx, refs, func(sel []int, recs []*record) []update {
		var ups []update
		for j, i := range sel {
			ruleErrs[i] = ruleErrs[i][:0]
			if u, ok := e.step(refs[i].key, recs[j], order[i], &ruleErrs[i]); ok {
				ups = append(ups, u)
			}
		}
		return ups
	})
	e.committed(ups)
	if err != nil {
		return err
	}
	e.metrics.samples.Add(float64(n))
	for _, res := range ruleErrs {
		for _, re := range res {
			e.metrics.ruleErrors.WithLabelValues(re.rule, re.reason).Inc()
			e.logger.Error("alert rule cannot evaluate a sample; skipping it", "rule", re.rule, "agent", re.key.AgentID,
				"series", re.key.Series, "reason", re.reason, "err", re.err)
		}
	}
	return nil
}

// ruleError is a sample a rule could not evaluate, reported once its batch committed.
type ruleError struct {
	rule   string
	key    alert.Key
	reason string // metric label
	err    error
}

// decodeEntry reads the agent id, the points rules may evaluate (see pointReader) and the
// acceptance time of a metrics entry.
func decodeEntry(r *pointReader, m *stream.Message) (string, []metric.Point, time.Time, error) {
	if m.Msg == nil {
		return "", nil, time.Time{}, errors.New("entry has no message")
	}
	agentID := m.Msg.Metadata.Get(stream.MetaAgent)
	if agentID == "" {
		return "", nil, time.Time{}, fmt.Errorf("metadata %q is missing", stream.MetaAgent)
	}
	points, err := r.read(m.Msg.Payload)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	var received time.Time
	if ns, err := strconv.ParseInt(m.Msg.Metadata.Get(stream.MetaReceivedAt), 10, 64); err == nil && ns > 0 {
		received = time.Unix(0, ns)
	}
	return agentID, points, received, nil
}

// seriesTags returns p's tags other than "agent".
func seriesTags(p *metric.Point) []metric.Tag {
	out := make([]metric.Tag, 0, len(p.Tags))
	for _, t := range p.Tags {
		if t.Key != "agent" {
			out = append(out, t)
		}
	}
	return out
}

// step applies g's samples to the stored record rec (nil: never evaluated) and returns the
// update, or false when nothing changed (every sample already evaluated). A sample whose
// aggregate is not finite (which the Window's arithmetic rules out for finite samples) is not
// evaluated and is added to errs.
func (e *Evaluator) step(key string, rec *record, g *group, errs *[]ruleError) (update, bool) {
	rule := g.rule
	st := alert.NewState(g.key)
	if rec != nil {
		st = rec.State
		st.Key = g.key
	}
	var w *alert.Window
	if rule.NeedsWindow() {
		w = &alert.Window{}
		if rec != nil && len(rec.Window) > 0 {
			if dw, err := alert.DecodeWindow(rec.Window); err == nil {
				w = dw
			} else {
				e.metrics.corrupt.Inc()
				e.logger.Error("unreadable alert window; starting it afresh", "key", key, "err", err)
			}
		}
	}
	changed := false
	u := update{key: key}
	for _, s := range g.samples {
		v := s.v
		if w != nil {
			if w.Add(s.at, s.v, time.Duration(rule.Window)) {
				changed = true // even a sample older than LastEval counts in later aggregates
			}
			agg, ok := w.Aggregate(rule.Aggregation)
			if !ok {
				continue
			}
			if math.IsNaN(agg) || math.IsInf(agg, 0) {
				*errs = append(*errs, ruleError{rule: rule.ID, key: g.key, reason: "non_finite_aggregate",
					err: fmt.Errorf("%s over %s of the samples up to %s is %v", rule.Aggregation, rule.Window, s.at.Format(time.RFC3339Nano), agg)})
				continue
			}
			v = agg
		}
		next, trs := alert.Step(st, *rule, v, s.at)
		if next.LastEval.After(st.LastEval) {
			changed = true
		}
		st = next
		for _, t := range trs {
			u.events = append(u.events, event(rule, t, g.subj, e.logger))
			u.received = append(u.received, s.received)
		}
	}
	if !changed {
		return update{}, false
	}
	u.rec = &record{State: st}
	if w != nil {
		u.rec.Window = w.Encode()
	}
	if st.Active() {
		u.rec.Channels = rule.Channels
	} else {
		u.ttl = okTTL(rule)
	}
	transitionUpdate(&u, st, u.events)
	return u, true
}

// committed counts and logs the transitions of updates just committed.
func (e *Evaluator) committed(ups []update) {
	now := time.Now()
	for _, u := range ups {
		for i, ev := range u.events {
			e.metrics.transitions.WithLabelValues(string(ev.To)).Inc()
			if i < len(u.received) && !u.received[i].IsZero() {
				e.metrics.latency.Observe(now.Sub(u.received[i]).Seconds())
			}
			e.logger.Info("alert transition", "rule", ev.RuleID, "rule_name", ev.RuleName, "agent", ev.AgentID,
				"series", ev.Series, "from", ev.From, "to", ev.To, "severity", ev.Severity, "value", ev.Value,
				"at", ev.At, "id", ev.ID)
		}
	}
}

// keepEncodable prepares ups and returns those that could be encoded, logging and counting the
// others, so that one alert that cannot be stored never holds back the rest of a periodic check;
// the check tries it again next time.
func (e *Evaluator) keepEncodable(ups []update) []update {
	out := ups[:0]
	for _, u := range ups {
		if err := u.prepare(); err != nil {
			e.metrics.unencodable.Inc()
			e.logger.Error("alert state change cannot be encoded; leaving it out", "key", u.key, "err", err)
			continue
		}
		out = append(out, u)
	}
	return out
}

// silentBatch bounds how many agent_silent states one transaction covers.
const silentBatch = 500

// CheckSilent evaluates every enabled agent_silent rule for every agent of the registry
// snapshot it selects, at the evaluator's time now (alert.StepSilent): an agent that never sent
// anything counts from its registration. Transitions are keyed by last_seen and registration
// times, never by now, and committed like Handle's, so several copies checking at once emit
// each one once. It returns the first error; states already committed stay.
func (e *Evaluator) CheckSilent(ctx context.Context, now time.Time) error {
	start := time.Now()
	defer func() { e.metrics.silentSeconds.Observe(time.Since(start).Seconds()) }()
	idx := e.rules.Index()
	if idx == nil || len(idx.Silent()) == 0 {
		return nil
	}
	type item struct {
		key   alert.Key
		rule  *alert.Rule
		agent *agent.Agent
	}
	var view *acceptedView
	if e.accepted != nil {
		v, held, err := e.accepted.load(ctx, now)
		if err != nil {
			return fmt.Errorf("checking agent_silent rules: %w", err)
		}
		if held {
			e.metrics.silentHeld.WithLabelValues("lag").Add(float64(len(idx.Silent())))
			e.logger.Warn("agent_silent rules held back: the metrics streams lag behind")
			return nil
		}
		view = &v
	}
	var items []item
	agents := e.agents.All()
	for _, r := range idx.Silent() {
		if view != nil && now.Sub(view.since) <= time.Duration(r.After) {
			e.metrics.silentHeld.WithLabelValues("record_young").Inc()
			continue
		}
		for i := range agents {
			a := &agents[i]
			if r.Agents.Selects(a.ID, a.Labels) {
				items = append(items, item{alert.Key{RuleID: r.ID, AgentID: a.ID}, r, a})
			}
		}
	}
	refs := make([]stateRef, len(items))
	for i, it := range items {
		refs[i] = e.states.ref(it.key)
	}
	// Chunks of one shard each, mostly: one transaction per chunk.
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return refs[a].shard - refs[b].shard })
	for chunk := range slices.Chunk(order, silentBatch) {
		chunkRefs := make([]stateRef, len(chunk))
		for j, i := range chunk {
			chunkRefs[j] = refs[i]
		}
		ups, err := e.states.commit(ctx, chunkRefs, func(sel []int, recs []*record) []update {
			var ups []update
			for j, c := range sel {
				i := chunk[c]
				it := items[i]
				prev := alert.NewState(it.key)
				if recs[j] != nil {
					prev = recs[j].State
					prev.Key = it.key
				}
				lastSeen := it.agent.LastSeen
				if view != nil {
					lastSeen = view.lastReport(it.agent.ID, lastSeen)
				}
				next, trs := alert.StepSilent(prev, *it.rule, lastSeen, it.agent.CreatedAt, now)
				if recs[j] != nil && len(trs) == 0 && next.LastEval.Equal(prev.LastEval) {
					continue
				}
				ups = append(ups, e.checkUpdate(refs[i].key, it.rule, next, trs, subject{agentID: it.agent.ID, agent: it.agent}))
			}
			return e.keepEncodable(ups)
		})
		e.committed(ups)
		if err != nil {
			return fmt.Errorf("checking agent_silent rules: %w", err)
		}
	}
	return nil
}

// Retire ends the active alerts (alertredis.ActiveKey) whose rule was deleted or disabled,
// changed kind or metric, no longer selects the agent, or whose agent was deleted
// (alert.Retire: firing→resolved or pending→ok, with no recovery value). now is the time of the
// transitions: the rule change has no sample time, and the transaction, not the id, is what
// makes the transition happen once. The alert's state is deleted. An ActiveKey entry without a
// state behind it is removed silently.
//
// Retire reads every shard alert state was ever written in (alertredis.KnownShards). An active
// alert found in a shard other than its agent's (STREAM_SHARDS changed since it began:
// alertredis.Shard) is ended the same way in the shard that holds it, so that nothing stays
// active forever where no evaluation looks; the alert begins afresh in its new shard if its
// condition still holds.
func (e *Evaluator) Retire(ctx context.Context, now time.Time) error {
	idx := e.rules.Index()
	if idx == nil {
		return nil
	}
	known, err := alertredis.KnownShards(ctx, e.states.rdb, e.states.prefix, e.states.shards)
	if err != nil {
		return fmt.Errorf("retiring alerts: %w", err)
	}
	active, err := alertredis.ListActiveIn(ctx, e.states.rdb, e.states.prefix, known)
	if err != nil {
		return fmt.Errorf("retiring alerts: %w", err)
	}
	var stale []alertredis.Located
	refreshed := false
	for _, l := range active {
		a := l.Active
		if l.Shard != alertredis.Shard(a.AgentID, e.states.shards) {
			stale = append(stale, l)
			continue
		}
		r, ok := idx.Rule(a.RuleID)
		if a.Kind == string(alert.KindPipeline) {
			if !ok || pipelineRetired(r, a) {
				stale = append(stale, l)
			}
			continue // no agent behind it
		}
		agent, known := e.agents.Get(a.AgentID)
		if !known && !refreshed && ok && r.Enabled {
			// Registered since the last refresh, or deleted: ask the registry before ending it.
			refreshed = true
			if err := e.agents.refreshIfOlder(ctx, 0); err != nil {
				return fmt.Errorf("retiring alerts: %w", err)
			}
			agent, known = e.agents.Get(a.AgentID)
		}
		if !ok || retired(r, a, agent, known) {
			stale = append(stale, l)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	refs := make([]stateRef, len(stale))
	for i, l := range stale {
		refs[i] = stateRef{key: alertredis.StateKey(e.states.prefix, l.Shard, l.ID), shard: l.Shard}
	}
	ups, err := e.states.commit(ctx, refs, func(sel []int, recs []*record) []update {
		var ups []update
		for j, i := range sel {
			a := stale[i].Active
			u := update{key: refs[i].key, alertID: a.ID, inactive: true, clearAck: true}
			rec := recs[j]
			if rec == nil || !rec.State.Active() {
				if rec == nil {
					ups = append(ups, u) // an entry without a state: remove it
				}
				continue
			}
			_, trs := alert.Retire(rec.State, now)
			rule := retiredRule(idx, a, rec)
			subj := subject{agentID: a.AgentID, labels: a.Labels}
			if a.Kind == string(alert.KindPipeline) {
				subj.name = cmp.Or(a.Series, "alerting")
			}
			if agent, ok := e.agents.Get(a.AgentID); ok {
				subj.agent = agent
			}
			for _, t := range trs {
				ev := event(rule, t, subj, e.logger)
				if a.Kind == string(alert.KindPipeline) {
					ev.Metric = a.Metric // the check it fired for, whatever the rule checks now
				}
				u.events = append(u.events, ev)
			}
			ups = append(ups, u) // rec nil: the state is deleted
		}
		return e.keepEncodable(ups)
	})
	for _, u := range ups {
		e.metrics.retired.Add(float64(len(u.events)))
	}
	e.committed(ups)
	if err != nil {
		return fmt.Errorf("retiring alerts: %w", err)
	}
	return nil
}

// retired reports whether rule r no longer produces alert a of agent (known: whether the
// registry has the agent).
func retired(r *alert.Rule, a alert.Active, agent *agent.Agent, known bool) bool {
	switch {
	case !r.Enabled, string(r.Kind) != a.Kind:
		return true
	case r.Kind == alert.KindThreshold && r.Metric != a.Metric:
		return true
	case !known:
		return true // the agent was deleted
	}
	return !r.Agents.Selects(agent.ID, agent.Labels)
}

// pipelineRetired reports whether pipeline rule r no longer produces alert a: disabled, of
// another kind or check, or no longer watching a's subject (a group or store taken off its
// list). Dead-letter subjects are the streams the probe watches, which rules do not list.
func pipelineRetired(r *alert.Rule, a alert.Active) bool {
	switch {
	case !r.Enabled, string(r.Kind) != a.Kind, r.PipelineMetric() != a.Metric:
		return true
	case r.Pipeline.Check == alert.CheckDeadLetters:
		return false
	}
	return !slices.Contains(r.Subjects(), a.Series)
}

// retiredRule returns the rule to describe a retired alert with: the rule itself while it
// exists, else what the active entry and the state remember of it.
func retiredRule(idx *alert.Index, a alert.Active, rec *record) *alert.Rule {
	if r, ok := idx.Rule(a.RuleID); ok {
		return r
	}
	// Summary stays empty (alert.DefaultSummary): a.Summary is rendered text, not a template.
	return &alert.Rule{ID: a.RuleID, Name: a.RuleName, Kind: alert.Kind(a.Kind), Metric: a.Metric,
		Channels: rec.Channels}
}

// RunSilent runs CheckSilent, CheckPipeline and then Retire every interval until ctx is done,
// then returns nil. Errors are logged and the work is tried again at the next tick.
func (e *Evaluator) RunSilent(ctx context.Context, interval time.Duration) error {
	return worker.Every(ctx, interval, func(ctx context.Context) {
		if err := e.CheckSilent(ctx, time.Now()); err != nil && ctx.Err() == nil {
			e.logger.Warn("agent_silent check failed; retrying at the next tick", "err", err)
		}
		if err := e.CheckPipeline(ctx, time.Now()); err != nil && ctx.Err() == nil {
			e.logger.Warn("pipeline check failed; retrying at the next tick", "err", err)
		}
		if err := e.Retire(ctx, time.Now()); err != nil && ctx.Err() == nil {
			e.logger.Warn("retiring alerts of changed rules failed; retrying at the next tick", "err", err)
		}
	})
}
