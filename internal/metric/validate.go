package metric

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// agentTag is the tag every stored point carries: the id of the agent whose key sent it.
const agentTag = "agent"

// alertsMeasurement is where the alerter records alert history, in the same bucket as the
// agents' points (alerter.Measurement).
const alertsMeasurement = "alerts"

// IsReservedMeasurement reports whether the pipeline writes measurement itself (only "alerts",
// the alert history, today), so that no agent may: its points would pass for alert history, and
// a field type it fixed first would make InfluxDB refuse the alerter's writes.
func IsReservedMeasurement(measurement string) bool { return measurement == alertsMeasurement }

// IsReservedTag reports whether key is a tag the pipeline sets itself on every stored point
// (only "agent" today). No field may carry such a name.
func IsReservedTag(key string) bool { return key == agentTag }

const (
	// maxSeriesKey is InfluxDB's limit on measurement + tags + field key of one series
	// (models.MaxKeyLength); a longer point is refused by InfluxDB after we acknowledged it.
	maxSeriesKey = 65535
	// seriesKeyOverhead is what InfluxDB adds between the key and the field key
	// (tsm1's field key separator, 4 bytes).
	seriesKeyOverhead = 4
	// agentTagReserve is kept free in the series key for ",agent=<id>", which the encoder
	// adds after validation. Agent ids are UUIDs, far shorter.
	agentTagReserve = 256
)

// Bounds of a time in int64 Unix nanoseconds: what InfluxDB can store.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// checker applies the validation rules shared by both parsers. A valid point leaves it with
// its tags and fields sorted by key.
type checker struct {
	lim          Limits
	oldest, last int64 // accepted time window, Unix ns, inclusive
}

func newChecker(now time.Time, lim Limits) checker {
	return checker{lim: lim, oldest: clampUnixNano(now.Add(-lim.MaxPast)), last: clampUnixNano(now.Add(lim.MaxFuture))}
}

