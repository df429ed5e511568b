package metric

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// ParseJSON parses and validates an agent's JSON batch:
//
//	{"points":[{"measurement":"cpu","tags":{"core":"0"},"fields":{"usage_percent":12.5},"time":"2026-11-25T18:00:00Z"}]}
//
// The syntax is strict: unknown or duplicate keys, invalid UTF-8, trailing data and values of
// the wrong type are errors. "tags" and "time" are optional; a missing time becomes now.
// A time is an RFC 3339 string or an integer of Unix nanoseconds. Every JSON number becomes a
// float field (so that a value that happens to be whole does not change the field's type in
// InfluxDB); the field-type registry (package fieldtype) later turns an integral number into an
// integer when the field is already an integer field in InfluxDB, and refuses a fractional one.
// true/false become bool fields and strings string fields; null, arrays and objects are refused. Each point is then checked by the rules shared with ParseLineProtocol (see
// the package documentation) and returned with its tags and fields sorted by key.
//
// The error is a *PointError for the first bad point, or a plain error for the body as a
// whole; it wraps ErrEmptyBatch or ErrTooManyPoints when those are the problem. Any error
// means the client sent bad data, except an invalid lim.
func ParseJSON(body []byte, now time.Time, lim Limits) ([]Point, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	jd := jsonDecoders.Get().(*jsonDecoder)
	defer jd.release()
	jd.buf = *bytes.NewBuffer(body) // the decoder reads a bytes.Buffer in place
	jd.dec.Reset(&jd.buf)
	p := jsonParser{dec: &jd.dec, checker: newChecker(now, lim), now: now.UnixNano(), index: -1}
	p.presize(body)
	return p.parse()
}

// jsonDecoder is a reusable decoder: its buffers for tracking nesting and duplicate names
// would otherwise be allocated again for every request.
type jsonDecoder struct {
	buf bytes.Buffer
	dec jsontext.Decoder
}

var jsonDecoders = sync.Pool{New: func() any { return new(jsonDecoder) }}

func (jd *jsonDecoder) release() {
	jd.buf = bytes.Buffer{}
	jd.dec.Reset(&jd.buf) // drops the decoder's reference to the body
	jsonDecoders.Put(jd)
}

type jsonParser struct {
	dec     *jsontext.Decoder
	checker checker
	now     int64
	index   int // of the point being read; -1 outside "points"
	points  []Point
	// tags and fields back the points' slices, so that a batch costs a few allocations
	// rather than two per point. Each point gets a capped sub-slice.
	tags   []Tag
	fields []Field
	// timeText and timeNs are the last RFC 3339 time read and its value: an agent stamps the
	// points of a batch alike, so the next point's time is then neither parsed nor copied.
	timeText string
	timeNs   int64
}

// presize sizes the parser's slices for body from a count of its points (the "measurement"
// keys) and of its ':' (every member has one; each point has at least "measurement" and
// "fields" besides its tags and fields), so that a batch costs three allocations rather than a
// dozen growing ones. The estimates are capped: a huge body still grows its slices.
func (p *jsonParser) presize(body []byte) {
	const maxPresize = 1 << 14
	points := min(bytes.Count(body, []byte(`"measurement"`)), p.checker.lim.MaxPoints, maxPresize)
	members := min(max(bytes.Count(body, []byte{':'})-2*points, 0), maxPresize)
	p.points = make([]Point, 0, max(points, 1))
	p.fields = make([]Field, 0, max(points, members))
	p.tags = make([]Tag, 0, members/2)
}

func (p *jsonParser) parse() ([]Point, error) {
	tok, err := p.dec.ReadToken()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: the body is empty", ErrEmptyBatch)
	}
	if err != nil {
		return nil, p.syntaxError(err)
	}
	if tok.Kind() != '{' {
		return nil, fmt.Errorf(`body must be a JSON object {"points":[...]}, got %s`, kindName(tok.Kind()))
	}
	for {
		tok, err := p.dec.ReadToken()
		if err != nil {
			return nil, p.syntaxError(err)
		}
		if tok.Kind() == '}' {
			break
		}
		if name := names.token(tok); name != "points" {
			return nil, fmt.Errorf(`unknown key %s in the body: the only key is "points"`, quote(name))
		}
		if err := p.parsePoints(); err != nil {
			return nil, err
		}
	}
	switch tok, err := p.dec.ReadToken(); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("trailing data after the JSON object: %w", p.syntaxError(err))
	default:
		return nil, fmt.Errorf("trailing data after the JSON object: %s", kindName(tok.Kind()))
	}
	if len(p.points) == 0 {
		return nil, fmt.Errorf(`%w: "points" is missing or empty`, ErrEmptyBatch)
	}
	return p.points, nil
}

