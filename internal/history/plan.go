package history

import (
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// AutoPoints is about how many windows a series gets when every is left out: the smallest tier
// width that keeps the range at or under this many windows is chosen.
const AutoPoints = 500

// Raw is the name of the tier of raw points.
const Raw = "raw"

// Plan is how a Query is answered: the tier it reads (finer tiers fill the newest windows), the
// window width and the aligned range.
type Plan struct {
	Tier  string
	Every time.Duration
	Start time.Time // the query's start, aligned down to a multiple of Every since the Unix epoch
	End   time.Time
}

// Windows returns how many windows of Every the plan spans at most.
func (p Plan) Windows() int64 {
	span := p.End.Sub(p.Start)
	return int64((span + p.Every - 1) / p.Every)
}

func isPercentile(fn string) bool { return fn == "p95" || fn == "p99" }

// tierByName returns the tier named name.
func tierByName(name string) (influx.Tier, bool) {
	for _, t := range influx.Tiers {
		if t.Name == name {
			return t, true
		}
	}
	return influx.Tier{}, false
}

// Plan chooses the tier and the width of q, and checks the limits: the answer's size (every),
// a forced tier that cannot serve every, and percentiles beyond raw retention.
//
// With every: the coarsest tier whose width divides every (every=1h reads 1h, 2m reads 1m, 90s
// reads raw). Without: the smallest tier width that keeps the range within AutoPoints windows and
// whose retention reaches back to start (1 h → 1m, 24 h → 5m, 7 d → 1h, 30 d → 1d), every being
// that width. Percentiles always read raw points.
func (e *Engine) Plan(q Query) (Plan, error) {
	now := e.now()
	span := q.End.Sub(q.Start)
	pct := isPercentile(q.Fn)
	var forced influx.Tier
	switch {
	case q.Tier == "" || q.Tier == Raw:
	case pct:
		return Plan{}, paramErr("tier", "fn=%s reads raw points only: leave tier out or use tier=raw", q.Fn)
	default:
		t, ok := tierByName(q.Tier)
		if !ok {
			return Plan{}, paramErr("tier", "%q: want raw, 1m, 5m, 1h or 1d", truncate(q.Tier, 16))
		}
		forced = t
	}
	covers := func(t influx.Tier) bool {
		r := e.cfg.retention(t.Name)
		return r == 0 || !q.Start.Before(now.Add(-r))
	}

	every := q.Every
	if every == 0 {
		for _, t := range influx.Tiers {
			if (span+t.Width-1)/t.Width <= AutoPoints && (covers(t) || pct || q.Tier == Raw) {
				every = t.Width
				break
			}
		}
		if every == 0 { // longer than AutoPoints days: whole days
			const day = 24 * time.Hour
			every = (span/AutoPoints + day - 1) / day * day
		}
		every = max(every, forced.Width)
	}

	tier := Raw
	switch {
	case pct || q.Tier == Raw:
	case forced.Name != "":
		if every%forced.Width != 0 {
			return Plan{}, paramErr("every", "%s is not a multiple of tier %s's width", FormatEvery(every), forced.Name)
		}
		tier = forced.Name
	default:
		for i := len(influx.Tiers) - 1; i >= 0; i-- {
			if every%influx.Tiers[i].Width == 0 {
				tier = influx.Tiers[i].Name
				break
			}
		}
	}

	if pct && e.layout.RawRetention > 0 && q.Start.Before(now.Add(-e.layout.RawRetention)) {
		return Plan{}, paramErr("start", "fn=%s reads raw points, which are kept %s (METRICS_RETENTION_DAYS): start %s is older; use a later start or fn=max",
			q.Fn, FormatEvery(e.layout.RawRetention), q.Start.Format(time.RFC3339))
	}

	p := Plan{Tier: tier, Every: every, Start: alignDown(q.Start, every), End: q.End}
	if n := p.Windows(); n > int64(e.cfg.MaxPoints) {
		return Plan{}, tooManyPoints(n, e.cfg.MaxPoints, every)
	}
	return p, nil
}

func tooManyPoints(n int64, limit int, every time.Duration) *ParamError {
	return paramErr("every", "the answer would hold %d points, more than HISTORY_MAX_POINTS (%d): raise every (now %s), narrow the range or filter the series",
		n, limit, FormatEvery(every))
}

// alignDown returns t rounded down to a multiple of d since the Unix epoch, as InfluxQL's
// GROUP BY time(d) aligns windows.
func alignDown(t time.Time, d time.Duration) time.Time {
	ns := t.UnixNano()
	m := ns % int64(d)
	if m < 0 {
		m += int64(d)
	}
	return time.Unix(0, ns-m).UTC()
}