func clampUnixNano(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// check sorts p's tags and fields by key and returns why p cannot be stored, or "" when it
// can. The rules, and why each exists, are listed in the package documentation (doc.go).
func (c *checker) check(p *Point) string {
	lim := &c.lim
	keyLen, f := scanName(p.Measurement)
	if f.bad() || len(p.Measurement) > lim.MaxNameLen {
		return nameReason("measurement", p.Measurement, f, lim.MaxNameLen)
	}
	switch p.Measurement[0] {
	case '_':
		return fmt.Sprintf("measurement %s is reserved: names starting with \"_\" belong to InfluxDB", quote(p.Measurement))
	case '#':
		return fmt.Sprintf("measurement %s starts with \"#\", which line protocol reads as a comment", quote(p.Measurement))
	}
	if IsReservedMeasurement(p.Measurement) {
		return fmt.Sprintf("measurement %s is reserved: it holds the alert history Agent Monitor records", quote(p.Measurement))
	}
	if len(p.Tags) > lim.MaxTags {
		return fmt.Sprintf("has %d tags, more than the limit of %d", len(p.Tags), lim.MaxTags)
	}
	if len(p.Fields) == 0 {
		return "has no fields: a point needs at least one"
	}
	if len(p.Fields) > lim.MaxFields {
		return fmt.Sprintf("has %d fields, more than the limit of %d", len(p.Fields), lim.MaxFields)
	}

	if !slices.IsSortedFunc(p.Tags, compareTags) {
		slices.SortFunc(p.Tags, compareTags)
	}
	for i := range p.Tags {
		t := &p.Tags[i]
		kLen, r := checkKey("tag", t.Key, i > 0 && p.Tags[i-1].Key == t.Key, lim.MaxNameLen)
		if r != "" {
			return r
		}
		vLen, f := scanName(t.Value)
		if f.bad() || len(t.Value) > lim.MaxTagValueLen {
			return nameReason("tag value for "+quote(t.Key), t.Value, f, lim.MaxTagValueLen)
		}
		keyLen += 2 + kLen + vLen // ",key=value"
	}

	if !slices.IsSortedFunc(p.Fields, compareFields) {
		slices.SortFunc(p.Fields, compareFields)
	}
	for i := range p.Fields {
		fl := &p.Fields[i]
		kLen, r := checkKey("field", fl.Key, i > 0 && p.Fields[i-1].Key == fl.Key, lim.MaxNameLen)
		if r != "" {
			return r
		}
		if r := c.checkValue(&fl.Value); r != "" {
			return fmt.Sprintf("field %s: %s", quote(fl.Key), r)
		}
		if n := keyLen + agentTagReserve + seriesKeyOverhead + kLen; n > maxSeriesKey {
			return fmt.Sprintf("series key too long: measurement, tags and field key %s take %d bytes escaped "+
				"(with %d reserved for the agent tag); InfluxDB allows %d", quote(fl.Key), n, agentTagReserve, maxSeriesKey)
		}
	}

	if p.Time < c.oldest {
		return fmt.Sprintf("time %s is more than %v in the past", formatTime(p.Time), lim.MaxPast)
	}
	if p.Time > c.last {
		return fmt.Sprintf("time %s is more than %v in the future", formatTime(p.Time), lim.MaxFuture)
	}
	return ""
}

func (c *checker) checkValue(v *Value) string {
	switch v.Kind {
	case KindFloat:
		switch {
		case math.IsNaN(v.F):
			return "NaN is not allowed"
		case math.IsInf(v.F, 1):
			return "+Inf is not allowed"
		case math.IsInf(v.F, -1):
			return "-Inf is not allowed"
		}
	case KindString:
		if len(v.S) > c.lim.MaxStringLen {
			return fmt.Sprintf("string exceeds %d bytes", c.lim.MaxStringLen)
		}
		if i := strings.IndexAny(v.S, "\n\r\t"); i >= 0 {
			return fmt.Sprintf("string contains control character %q", v.S[i])
		}
		if !utf8.ValidString(v.S) {
			return "string is not valid UTF-8"
		}
	case KindUint:
		// InfluxDB 1.x as released (built without the "uint" tag) refuses the whole write;
		// Telegraf sends unsigned values as integers unless told otherwise.
		return "unsigned integers (suffix u) are not accepted, as InfluxDB 1.x cannot store them: send an integer (suffix i) or a float"
	case KindInt, KindBool:
	default:
		return fmt.Sprintf("unknown value kind %d", v.Kind)
	}
	return ""
}

func compareTags(a, b Tag) int     { return strings.Compare(a.Key, b.Key) }
func compareFields(a, b Field) int { return strings.Compare(a.Key, b.Key) }

// checkKey checks the key of a tag or field (what) in a list sorted by key: a name no longer than
// maxLen, not reserved, and not the same as the key before it (dup). It returns the key's
// escaped length, or the reason it is refused.
func checkKey(what, key string, dup bool, maxLen int) (int, string) {
	n, f := scanName(key)
	if f.bad() || len(key) > maxLen {
		return 0, nameReason(what+" key", key, f, maxLen)
	}
	if r := reservedKey(what, key); r != "" {
		return 0, r
	}
	if dup {
		return 0, fmt.Sprintf("duplicate %s key %s", what, quote(key))
	}
	return n, ""
}

func reservedKey(what, key string) string {
	if key[0] == '_' {
		return fmt.Sprintf("%s key %s is reserved: names starting with \"_\" belong to InfluxDB", what, quote(key))
	}
	if key == "time" {
		return fmt.Sprintf("%s key \"time\" is reserved", what)
	}
	if what == "field" && IsReservedTag(key) {
		// InfluxQL resolves a name to a field before a tag: with a field "agent", WHERE agent='B'
		// would compare the field, so one agent could make its points read as another's.
		return fmt.Sprintf("field key %s is reserved: every point carries the tag %s (the id of the sending agent), "+
			"and a field of that name would shadow it in InfluxQL queries", quote(key), quote(key))
	}
	return ""
}

// flaw is what scanName found wrong with a name or tag value.
type flaw struct {
	kind flawKind
	b    byte // the offending byte, for flawControl and flawBackslash
}

type flawKind uint8

const (
	flawNone flawKind = iota
	flawEmpty
	flawUTF8
	flawControl
	flawTrailingBackslash
	flawBackslash
)

func (f flaw) bad() bool { return f.kind != flawNone }

// byteClass classifies the bytes of names and tag values for scanName.
var byteClass = func() (c [256]uint8) {
	for i := range 0x20 {
		c[i] = classControl
	}
	c[0x7f] = classControl
	for i := 0x80; i < 0x100; i++ {
		c[i] = classHigh
	}
	c[','], c['='], c[' '] = classEscaped, classEscaped, classEscaped
	c['\\'] = classBackslash
	return c
}()

const (
	classPlain uint8 = iota
	classControl
	classHigh
	classEscaped // escaped with a backslash in tag keys, tag values and field keys
	classBackslash
)

// scanName checks a measurement, tag key, tag value or field key for what line protocol
// cannot carry unambiguously, and returns its length once escaped (counting ',', '=' and
// space as escaped everywhere: an upper bound for measurements).
func scanName(s string) (escapedLen int, f flaw) {
	if s == "" {
		return 0, flaw{kind: flawEmpty}
	}
	n, high := len(s), false
	for i := 0; i < len(s); i++ {
		switch byteClass[s[i]] {
		case classControl:
			return 0, flaw{kind: flawControl, b: s[i]}
		case classHigh:
			high = true
		case classEscaped:
			n++
		case classBackslash:
			if i+1 == len(s) {
				return 0, flaw{kind: flawTrailingBackslash}
			}
			if next := s[i+1]; next == ',' || next == '=' || next == ' ' || next == '"' {
				return 0, flaw{kind: flawBackslash, b: next}
			}
		}
	}
	if high && !utf8.ValidString(s) {
		return 0, flaw{kind: flawUTF8}
	}
	return n, flaw{}
}

// nameReason explains why a name or tag value was refused: a flaw from scanName, or else
// its length over max.
func nameReason(what, s string, f flaw, max int) string {
	switch f.kind {
	case flawEmpty:
		if what == "measurement" {
			return "measurement is missing or empty"
		}
		return what + " is empty"
	case flawUTF8:
		return fmt.Sprintf("%s %s is not valid UTF-8", what, quote(s))
	case flawControl:
		return fmt.Sprintf("%s %s contains control character %q", what, quote(s), f.b)
	case flawTrailingBackslash:
		return fmt.Sprintf("%s %s ends with a backslash, which line protocol cannot represent", what, quote(s))
	case flawBackslash:
		return fmt.Sprintf("%s %s has a backslash before %q, which InfluxDB would read as an escape", what, quote(s), f.b)
	}
	if strings.HasPrefix(what, "tag value") {
		return fmt.Sprintf("%s exceeds %d bytes", what, max) // the key names it; the value is long
	}
	return fmt.Sprintf("%s %s exceeds %d bytes", what, quote(s), max)
}

// quote quotes a name for an error message, cut to a readable length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

func formatTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// timeRangeReason explains a time that does not fit int64 Unix nanoseconds.
func timeRangeReason(t string) string {
	return fmt.Sprintf("time %s is outside what InfluxDB can store (%s to %s)",
		t, minTime.UTC().Format(time.DateOnly), maxTime.UTC().Format(time.DateOnly))
}