func (p *jsonParser) parsePoints() error {
	tok, err := p.dec.ReadToken()
	if err != nil {
		return p.syntaxError(err)
	}
	if tok.Kind() != '[' {
		return fmt.Errorf(`"points" must be an array, got %s`, kindName(tok.Kind()))
	}
	for {
		tok, err := p.dec.ReadToken()
		if err != nil {
			return p.syntaxError(err)
		}
		if tok.Kind() == ']' {
			return nil
		}
		p.index = len(p.points)
		if p.index == p.checker.lim.MaxPoints {
			return fmt.Errorf("%w: more than %d", ErrTooManyPoints, p.checker.lim.MaxPoints)
		}
		if tok.Kind() != '{' {
			return p.pointError("must be an object, got %s", kindName(tok.Kind()))
		}
		pt, err := p.parsePoint()
		if err != nil {
			return err
		}
		if reason := p.checker.check(&pt); reason != "" {
			return &PointError{Index: p.index, Reason: reason}
		}
		p.points = append(p.points, pt)
		p.index = -1 // what follows a point is not part of it
	}
}

// parsePoint reads the members of one point object, whose '{' has been read.
func (p *jsonParser) parsePoint() (Point, error) {
	pt := Point{Time: p.now}
	tags, fields := len(p.tags), len(p.fields)
	for {
		tok, err := p.dec.ReadToken()
		if err != nil {
			return pt, p.syntaxError(err)
		}
		if tok.Kind() == '}' {
			break
		}
		switch name := names.token(tok); name {
		case "measurement":
			tok, err := p.dec.ReadToken()
			if err != nil {
				return pt, p.syntaxError(err)
			}
			if tok.Kind() != '"' {
				return pt, p.pointError("measurement must be a string, got %s", kindName(tok.Kind()))
			}
			pt.Measurement = names.token(tok)
		case "tags":
			if err := p.parseTags(); err != nil {
				return pt, err
			}
		case "fields":
			if err := p.parseFields(); err != nil {
				return pt, err
			}
		case "time":
			t, err := p.parseTime()
			if err != nil {
				return pt, err
			}
			pt.Time = t
		default:
			return pt, p.pointError(`unknown key %s: a point has "measurement", "tags", "fields" and "time"`, quote(name))
		}
	}
	if len(p.tags) > tags {
		pt.Tags = p.tags[tags:len(p.tags):len(p.tags)]
	}
	pt.Fields = p.fields[fields:len(p.fields):len(p.fields)]
	return pt, nil
}

// parseObject reads an object, what it must be naming it in the error for anything else (say
// "tags must be an object of strings"), and calls member with each key and its value's token.
func (p *jsonParser) parseObject(what string, member func(key string, tok jsontext.Token) error) error {
	tok, err := p.dec.ReadToken()
	if err != nil {
		return p.syntaxError(err)
	}
	if tok.Kind() != '{' {
		return p.pointError("%s, got %s", what, kindName(tok.Kind()))
	}
	for {
		tok, err := p.dec.ReadToken()
		if err != nil {
			return p.syntaxError(err)
		}
		if tok.Kind() == '}' {
			return nil
		}
		key := names.token(tok)
		tok, err = p.dec.ReadToken()
		if err != nil {
			return p.syntaxError(err)
		}
		if err := member(key, tok); err != nil {
			return err
		}
	}
}

func (p *jsonParser) parseTags() error {
	return p.parseObject("tags must be an object of strings", p.addTag)
}

func (p *jsonParser) addTag(key string, tok jsontext.Token) error {
	if tok.Kind() != '"' {
		return p.pointError("tag %s: value must be a string, got %s", quote(key), kindName(tok.Kind()))
	}
	p.tags = append(p.tags, Tag{Key: key, Value: names.token(tok)})
	return nil
}

