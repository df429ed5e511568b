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

// aggregate reads window w's aggregates per series from the tier below: raw points for 1m (one
// InfluxQL statement with wildcard aggregates), else the finer tier's rollup fields.
func aggregate(ctx context.Context, db Influx, w Window) ([]SeriesAggs, error) {
	var stmt string
	if w.Tier == 0 {
		stmt = fmt.Sprintf("SELECT min(*), max(*), mean(*), count(*), sum(*), last(*) FROM %s WHERE time >= %d AND time < %d GROUP BY *",
			db.RawSource(w.Measurement), w.Start.UnixNano(), w.End().UnixNano())
	} else {
		stmt = fmt.Sprintf("SELECT min(*), max(*), sum(*), last(*) FROM %s WHERE time >= %d AND time < %d GROUP BY *",
			db.TierSource(influx.Tiers[w.Tier-1], w.Measurement), w.Start.UnixNano(), w.End().UnixNano())
	}
	series, err := db.QueryInfluxQL(ctx, stmt)
	if err != nil {
		return nil, err
	}
	out := make([]SeriesAggs, 0, len(series))
	for _, s := range series {
		var sa SeriesAggs
		if w.Tier == 0 {
			sa, err = fromRaw(s)
		} else {
			sa, err = fromTier(s)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s of %s: %w", s.Name, w, err)
		}
		if len(sa.Fields) > 0 {
			out = append(out, sa)
		}
	}
	return out, nil
}

// row returns the only row of s as a column → value map.
func row(s influx.QLSeries) (map[string]any, error) {
	if len(s.Values) != 1 {
		return nil, fmt.Errorf("got %d rows, want 1", len(s.Values))
	}
	r := make(map[string]any, len(s.Columns))
	for i, c := range s.Columns {
		if i < len(s.Values[0]) {
			r[c] = s.Values[0][i]
		}
	}
	return r, nil
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
func fromRaw(s influx.QLSeries) (SeriesAggs, error) {
	r, err := row(s)
	if err != nil {
		return SeriesAggs{}, err
	}
	sa := SeriesAggs{Tags: tags(s), Fields: map[string]Agg{}}
	for _, c := range s.Columns {
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
	return sa, nil
}

// fromTier reads the finer tier's columns min_f_min, max_f_max, sum_f_sum, sum_f_count and
// last_f_last. Only a field's own count ends in "_count" among rollup fields (no other
// aggregate name does), so sum_X_count names raw field X.
func fromTier(s influx.QLSeries) (SeriesAggs, error) {
	r, err := row(s)
	if err != nil {
		return SeriesAggs{}, err
	}
	sa := SeriesAggs{Tags: tags(s), Fields: map[string]Agg{}}
	for _, c := range s.Columns {
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
	return sa, nil
}

// encode writes one rollup point per series at the window's start: tags as the series', fields
// f_min, f_max, f_mean, f_sum, f_last (floats) and f_count (integer) per raw field f. Values
// that are not finite (a sum that overflowed) are left out.
func encode(measurement string, start time.Time, series []SeriesAggs) ([]byte, int, error) {
	var enc lineprotocol.Encoder
	enc.SetPrecision(lineprotocol.Nanosecond)
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
			return nil, 0, fmt.Errorf("encoding rollup of %s: %w", measurement, err)
		}
		points++
	}
	return enc.Bytes(), points, nil
}
