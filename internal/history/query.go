package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// piece is one tier's share of a query's range: [from, to).
type piece struct {
	tier     string
	from, to time.Time
}

// Query answers q: it plans it, finds how far each tier is rolled up (newest window first in the
// chosen tier, then in each finer tier for the rest of the range, down to raw points), reads every
// piece in one request, and merges the pieces into windows of Plan.Every.
func (e *Engine) Query(ctx context.Context, q Query) (Result, error) {
	p, err := e.Plan(q)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, e.cfg.QueryTimeout, ErrTimeout)
	defer cancel()
	pieces, err := e.pieces(ctx, q, p)
	if err != nil {
		return Result{}, e.queryErr(ctx, err)
	}
	stmts := make([]string, len(pieces))
	for i, pc := range pieces {
		stmts[i] = e.selectStmt(q, p, pc)
	}
	answers, err := e.store.QueryQL(ctx, strings.Join(stmts, "; "))
	if err != nil {
		return Result{}, e.queryErr(ctx, err)
	}
	series, err := e.merge(q, answers)
	if err != nil {
		return Result{}, err
	}
	n := 0
	for _, s := range series {
		n += len(s.Points)
	}
	if n > e.cfg.MaxPoints {
		return Result{}, tooManyPoints(int64(n), e.cfg.MaxPoints, p.Every)
	}
	return Result{
		Metric: q.Measurement + "." + q.Field, Fn: q.Fn, Every: FormatEvery(p.Every), Tier: p.Tier,
		Start: p.Start, End: p.End, Series: series,
	}, nil
}

// queryErr classifies a failed request to InfluxDB: timeout, refused statement, or unavailable.
func (e *Engine) queryErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), ErrTimeout) {
		return fmt.Errorf("%w after %s (HISTORY_QUERY_TIMEOUT): %w", ErrTimeout, e.cfg.QueryTimeout, err)
	}
	if errors.Is(err, influx.ErrStatement) {
		if msg := err.Error(); strings.Contains(msg, "database not found") || strings.Contains(msg, "retention policy not found") {
			// Not the caller's fault: the storage is not provisioned yet (it is at start).
			return fmt.Errorf("history storage is not provisioned yet: %s", msg)
		}
		return &QueryError{Msg: err.Error()}
	}
	return fmt.Errorf("querying history: %w", err)
}

// pieces splits the plan's range between its tier and the finer ones: each tier serves from where
// the coarser one stops up to the end of its newest window; raw points serve the rest.
func (e *Engine) pieces(ctx context.Context, q Query, p Plan) ([]piece, error) {
	if p.Tier == Raw {
		return []piece{{tier: Raw, from: p.Start, to: p.End}}, nil
	}
	var out []piece
	from := p.Start
	top, _ := tierByName(p.Tier)
	for i := len(influx.Tiers) - 1; i >= 0 && from.Before(p.End); i-- {
		t := influx.Tiers[i]
		if t.Width > top.Width {
			continue // coarser than the plan's tier (which may have been forced)
		}
		newest, ok, err := e.newest(ctx, q, t.Name, from, p.End)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		to := newest.Add(t.Width)
		if to.After(p.End) {
			to = p.End
		}
		if to.After(from) {
			out = append(out, piece{tier: t.Name, from: from, to: to})
			from = to
		}
	}
	if from.Before(p.End) {
		out = append(out, piece{tier: Raw, from: from, to: p.End})
	}
	return out, nil
}

// newest returns the start of the newest window of tier in [from, to) among q's series.
func (e *Engine) newest(ctx context.Context, q Query, tier string, from, to time.Time) (time.Time, bool, error) {
	stmt := fmt.Sprintf("SELECT last(%s) FROM %s WHERE %s", quoteIdent(q.Field+"_count"), e.source(tier, q.Measurement), e.where(q, from, to))
	answers, err := e.store.QueryQL(ctx, stmt)
	if err != nil {
		return time.Time{}, false, err
	}
	if len(answers) == 0 || len(answers[0]) == 0 || len(answers[0][0].Values) == 0 {
		return time.Time{}, false, nil
	}
	t, err := nanos(answers[0][0].Values[0][0])
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading newest window of tier %s: %w", tier, err)
	}
	return t, true, nil
}

// source returns the fully qualified measurement of tier: "db"."rp"."m", or "db".."m" for the
// database's default retention policy.
func (e *Engine) source(tier, measurement string) string {
	loc := e.layout.Raw
	if tier != Raw {
		loc = e.layout.Tiers[tier]
	}
	rp := ""
	if loc.RP != "" {
		rp = quoteIdent(loc.RP)
	}
	return quoteIdent(loc.Database) + "." + rp + "." + quoteIdent(measurement)
}

// where is the condition of q over [from, to). Tags are compared as "key"::tag, so that a field
// of the same name is never compared instead (PITFALLS.md).
func (e *Engine) where(q Query, from, to time.Time) string {
	var conds []string
	if len(q.Agents) > 0 {
		ors := make([]string, len(q.Agents))
		for i, a := range q.Agents {
			ors[i] = `"agent"::tag = ` + quoteString(a)
		}
		conds = append(conds, "("+strings.Join(ors, " OR ")+")")
	}
	for _, f := range q.Tags {
		conds = append(conds, quoteIdent(f.Key)+"::tag = "+quoteString(f.Value))
	}
	conds = append(conds, "time >= "+strconv.FormatInt(from.UnixNano(), 10), "time < "+strconv.FormatInt(to.UnixNano(), 10))
	return strings.Join(conds, " AND ")
}