func (p *jsonParser) parseFields() error {
	return p.parseObject("fields must be an object", p.addField)
}

func (p *jsonParser) addField(key string, tok jsontext.Token) error {
	var v Value
	switch tok.Kind() {
	case '0':
		f, err := tok.Float()
		if err != nil {
			return p.pointError("field %s: number %s is out of float64 range", quote(key), tok.String())
		}
		v = Value{Kind: KindFloat, F: f}
	case '"':
		v = Value{Kind: KindString, S: tok.String()}
	case 't', 'f':
		v = Value{Kind: KindBool, B: tok.Bool()}
	default:
		return p.pointError("field %s: %s is not allowed, use a number, a boolean or a string", quote(key), kindName(tok.Kind()))
	}
	p.fields = append(p.fields, Field{Key: key, Value: v})
	return nil
}

func (p *jsonParser) parseTime() (int64, error) {
	tok, err := p.dec.ReadToken()
	if err != nil {
		return 0, p.syntaxError(err)
	}
	switch tok.Kind() {
	case '"':
		// Compared without escaping, tok.String() is a stack temporary (see interner.token).
		if p.timeText != "" && tok.String() == p.timeText {
			return p.timeNs, nil
		}
		s := tok.String()
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, p.pointError("time %s is not an RFC 3339 time such as \"2026-11-25T18:00:00Z\"", quote(s))
		}
		if t.Before(minTime) || t.After(maxTime) {
			return 0, p.pointError("%s", timeRangeReason(s))
		}
		p.timeText, p.timeNs = s, t.UnixNano()
		return p.timeNs, nil
	case '0':
		ns, err := tok.Int()
		if errors.Is(err, strconv.ErrRange) {
			return 0, p.pointError("%s", timeRangeReason(tok.String()+" ns"))
		}
		if err != nil {
			return 0, p.pointError("time %s must be an integer of Unix nanoseconds", tok.String())
		}
		return ns, nil
	}
	return 0, p.pointError("time must be an RFC 3339 string or an integer of Unix nanoseconds, got %s", kindName(tok.Kind()))
}

func (p *jsonParser) pointError(format string, args ...any) error {
	return &PointError{Index: p.index, Reason: fmt.Sprintf(format, args...)}
}

// syntaxError turns an error of the JSON decoder into a *PointError inside a point, or a
// plain error about the body outside one.
func (p *jsonParser) syntaxError(err error) error {
	reason := err.Error()
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		switch ptr := se.JSONPointer; {
		case errors.Is(se.Err, jsontext.ErrDuplicateName):
			reason = fmt.Sprintf("duplicate key %s in %s", quote(ptr.LastToken()), pointerText(ptr.Parent()))
		case errors.Is(se.Err, io.ErrUnexpectedEOF):
			reason = "the JSON ends too early"
		default:
			reason = fmt.Sprintf("invalid JSON in %s at byte %d: %v", pointerText(ptr), se.ByteOffset, se.Err)
			if m := se.Err.Error(); strings.Contains(m, "'N' at start of value") || strings.Contains(m, "'I' at start of value") ||
				strings.Contains(m, "'I' in number") {
				reason += " (JSON has no NaN or Infinity, and InfluxDB cannot store them: send a finite number or leave the field out)"
			}
		}
	}
	if p.index >= 0 {
		return &PointError{Index: p.index, Reason: reason}
	}
	return errors.New(reason)
}

// pointerText names where in the body something is: the JSON pointer as is when it is short
// printable text, else quoted and cut (a key is the client's text: control characters or a
// megabyte-long key must not reach the answer and the logs raw).
func pointerText(ptr jsontext.Pointer) string {
	if ptr == "" {
		return "the body"
	}
	s := string(ptr)
	if len(s) > 128 || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) || r == utf8.RuneError }) {
		return quote(s)
	}
	return s
}

func kindName(k jsontext.Kind) string {
	if name := JSONKindName(k); name != "" {
		return name
	}
	return "invalid JSON"
}

// JSONKindName names a JSON value of kind k for an error message ("a string", "an object",
// "null"), or returns "" for a kind that is no value (an invalid token).
func JSONKindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return ""
}
