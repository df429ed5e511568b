// Package historytest builds history fixtures for tests: raw samples generated in memory, their
// rollup windows computed independently by the contract's rules (HISTORY-CONTRACT.md), the line
// protocol of both, and the expected answer of a history query computed from the samples alone.
package historytest

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// Sample is one raw value of a series.
type Sample struct {
	Time  time.Time
	Value float64
}

// Series is one raw series: the tags (agent included) and its samples, oldest first.
type Series struct {
	Tags    map[string]string
	Samples []Sample
}

// Generate returns samples every step in [from, to) whose values are a deterministic function of
// seed and the index: one decimal, 0 to 99.9, irregular enough that min, max, last and the sums
// of neighbouring windows differ.
func Generate(tags map[string]string, seed int, from, to time.Time, step time.Duration) Series {
	s := Series{Tags: tags}
	for i, t := 0, from; t.Before(to); i, t = i+1, t.Add(step) {
		v := float64((i*7919+seed*104729)%1000) / 10
		s.Samples = append(s.Samples, Sample{Time: t.UTC(), Value: v})
	}
	return s
}

// Window is one rollup window of a series, by the contract's aggregates.
type Window struct {
	Start                     time.Time
	Min, Max, Mean, Sum, Last float64
	Count                     int64
}

// Rollup aggregates the samples in [from, to) into windows of width aligned to the Unix epoch,
// oldest first, directly from the raw samples.
func Rollup(s Series, width time.Duration, from, to time.Time) []Window {
	var out []Window
	for _, p := range s.Samples {
		if p.Time.Before(from) || !p.Time.Before(to) {
			continue
		}
		start := AlignDown(p.Time, width)
		if len(out) == 0 || !out[len(out)-1].Start.Equal(start) {
			out = append(out, Window{Start: start, Min: p.Value, Max: p.Value})
		}
		w := &out[len(out)-1]
		w.Min, w.Max = min(w.Min, p.Value), max(w.Max, p.Value)
		w.Sum += p.Value
		w.Count++
		w.Last = p.Value
		w.Mean = w.Sum / float64(w.Count)
	}
	return out
}

// AlignDown rounds t down to a multiple of d since the Unix epoch.
func AlignDown(t time.Time, d time.Duration) time.Time {
	ns := t.UnixNano()
	m := ns % int64(d)
	if m < 0 {
		m += int64(d)
	}
	return time.Unix(0, ns-m).UTC()
}

// lpTags writes ",k=v" for each tag in key order (test tags need no escaping).
func lpTags(tags map[string]string) string {
	keys := slices.Sorted(maps.Keys(tags))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("," + k + "=" + tags[k])
	}
	return b.String()
}

// RawLines returns the line protocol of the samples in [from, to) as field of measurement.
func RawLines(measurement, field string, s Series, from, to time.Time) []string {
	var out []string
	for _, p := range s.Samples {
		if p.Time.Before(from) || !p.Time.Before(to) {
			continue
		}
		out = append(out, fmt.Sprintf("%s%s %s=%s %d", measurement, lpTags(s.Tags), field, fmtFloat(p.Value), p.Time.UnixNano()))
	}
	return out
}

// RollupLines returns the line protocol of windows as the contract's rollup points.
func RollupLines(measurement, field string, tags map[string]string, ws []Window) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = fmt.Sprintf("%s%s %s_min=%s,%s_max=%s,%s_mean=%s,%s_sum=%s,%s_last=%s,%s_count=%di %d",
			measurement, lpTags(tags), field, fmtFloat(w.Min), field, fmtFloat(w.Max), field, fmtFloat(w.Mean),
			field, fmtFloat(w.Sum), field, fmtFloat(w.Last), field, w.Count, w.Start.UnixNano())
	}
	return out
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// CreateTiers creates database db and the tiers' retention policies (rollup_1m ...) on a 1.x
// server, kept for ever, through run (an InfluxQL runner such as testenv.Influxd.Query).
func CreateTiers(ctx context.Context, run func(context.Context, string) error, db string) error {
	if err := run(ctx, `CREATE DATABASE "`+db+`"`); err != nil {
		return err
	}
	for _, t := range influx.Tiers {
		if err := run(ctx, fmt.Sprintf(`CREATE RETENTION POLICY "rollup_%s" ON "%s" DURATION INF REPLICATION 1`, t.Name, db)); err != nil {
			return err
		}
	}
	return nil
}

// Point is one expected window value.
type Point struct {
	Time  time.Time
	Value float64
}

// Expect computes, from the samples alone, the answer to fn over windows of every in
// [from, to) for the samples of all the given series together (one group).
func Expect(fn string, every time.Duration, from, to time.Time, series ...Series) []Point {
	byWindow := map[int64][]Sample{}
	for _, s := range series {
		for _, p := range s.Samples {
			if p.Time.Before(from) || !p.Time.Before(to) {
				continue
			}
			w := AlignDown(p.Time, every).UnixNano()
			byWindow[w] = append(byWindow[w], p)
		}
	}
	var out []Point
	for w, ps := range byWindow {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Time.Before(ps[j].Time) })
		out = append(out, Point{Time: time.Unix(0, w).UTC(), Value: aggregate(fn, ps)})
	}
	slices.SortFunc(out, func(a, b Point) int { return a.Time.Compare(b.Time) })
	return out
}

func aggregate(fn string, ps []Sample) float64 {
	vals := make([]float64, len(ps))
	sum := 0.0
	for i, p := range ps {
		vals[i] = p.Value
		sum += p.Value
	}
	switch fn {
	case "mean":
		return sum / float64(len(vals))
	case "sum":
		return sum
	case "count":
		return float64(len(vals))
	case "min":
		return slices.Min(vals)
	case "max":
		return slices.Max(vals)
	case "last":
		return vals[len(vals)-1]
	case "p95", "p99":
		// InfluxQL's percentile: nearest rank, floor(n*p/100 + 0.5), 1-based.
		p, _ := strconv.Atoi(fn[1:])
		slices.Sort(vals)
		i := int(math.Floor(float64(len(vals))*float64(p)/100+0.5)) - 1
		return vals[max(0, min(i, len(vals)-1))]
	}
	return math.NaN()
}
