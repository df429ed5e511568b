package metric

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// precisionNanos maps the precision values of InfluxDB 2.x's /api/v2/write to nanoseconds per
// unit. The 1.x aliases "n" and "u" (and "m", "h") are not accepted: /api/v2/write answers 400
// for them in InfluxDB 1.8 and 2.x alike, and Telegraf's outputs.influxdb_v2 never sends them.
var precisionNanos = map[string]int64{
	"":   1,
	"ns": 1,
	"us": int64(time.Microsecond),
	"ms": int64(time.Millisecond),
	"s":  int64(time.Second),
}

// ParseLineProtocol parses and validates an InfluxDB line-protocol body, as sent to
// /api/v2/write. precision is "" or "ns" (nanoseconds), "us", "ms" or "s"; a point without a
// timestamp gets now, to the nanosecond. Blank lines and comment lines are skipped. Each
// point is checked by the rules shared with ParseJSON (see the package documentation) and
// returned with its tags and fields sorted by key and its time in nanoseconds. Field types
// are kept as sent (float, integer, string, boolean); unsigned integers are refused.
//
// The error is a *PointError naming the line of the first bad point, or a plain error for the
// body as a whole; it wraps ErrEmptyBatch or ErrTooManyPoints when those are the problem. Any
// error means the client sent bad data, except an invalid lim.
func ParseLineProtocol(body []byte, precision string, now time.Time, lim Limits) ([]Point, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	unit, ok := precisionNanos[precision]
	if !ok {
		return nil, fmt.Errorf("unknown precision %q: use ns, us, ms or s", precision)
	}
	c := newChecker(now, lim)
	r := newLPReader(body, lim.MaxPoints)
	dec := lineprotocol.NewDecoderWithBytes(body)
	for dec.Next() {
		index := len(r.points)
		if index == lim.MaxPoints {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyPoints, lim.MaxPoints)
		}
		pt, ts, err := r.readEntry(dec)
		if err != nil {
			return nil, decodeError(err, index, body)
		}
		pt.Time = now.UnixNano()
		if ts != nil {
			if pt.Time, err = parseTimestamp(ts, unit); err != nil {
				return nil, &PointError{Index: index, Line: lineOf(body, index), Reason: err.Error()}
			}
		}
		if reason := c.check(&pt); reason != "" {
			return nil, &PointError{Index: index, Line: lineOf(body, index), Reason: reason}
		}
		r.points = append(r.points, pt)
	}
	if len(r.points) == 0 {
		return nil, fmt.Errorf("%w: the body has no line-protocol entry", ErrEmptyBatch)
	}
	return r.points, nil
}

// DecodeLineProtocol decodes a payload written by AppendLineProtocol back into points, for
// the stream's consumers. It trusts the payload to be canonical and checks only its syntax:
// tags and fields come back in payload order (sorted, with the agent tag), times in
// nanoseconds. A line without a timestamp is an error, since the gateway always writes one.
func DecodeLineProtocol(payload []byte) ([]Point, error) {
	r := newLPReader(payload, math.MaxInt)
	dec := lineprotocol.NewDecoderWithBytes(payload)
	for dec.Next() {
		pt, ts, err := r.readEntry(dec)
		if err != nil {
			return nil, fmt.Errorf("decoding line protocol: %w", decodeError(err, len(r.points), payload))
		}
		if ts == nil {
			return nil, fmt.Errorf("decoding line protocol: line %d: no timestamp", lineOf(payload, len(r.points)))
		}
		if pt.Time, err = parseTimestamp(ts, 1); err != nil {
			return nil, fmt.Errorf("decoding line protocol: line %d: %w", lineOf(payload, len(r.points)), err)
		}
		r.points = append(r.points, pt)
	}
	return r.points, nil
}

// InternName returns b, a name read from a payload (a measurement, tag key or value, or field key),
// as a string interned like the parsers' own names: one seen before costs no allocation. For
// consumers that read payloads with a lineprotocol.Decoder of their own.
func InternName(b []byte) string { return names.string(b) }

// EntryTime reads the timestamp of the entry dec is at, once its tags and fields are read or
// skipped, in nanoseconds as AppendLineProtocol writes it. An entry without one is an error, as
// in DecodeLineProtocol: the gateway always writes one.
func EntryTime(dec *lineprotocol.Decoder) (int64, error) {
	ts, err := dec.TimeBytes()
	if err != nil {
		return 0, err
	}
	if ts == nil {
		return 0, errors.New("no timestamp")
	}
	return parseTimestamp(ts, 1)
}

