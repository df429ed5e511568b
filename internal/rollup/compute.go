package rollup

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// Influx is what the rollup needs of InfluxDB; *influx.Client implements it.
type Influx interface {
	QueryOne(ctx context.Context, stmt string) ([]influx.QLSeries, error)
	RawSource(measurement string) string
	TierSource(t influx.Tier, measurement string) string
	TierBucket(t influx.Tier) string
	WriteBucket(ctx context.Context, bucket string, body []byte) error
}

// Agg is one field's aggregate over a window of one series.
type Agg struct {
	Min, Max, Sum, Last float64
	Count               int64
}

// Mean returns Sum/Count.
func (a Agg) Mean() float64 { return a.Sum / float64(a.Count) }

// SeriesAggs is one series' aggregates over a window: its tags (without empty values) and, per
// raw field, the Agg.
type SeriesAggs struct {
	Tags   map[string]string
	Fields map[string]Agg
}

// aggregate reads the aggregates of every window of tier in [from, to) for measurement, per
// window start (Unix ns) and series, from the tier below: raw points for 1m, else the finer
// tier's rollup fields (min of f_min, max of f_max, sum of f_sum and f_count, f_last of the
// newest row). It fetches the rows with one SELECT * … GROUP BY * and aggregates them here:
// InfluxDB 1.8 takes some 50 times longer for the same aggregates with GROUP BY time(), * (about
// 0.9 s against 17 ms for an hour of 50 series at 60 s).
func aggregate(ctx context.Context, db Influx, tier int, measurement string, from, to time.Time) (map[int64][]SeriesAggs, error) {
	src := db.RawSource(measurement)
	if tier > 0 {
		src = db.TierSource(influx.Tiers[tier-1], measurement)
	}
	stmt := fmt.Sprintf("SELECT * FROM %s WHERE time >= %d AND time < %d GROUP BY *", src, from.UnixNano(), to.UnixNano())
	series, err := db.QueryOne(ctx, stmt)
	if err != nil {
		return nil, err
	}
	width := int64(influx.Tiers[tier].Width)
	out := map[int64][]SeriesAggs{}
	for _, s := range series {
		ti := slices.Index(s.Columns, "time")
		if ti < 0 {
			return nil, fmt.Errorf("reading %s: no time column in %v", s.Name, s.Columns)
		}
		windows := map[int64]map[string]*Agg{}
		add := func(ns int64, field string, a Agg) {
			start := ns - ((ns%width)+width)%width
			fields := windows[start]
			if fields == nil {
				fields = map[string]*Agg{}
				windows[start] = fields
			}
			cur := fields[field]
			if cur == nil {
				fields[field] = &a
				return
			}
			cur.Min, cur.Max = math.Min(cur.Min, a.Min), math.Max(cur.Max, a.Max)
			cur.Sum += a.Sum
			cur.Count += a.Count
			cur.Last = a.Last // rows come in time order: the newest wins
		}
		bases := tierBases(s.Columns)
		for _, row := range s.Values {
			if len(row) != len(s.Columns) {
				return nil, fmt.Errorf("reading %s: row of %d values for %d columns", s.Name, len(row), len(s.Columns))
			}
			ns, ok := count(row[ti])
			if !ok {
				return nil, fmt.Errorf("reading %s: row time %v", s.Name, row[ti])
			}
			if tier == 0 {
				for i, c := range s.Columns {
					if v, ok := num(row[i]); ok && i != ti {
						add(ns, c, Agg{Min: v, Max: v, Sum: v, Last: v, Count: 1})
					}
				}
				continue
			}
			for _, b := range bases {
				var a Agg
				var ok1, ok2, ok3, ok4, ok5 bool
				a.Min, ok1 = num(row[b.min])
				a.Max, ok2 = num(row[b.max])
				a.Sum, ok3 = num(row[b.sum])
				a.Last, ok4 = num(row[b.last])
				a.Count, ok5 = count(row[b.count])
				if ok1 && ok2 && ok3 && ok4 && ok5 && a.Count > 0 {
					add(ns, b.field, a)
				}
			}
		}
		t := tags(s)
		for start, fields := range windows {
			sa := SeriesAggs{Tags: t, Fields: make(map[string]Agg, len(fields))}
			for f, a := range fields {
				sa.Fields[f] = *a
			}
			out[start] = append(out[start], sa)
		}
	}
	return out, nil
}

// base is one raw field of a finer tier's rows, with the column indexes of its rollup fields.
type base struct {
	field                      string
	min, max, sum, last, count int
}

// tierBases finds the raw fields of a tier's columns: only a field's own count ends in "_count"
// among rollup fields (no other aggregate name does), so column X_count names raw field X; X
// counts only when X_min, X_max, X_sum and X_last are columns too.
func tierBases(columns []string) []base {
	idx := make(map[string]int, len(columns))
	for i, c := range columns {
		idx[c] = i
	}
	var out []base
	for i, c := range columns {
		f, ok := strings.CutSuffix(c, "_count")
		if !ok || f == "" {
			continue
		}
		b := base{field: f, count: i}
		var ok1, ok2, ok3, ok4 bool
		b.min, ok1 = idx[f+"_min"]
		b.max, ok2 = idx[f+"_max"]
		b.sum, ok3 = idx[f+"_sum"]
		b.last, ok4 = idx[f+"_last"]
		if ok1 && ok2 && ok3 && ok4 {
			out = append(out, b)
		}
	}
	return out
}

// tags returns the series' tags without the empty ones: GROUP BY * lists every tag key of the
// measurement, with "" where a series lacks it.
func tags(s influx.QLSeries) map[string]string {
	t := make(map[string]string, len(s.Tags))
	for k, v := range s.Tags {
		if v != "" {
			t[k] = v
		}
	}
	return t
}

// num reads a JSON number; ok is false for null and non-numbers (booleans, strings).
func num(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

func count(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64() // a sum of counts InfluxDB printed as a float
	return int64(f), err == nil
}

// encode appends one rollup point per series at the window's start: tags as the series', fields
// f_min, f_max, f_mean, f_sum, f_last (floats) and f_count (integer) per raw field f. Values
// that are not finite (a sum that overflowed) are left out.
func encode(enc *lineprotocol.Encoder, measurement string, start time.Time, series []SeriesAggs) (int, error) {
	points := 0
	for _, s := range series {
		keys := slices.Sorted(maps.Keys(s.Tags))
		fields := make([]string, 0, len(s.Fields))
		for f := range s.Fields {
			fields = append(fields, f)
		}
		sort.Strings(fields) // the encoder does not need it; stable output helps reading
		enc.StartLine(measurement)
		for _, k := range keys {
			enc.AddTag(k, s.Tags[k])
		}
		for _, f := range fields {
			a := s.Fields[f]
			for _, fv := range []struct {
				suffix string
				v      float64
			}{{"_last", a.Last}, {"_max", a.Max}, {"_mean", a.Mean()}, {"_min", a.Min}, {"_sum", a.Sum}} {
				if math.IsNaN(fv.v) || math.IsInf(fv.v, 0) {
					continue
				}
				v, _ := lineprotocol.FloatValue(fv.v)
				enc.AddField(f+fv.suffix, v)
			}
			enc.AddField(f+"_count", lineprotocol.IntValue(a.Count))
		}
		enc.EndLine(start)
		if err := enc.Err(); err != nil {
			return 0, fmt.Errorf("encoding rollup of %s: %w", measurement, err)
		}
		points++
	}
	return points, nil
}
