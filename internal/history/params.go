package history

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ParamError is a request parameter that cannot be used: the gateway answers it with 400.
type ParamError struct {
	Param string // the query parameter, such as "metric", "tag.core" or "every"
	Msg   string // what is wrong and what is expected
}

// Error names the parameter and says what is wrong with it.
func (e *ParamError) Error() string { return "invalid " + e.Param + ": " + e.Msg }

func paramErr(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// namePattern is what a measurement, field or tag key must look like to be queried: strict on
// purpose (ASCII letters, digits, "_", "-", "."), so that no quote, backslash, ";", "::" or regex
// character ever reaches InfluxQL through a name, even quoted.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$`)

// maxTagValueLen bounds a tag value in a filter, as ingest bounds stored ones.
const maxTagValueLen = 1024

// Functions of a history query. Percentiles read raw points only.
var (
	tierFns = []string{"mean", "min", "max", "sum", "count", "last"}
	rawFns  = []string{"p95", "p99"}
)

// ParseFn checks fn ("" is "mean").
func ParseFn(fn string) (string, error) {
	if fn == "" {
		return "mean", nil
	}
	if slices.Contains(tierFns, fn) || slices.Contains(rawFns, fn) {
		return fn, nil
	}
	return "", paramErr("fn", "%q: want one of mean, min, max, sum, count, last, p95, p99", truncate(fn, 32))
}

// ParseMetric splits "measurement.field" at its first dot and checks both names.
func ParseMetric(metric string) (measurement, field string, err error) {
	m, f, ok := strings.Cut(metric, ".")
	if metric == "" {
		return "", "", paramErr("metric", "is required, as measurement.field (e.g. cpu.usage_percent)")
	}
	if !ok || !namePattern.MatchString(m) || !namePattern.MatchString(f) {
		return "", "", paramErr("metric", "%q: want measurement.field, each of ASCII letters, digits, '_', '-' and '.'", truncate(metric, 64))
	}
	return m, f, nil
}

// ValidName checks a tag key (or a group_by key) named by param.
func ValidName(param, key string) error {
	if !namePattern.MatchString(key) {
		return paramErr(param, "%q: want a tag key of ASCII letters, digits, '_', '-' and '.'", truncate(key, 64))
	}
	return nil
}

// ValidTagValue checks a tag value of a filter: valid UTF-8 without control characters, at most
// 1024 bytes. Quotes and backslashes are allowed: values are escaped as InfluxQL string literals.
func ValidTagValue(param, v string) error {
	switch {
	case v == "":
		return paramErr(param, "is empty: want a tag value")
	case len(v) > maxTagValueLen:
		return paramErr(param, "is longer than %d bytes", maxTagValueLen)
	case !utf8.ValidString(v):
		return paramErr(param, "is not valid UTF-8")
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return paramErr(param, "contains a control character")
	}
	return nil
}

// ParseTagFilters reads the "tag.<key>=<value>" parameters of a query string: each key at most
// once, at most 16 of them.
func ParseTagFilters(q map[string][]string) ([]TagFilter, error) {
	var out []TagFilter
	for p, vs := range q {
		key, ok := strings.CutPrefix(p, "tag.")
		if !ok {
			continue
		}
		if err := ValidName(p, key); err != nil {
			return nil, err
		}
		if key == "agent" {
			return nil, paramErr(p, "filter agents with the path or with agents=, not with a tag")
		}
		if len(vs) != 1 {
			return nil, paramErr(p, "given %d times: want one value per tag", len(vs))
		}
		if err := ValidTagValue(p, vs[0]); err != nil {
			return nil, err
		}
		out = append(out, TagFilter{Key: key, Value: vs[0]})
	}
	if len(out) > 16 {
		return nil, paramErr("tag", "%d tag filters: want at most 16", len(out))
	}
	slices.SortFunc(out, func(a, b TagFilter) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// ParseTime reads a start or end: RFC 3339, Unix seconds, "now", or now plus a signed Go
// duration with d for days ("-24h", "-7d", "-1h30m").
func ParseTime(param, s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if s != "" && (s[0] == '-' || s[0] == '+') {
		d, err := parseDuration(s[1:])
		if err != nil {
			return time.Time{}, paramErr(param, "%q: want RFC 3339, Unix seconds, now, or a relative time such as -24h or -7d", truncate(s, 64))
		}
		if s[0] == '-' {
			d = -d
		}
		if t := now.Add(d); t.Before(minTime) || t.After(maxTime) {
			return time.Time{}, paramErr(param, "%q: want a time from 1970 to 2200", truncate(s, 64))
		}
		return now.Add(d), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > maxTime.Unix() {
			return time.Time{}, paramErr(param, "%d: Unix seconds out of range", n)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, paramErr(param, "%q: want RFC 3339, Unix seconds, now, or a relative time such as -24h or -7d", truncate(s, 64))
	}
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, paramErr(param, "%s: want a time from 1970 to 2200", t.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// The times a query may name: InfluxDB stores nanoseconds since 1970 in an int64 (to 2262).
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ParseRange reads start and end (defaults: end now, start one hour before end) and checks that
// start is before end.
func ParseRange(start, end string, now time.Time) (time.Time, time.Time, error) {
	e := now
	if end != "" {
		var err error
		if e, err = ParseTime("end", end, now); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	s := e.Add(-time.Hour)
	if start != "" {
		var err error
		if s, err = ParseTime("start", start, now); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if !s.Before(e) {
		return time.Time{}, time.Time{}, paramErr("start", "%s is not before end %s", s.UTC().Format(time.RFC3339), e.UTC().Format(time.RFC3339))
	}
	return s.UTC(), e.UTC(), nil
}

// ParseEvery reads the window width: a Go duration with d for days, whole seconds, at least 1s
// and at most 366d. "" means "choose for me" (0).
func ParseEvery(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := parseDuration(s)
	if err != nil || d < time.Second || d%time.Second != 0 || d > 366*24*time.Hour {
		return 0, paramErr("every", "%q: want a duration of whole seconds from 1s to 366d, such as 30s, 5m, 1h or 1d", truncate(s, 32))
	}
	return d, nil
}

// durationPattern is a Go duration made of positive parts, plus d for days.
var (
	durationPattern = regexp.MustCompile(`^([0-9]{1,6}(d|h|m|s|ms))+$`)
	durationPart    = regexp.MustCompile(`[0-9]+(d|h|ms|m|s)`)
)

// parseDuration parses a Go-style duration ("1h30m") that may use d for 24 hours.
func parseDuration(s string) (time.Duration, error) {
	if !durationPattern.MatchString(s) {
		return 0, fmt.Errorf("duration %q: want parts like 7d, 1h, 30m, 10s", s)
	}
	var total time.Duration
	for _, part := range durationPart.FindAllString(s, -1) {
		unit := strings.TrimLeft(part, "0123456789")
		n, _ := strconv.ParseInt(strings.TrimSuffix(part, unit), 10, 64)
		switch unit {
		case "d":
			total += time.Duration(n) * 24 * time.Hour
		case "h":
			total += time.Duration(n) * time.Hour
		case "m":
			total += time.Duration(n) * time.Minute
		case "s":
			total += time.Duration(n) * time.Second
		case "ms":
			total += time.Duration(n) * time.Millisecond
		}
	}
	return total, nil
}

// FormatEvery writes a width as the API shows it: "1d", "1h", "5m", "90s".
func FormatEvery(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