// lpReader collects points from a lineprotocol.Decoder. Like jsonParser, it backs all the
// points' tags and fields with two shared slices.
type lpReader struct {
	points []Point
	tags   []Tag
	fields []Field
}

// newLPReader returns an lpReader whose slices are sized for body from a count of its lines and
// of its '=' (each tag and each field has one), so that a batch costs three allocations rather
// than a dozen growing ones. The estimates are capped: a huge body still grows its slices.
func newLPReader(body []byte, maxPoints int) lpReader {
	const maxPresize = 1 << 14
	lines := min(bytes.Count(body, []byte{'\n'})+1, maxPoints, maxPresize)
	pairs := min(bytes.Count(body, []byte{'='}), maxPresize)
	return lpReader{
		points: make([]Point, 0, lines),
		// Every '=' may be a field's (an upper bound); points have fewer tags than fields more
		// often than not, and a Tag is half the size of a Field.
		fields: make([]Field, 0, max(lines, pairs)),
		tags:   make([]Tag, 0, pairs/2),
	}
}

// readEntry reads the entry the decoder is at, copying everything out of the decoder's
// buffer, and returns its raw timestamp (nil when there is none).
func (r *lpReader) readEntry(dec *lineprotocol.Decoder) (Point, []byte, error) {
	var pt Point
	m, err := dec.Measurement()
	if err != nil {
		return pt, nil, err
	}
	pt.Measurement = names.string(m)
	tags := len(r.tags)
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return pt, nil, err
		}
		if k == nil {
			break
		}
		r.tags = append(r.tags, Tag{Key: names.string(k), Value: names.string(v)})
	}
	fields := len(r.fields)
	for {
		k, v, err := dec.NextField()
		if err != nil {
			return pt, nil, err
		}
		if k == nil {
			break
		}
		r.fields = append(r.fields, Field{Key: names.string(k), Value: fromLP(v)})
	}
	ts, err := dec.TimeBytes()
	if err != nil {
		return pt, nil, err
	}
	if len(r.tags) > tags {
		pt.Tags = r.tags[tags:len(r.tags):len(r.tags)]
	}
	if len(r.fields) > fields {
		pt.Fields = r.fields[fields:len(r.fields):len(r.fields)]
	}
	return pt, ts, nil
}

// parseTimestamp converts a line-protocol timestamp in units of unit nanoseconds.
func parseTimestamp(ts []byte, unit int64) (int64, error) {
	n, err := strconv.ParseInt(string(ts), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errors.New(timeRangeReason(string(ts)))
	}
	if err != nil {
		return 0, fmt.Errorf("invalid timestamp %q", ts)
	}
	if n > math.MaxInt64/unit || n < math.MinInt64/unit {
		return 0, errors.New(timeRangeReason(string(ts)))
	}
	return n * unit, nil
}

// decodeError turns a syntax error of the decoder into a *PointError, rewording the decoder's
// messages that do not say what is wrong (issue 7).
func decodeError(err error, index int, body []byte) error {
	var de *lineprotocol.DecodeError
	if errors.As(err, &de) {
		return &PointError{Index: index, Line: int(de.Line), Reason: fmt.Sprintf("column %d: %s", de.Column, decodeReason(de, body))}
	}
	return &PointError{Index: index, Line: lineOf(body, index), Reason: err.Error()}
}

// missingFieldSet is the reason given for a line without a field set.
const missingFieldSet = "the field set is missing: a line is `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, " +
	"with a space between the tags and the fields"

// decodeReason explains a decoder error. The decoder reports a line without a field set as
// "empty tag name" (for "cpu") or "expected field key but none found" (for "cpu,host=a"), and
// NaN and Inf values as "unrecognized type" or "non-number": say what the line lacks and that
// InfluxDB cannot store NaN or Inf.
func decodeReason(de *lineprotocol.DecodeError, body []byte) string {
	msg := de.Err.Error()
	switch {
	case strings.Contains(msg, "expected field key but none found"),
		strings.Contains(msg, "expected tag key or field but found '\\n'"),
		strings.Contains(msg, "expected tag key or field but found '\\r'"):
		return missingFieldSet
	case strings.Contains(msg, "empty tag name"):
		if rest := lineText(body, int(de.Line), de.Column); rest == "" || rest == "\r" {
			return missingFieldSet // "cpu" or "cpu,host=a" at the end of the line
		}
	case strings.Contains(msg, "non-number"), strings.Contains(msg, "unrecognized type"):
		v := lineText(body, int(de.Line), de.Column)
		if i := strings.IndexAny(v, ", "); i >= 0 {
			v = v[:i]
		}
		switch strings.ToLower(strings.TrimLeft(v, "+-")) {
		case "nan", "inf", "infinity":
			return fmt.Sprintf("field value %s: InfluxDB cannot store NaN or Inf; send a finite number or leave the field out", quote(v))
		}
		if v == "" && strings.Contains(msg, "unrecognized type") {
			return "field value is missing after '='"
		}
		if strings.Contains(msg, "unrecognized type") {
			return fmt.Sprintf("field value %s has no line-protocol type: write a number (1.5), an integer (3i), "+
				"a boolean (t, false) or a double-quoted string", quote(v))
		}
	}
	return msg
}