// parts are the aggregates a function needs from each piece, in column order.
var parts = map[string][]string{
	"mean": {"sum", "count"}, "min": {"min"}, "max": {"max"}, "sum": {"sum"}, "count": {"count"}, "last": {"last"},
	"p95": {"p95"}, "p99": {"p99"},
}

// selectStmt reads one piece, grouped into windows of the plan's width. A tier's windows are
// re-aggregated by the contract's rules: min of min, max of max, sum of sum, count as the sum of
// counts, last of last; mean is computed later as sum/count.
func (e *Engine) selectStmt(q Query, p Plan, pc piece) string {
	var cols []string
	for _, part := range parts[q.Fn] {
		f := q.Field
		if pc.tier == Raw {
			switch part {
			case "p95", "p99":
				cols = append(cols, fmt.Sprintf("percentile(%s, %s)", quoteIdent(f), part[1:]))
			default:
				cols = append(cols, fmt.Sprintf("%s(%s)", part, quoteIdent(f)))
			}
			continue
		}
		agg := part
		if part == "count" {
			agg = "sum"
		}
		cols = append(cols, fmt.Sprintf("%s(%s)", agg, quoteIdent(f+"_"+part)))
	}
	group := "GROUP BY time(" + strconv.FormatInt(int64(p.Every/time.Second), 10) + "s)"
	if q.GroupBy == nil {
		group += ", *"
	} else {
		for _, k := range q.GroupBy {
			group += ", " + quoteIdent(k)
		}
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s %s fill(none)",
		strings.Join(cols, ", "), e.source(pc.tier, q.Measurement), e.where(q, pc.from, pc.to), group)
}

// acc is one window's aggregate so far, over the pieces merged into it.
type acc struct {
	min, max, sum, count, last, pct float64
	has                             bool
}

func (a *acc) add(part string, v float64) {
	first := !a.has
	switch part {
	case "min":
		if first || v < a.min {
			a.min = v
		}
	case "max":
		if first || v > a.max {
			a.max = v
		}
	case "sum":
		a.sum += v
	case "count":
		a.count += v
	case "last":
		a.last = v // pieces come oldest first: the newest piece's last wins
	case "p95", "p99":
		a.pct = v // percentiles have one (raw) piece
	}
}

func (a *acc) value(fn string) float64 {
	switch fn {
	case "mean":
		if a.count == 0 {
			return math.NaN()
		}
		return a.sum / a.count
	case "min":
		return a.min
	case "max":
		return a.max
	case "sum":
		return a.sum
	case "count":
		return a.count
	case "last":
		return a.last
	}
	return a.pct
}

// merge combines the pieces' answers into one series per tag set (or group), oldest window first.
// Non-finite values (a sum past float64) are left out: JSON cannot carry them.
func (e *Engine) merge(q Query, answers [][]influx.QLSeries) ([]Series, error) {
	type entry struct {
		tags    map[string]string
		windows map[int64]*acc
	}
	groups := map[string]*entry{}
	want := parts[q.Fn]
	for _, ans := range answers {
		for _, s := range ans {
			tags := map[string]string{}
			for k, v := range s.Tags {
				if v == "" || (q.OmitAgent && k == "agent") {
					continue // a group the series lacks the tag of
				}
				tags[k] = v
			}
			key := tagKey(tags)
			g := groups[key]
			if g == nil {
				g = &entry{tags: tags, windows: map[int64]*acc{}}
				groups[key] = g
			}
			if len(s.Columns) != len(want)+1 {
				return nil, fmt.Errorf("reading history: %d columns, want %d", len(s.Columns), len(want)+1)
			}
			for _, row := range s.Values {
				t, err := nanos(row[0])
				if err != nil {
					return nil, fmt.Errorf("reading history: %w", err)
				}
				ns := t.UnixNano()
				a := g.windows[ns]
				if a == nil {
					a = &acc{}
					g.windows[ns] = a
				}
				seen := false
				for i, part := range want {
					v, ok := number(row[i+1])
					if !ok {
						continue
					}
					a.add(part, v)
					seen = true
				}
				a.has = a.has || seen
			}
		}
	}
	keys := slices.Sorted(maps.Keys(groups))
	out := make([]Series, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
		times := make([]int64, 0, len(g.windows))
		for ns := range g.windows {
			times = append(times, ns)
		}
		slices.Sort(times)
		s := Series{Tags: g.tags, Points: make([]Point, 0, len(times))}
		for _, ns := range times {
			a := g.windows[ns]
			if !a.has {
				continue
			}
			v := a.value(q.Fn)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			s.Points = append(s.Points, Point{Time: time.Unix(0, ns).UTC(), Value: v})
		}
		if len(s.Points) > 0 {
			out = append(out, s)
		}
	}
	return out, nil
}

// tagKey is a map's identity: its pairs sorted by key.
func tagKey(tags map[string]string) string {
	keys := slices.Sorted(maps.Keys(tags))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(tags[k]))
		b.WriteByte(',')
	}
	return b.String()
}

// nanos reads an InfluxQL time (epoch=ns).
func nanos(v any) (time.Time, error) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, fmt.Errorf("time %v (%T) is not a number", v, v)
	}
	ns, err := n.Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("time %s: %w", n, err)
	}
	return time.Unix(0, ns).UTC(), nil
}

// number reads an aggregate; null (no value) is false.
func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// quoteIdent quotes an InfluxQL identifier (names are validated before, this is the second line).
func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// quoteString quotes an InfluxQL string literal: the scanner knows the escapes \\ and \' (and
// \n); values with control characters are refused before they get here.
func quoteString(s string) string {
	return `'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + `'`
}
