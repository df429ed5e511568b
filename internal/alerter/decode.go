package alerter

import (
	"fmt"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// pointReader reads the points of metrics entries that threshold rules can evaluate. A rule names
// one measurement and field, and most points of most entries are on measurements no rule
// watches: decoding every point of every entry (metric.DecodeLineProtocol) was most of the
// alerter's CPU per entry. So it keeps only what evaluate looks at: the points of watched
// measurements (alert.Index.Watches), with their tags and only the numeric and boolean fields
// some rule names (alert.Index.For; SampleValue ignores strings); the other lines are scanned to
// their timestamp and skipped, their values never parsed. The syntax of every line is still
// checked up to its timestamp, and a line without one is refused, as the gateway always writes
// one (metric.EntryTime). A pointReader serves one batch: names are interned (metric.InternName)
// and the points' tags and fields share backing slices, so that a point costs no allocation of
// its own.
type pointReader struct {
	idx    *alert.Index
	tags   []metric.Tag
	fields []metric.Field
}

func newPointReader(idx *alert.Index) *pointReader {
	return &pointReader{idx: idx}
}

// read returns the watched points of payload (canonical line protocol), or an error naming the
// first line it cannot read.
func (r *pointReader) read(payload []byte) ([]metric.Point, error) {
	var points []metric.Point
	dec := lineprotocol.NewDecoderWithBytes(payload)
	for line := 1; dec.Next(); line++ {
		pt, keep, err := r.readLine(dec)
		if err != nil {
			return nil, fmt.Errorf("decoding line protocol: line %d: %w", line, err)
		}
		if keep {
			points = append(points, pt)
		}
	}
	return points, nil
}

// readLine reads the entry dec is at, and whether it has a field a rule may evaluate.
func (r *pointReader) readLine(dec *lineprotocol.Decoder) (metric.Point, bool, error) {
	var pt metric.Point
	raw, err := dec.Measurement()
	if err != nil {
		return pt, false, err
	}
	name := metric.InternName(raw)
	watched := r.idx.Watches(name)
	if watched {
		pt.Measurement = name
		tags := len(r.tags)
		for {
			k, v, err := dec.NextTag()
			if err != nil {
				return pt, false, err
			}
			if k == nil {
				break
			}
			r.tags = append(r.tags, metric.Tag{Key: metric.InternName(k), Value: metric.InternName(v)})
		}
		fields := len(r.fields)
		for {
			k, kind, v, err := dec.NextFieldBytes()
			if err != nil {
				return pt, false, err
			}
			if k == nil {
				break
			}
			if kind == lineprotocol.String {
				continue
			}
			key := metric.InternName(k)
			if len(r.idx.For(name, key)) == 0 {
				continue
			}
			val, err := lineprotocol.NewValueFromBytes(kind, v)
			if err != nil {
				return pt, false, fmt.Errorf("field %q: %w", key, err)
			}
			r.fields = append(r.fields, metric.Field{Key: key, Value: sampleOf(val)})
		}
		pt.Tags = r.tags[tags:len(r.tags):len(r.tags)]
		pt.Fields = r.fields[fields:len(r.fields):len(r.fields)]
	}
	if pt.Time, err = metric.EntryTime(dec); err != nil {
		return pt, false, err
	}
	return pt, watched && len(pt.Fields) > 0, nil
}

// sampleOf converts a numeric or boolean line-protocol value.
func sampleOf(v lineprotocol.Value) metric.Value {
	switch v.Kind() {
	case lineprotocol.Float:
		return metric.Value{Kind: metric.KindFloat, F: v.FloatV()}
	case lineprotocol.Int:
		return metric.Value{Kind: metric.KindInt, I: v.IntV()}
	case lineprotocol.Uint:
		return metric.Value{Kind: metric.KindUint, U: v.UintV()}
	}
	return metric.Value{Kind: metric.KindBool, B: v.BoolV()}
}