// lineText returns what follows column col (1-based, in bytes) of line (1-based) in body,
// up to the end of that line.
func lineText(body []byte, line, col int) string {
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			return ""
		}
		body = body[i+1:]
	}
	if i := bytes.IndexByte(body, '\n'); i >= 0 {
		body = body[:i]
	}
	if col < 1 || col > len(body)+1 {
		return ""
	}
	return string(body[col-1:])
}

// LineOf returns the 1-based line of the point at index (as in PointError.Index) of a
// line-protocol body that ParseLineProtocol accepted, for errors found after parsing.
func LineOf(body []byte, index int) int { return lineOf(body, index) }

// lineOf returns the 1-based line on which entry index of body starts. The decoder does not
// expose its line count, so this repeats its skipping of blank and comment lines. It is exact
// when every entry before index took one line, which holds whenever those entries were
// valid: only a string field can span lines, and a newline in a string is refused.
func lineOf(body []byte, index int) int {
	line := 0
	for len(body) > 0 {
		line++
		var text []byte
		text, body, _ = bytes.Cut(body, []byte{'\n'})
		text = bytes.TrimLeft(text, " ")
		if len(text) == 0 || text[0] == '#' || (len(text) == 1 && text[0] == '\r') {
			continue
		}
		if index == 0 {
			return line
		}
		index--
	}
	return line
}

func fromLP(v lineprotocol.Value) Value {
	switch v.Kind() {
	case lineprotocol.Float:
		return Value{Kind: KindFloat, F: v.FloatV()}
	case lineprotocol.Int:
		return Value{Kind: KindInt, I: v.IntV()}
	case lineprotocol.Uint:
		return Value{Kind: KindUint, U: v.UintV()}
	case lineprotocol.Bool:
		return Value{Kind: KindBool, B: v.BoolV()}
	}
	return Value{Kind: KindString, S: v.StringV()}
}

func toLP(v Value) lineprotocol.Value {
	switch v.Kind {
	case KindFloat:
		lv, _ := lineprotocol.FloatValue(v.F) // validated finite; a non-finite float fails the line
		return lv
	case KindInt:
		return lineprotocol.IntValue(v.I)
	case KindUint:
		return lineprotocol.UintValue(v.U)
	case KindBool:
		return lineprotocol.BoolValue(v.B)
	}
	lv, _ := lineprotocol.StringValue(v.S)
	return lv
}

// encoders holds line-protocol encoders, which keep a scratch buffer between uses.
var encoders = sync.Pool{New: func() any { return new(lineprotocol.Encoder) }}

// AppendLineProtocol appends points to dst as canonical line protocol and returns the
// extended slice: one line per point, each ending in '\n', tags in key order with
// agent=<agentID> in its place (a client-sent "agent" tag is replaced, so that a key for one
// agent can never write as another), fields in key order, the time in nanoseconds.
//
// points must have passed ParseJSON or ParseLineProtocol (or the same rules), and agentID
// must be a valid tag value (an agent id is a UUID): the encoder leaves out any line it
// cannot represent. It is safe for concurrent use.
func AppendLineProtocol(dst []byte, points []Point, agentID string) []byte {
	enc := encoders.Get().(*lineprotocol.Encoder)
	enc.SetBuffer(dst)
	for i := range points {
		p := &points[i]
		enc.StartLine(p.Measurement)
		agentDone := false
		for _, t := range p.Tags {
			if !agentDone && t.Key >= agentTag {
				enc.AddTag(agentTag, agentID)
				agentDone = true
			}
			if t.Key != agentTag {
				enc.AddTag(t.Key, t.Value)
			}
		}
		if !agentDone {
			enc.AddTag(agentTag, agentID)
		}
		for _, f := range p.Fields {
			enc.AddField(f.Key, toLP(f.Value))
		}
		enc.EndLine(time.Unix(0, p.Time))
	}
	out := enc.Bytes()
	enc.SetBuffer(nil) // do not keep the caller's buffer alive in the pool
	encoders.Put(enc)
	return out
}
