package rollup

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// Influx is what the rollup needs of InfluxDB; *influx.Client implements it.
type Influx interface {
	QueryInfluxQL(ctx context.Context, stmt string) ([]influx.QLSeries, error)
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
// window start (Unix ns) and series, from the tier below: raw points for 1m (wildcard aggregates
// over raw fields), else the finer tier's rollup fields. One InfluxQL statement with GROUP BY
// time(<tier width>), * covers the whole span; InfluxDB aligns those intervals to the epoch, as
// the windows are.
func aggregate(ctx context.Context, db Influx, tier int, measurement string, from, to time.Time) (map[int64][]SeriesAggs, error) {
	sel, src := "min(*), max(*), mean(*), count(*), sum(*), last(*)", db.RawSource(measurement)
	if tier > 0 {
		sel, src = "min(*), max(*), sum(*), last(*)", db.TierSource(influx.Tiers[tier-1], measurement)
	}
	stmt := fmt.Sprintf("SELECT %s FROM %s WHERE time >= %d AND time < %d GROUP BY time(%s), * fill(none)",
		sel, src, from.UnixNano(), to.UnixNano(), influx.Tiers[tier].Name)
	series, err := db.QueryInfluxQL(ctx, stmt)
	if err != nil {
		return nil, err
	}
	out := map[int64][]SeriesAggs{}
	for _, s := range series {
		t := tags(s)
		for _, vals := range s.Values {
			r := make(map[string]any, len(s.Columns))
			for i, c := range s.Columns {
				if i < len(vals) {
					r[c] = vals[i]
				}
			}
			ts, _ := r["time"].(string)
			start, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				return nil, fmt.Errorf("reading %s: row time %q: %w", s.Name, ts, err)
			}
			var sa SeriesAggs
			if tier == 0 {
				sa = fromRaw(s.Columns, r, t)
			} else {
				sa = fromTier(s.Columns, r, t)
			}
			if len(sa.Fields) > 0 {
				out[start.UnixNano()] = append(out[start.UnixNano()], sa)
			}
		}
	}
	return out, nil
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

// fromRaw reads the columns min_f, max_f, mean_f, count_f, sum_f, last_f. Only numeric fields
// have mean_f (InfluxDB computes mean of numbers only; min, max, count, last also take booleans,
// count and last strings).
func fromRaw(columns []string, r map[string]any, tags map[string]string) SeriesAggs {
	sa := SeriesAggs{Tags: tags, Fields: map[string]Agg{}}
	for _, c := range columns {
		f, ok := strings.CutPrefix(c, "mean_")
		if !ok {
			continue
		}
		var a Agg
		var ok1, ok2, ok3, ok4, ok5 bool
		a.Min, ok1 = num(r["min_"+f])
		a.Max, ok2 = num(r["max_"+f])
		a.Sum, ok3 = num(r["sum_"+f])
		a.Last, ok4 = num(r["last_"+f])
		a.Count, ok5 = count(r["count_"+f])
		if ok1 && ok2 && ok3 && ok4 && ok5 && a.Count > 0 {
			sa.Fields[f] = a
		}
	}
	return sa
}

// fromTier reads the finer tier's columns min_f_min, max_f_max, sum_f_sum, sum_f_count and
// last_f_last. Only a field's own count ends in "_count" among rollup fields (no other
// aggregate name does), so sum_X_count names raw field X.
func fromTier(columns []string, r map[string]any, tags map[string]string) SeriesAggs {
	sa := SeriesAggs{Tags: tags, Fields: map[string]Agg{}}
	for _, c := range columns {
		rest, ok := strings.CutPrefix(c, "sum_")
		if !ok {
			continue
		}
		f, ok := strings.CutSuffix(rest, "_count")
		if !ok || f == "" {
			continue
		}
		var a Agg
		var ok1, ok2, ok3, ok4, ok5 bool
		a.Min, ok1 = num(r["min_"+f+"_min"])
		a.Max, ok2 = num(r["max_"+f+"_max"])
		a.Sum, ok3 = num(r["sum_"+f+"_sum"])
		a.Last, ok4 = num(r["last_"+f+"_last"])
		a.Count, ok5 = count(r[c])
		if ok1 && ok2 && ok3 && ok4 && ok5 && a.Count > 0 {
			sa.Fields[f] = a
		}
	}
	return sa
}

// encode appends one rollup point per series at the window's start: tags as the series', fields
// f_min, f_max, f_mean, f_sum, f_last (floats) and f_count (integer) per raw field f. Values
// that are not finite (a sum that overflowed) are left out.
func encode(enc *lineprotocol.Encoder, measurement string, start time.Time, series []SeriesAggs) (int, error) {
	points := 0
	for _, s := range series {
		keys := make([]string, 0, len(s.Tags))
		for k := range s.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
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
