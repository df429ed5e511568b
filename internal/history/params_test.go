package history

import (
	"errors"
	"net/url"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := func(in string, want time.Time) {
		t.Helper()
		got, err := ParseTime("start", in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	f("now", now)
	f("-24h", now.Add(-24*time.Hour))
	f("-7d", now.Add(-7*24*time.Hour))
	f("-1h30m", now.Add(-90*time.Minute))
	f("+10m", now.Add(10*time.Minute))
	f("1700000000", time.Unix(1700000000, 0))
	f("2026-11-30T10:00:00Z", now.Add(-2*time.Hour))
	f("2026-11-30T11:00:00+01:00", now.Add(-2*time.Hour))
	for _, bad := range []string{"", "yesterday", "-24", "-1y", "--1h", "2026-11-30", "1e9", "-99999999d", "-1h;DROP", "0999-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "-999999d", "99999999999"} {
		if _, err := ParseTime("start", bad, now); err == nil {
			t.Errorf("ParseTime(%q) = nil error, want one", bad)
		}
	}
}

func TestParseEvery(t *testing.T) {
	f := func(in string, want time.Duration) {
		t.Helper()
		got, err := ParseEvery(in)
		if err != nil || got != want {
			t.Errorf("ParseEvery(%q) = %v, %v, want %v", in, got, err, want)
		}
		if want != 0 {
			if back, _ := ParseEvery(FormatEvery(got)); back != got {
				t.Errorf("ParseEvery(FormatEvery(%v)) = %v", got, back)
			}
		}
	}
	f("", 0)
	f("1m", time.Minute)
	f("90s", 90*time.Second)
	f("1h30m", 90*time.Minute)
	f("1d", 24*time.Hour)
	f("7d", 7*24*time.Hour)
}

// TestHostileParams checks that hostile values are refused with an error naming the parameter.
func TestHostileParams(t *testing.T) {
	hostile := []string{
		`cpu".usage`, `cpu.usage'`, `cpu\.usage`, `cpu.usage;DROP DATABASE metrics`, "cpu.usage\nDROP",
		`cpu./.*/`, `cpu.usage::field`, `cpu.usage::tag`, `cpu.usäge`, `cpu.usage)`, `cpu.[a-z]+`, `cpu.usage OR 1=1`,
		`cpu.`, `.usage`, `cpu`, "cpu.usage\x00",
	}
	for _, m := range hostile {
		_, _, err := ParseMetric(m)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != "metric" {
			t.Errorf("ParseMetric(%q) error = %v, want a ParamError naming metric", m, err)
		}
	}
	for _, k := range []string{`core"`, `core'`, `co\re`, `core;`, "co\nre", `core::field`, `cöre`, `.*`, `core)`, ``} {
		_, err := ParseTagFilters(url.Values{"tag." + k: {"0"}})
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != "tag."+k {
			t.Errorf("ParseTagFilters(tag.%q=0) error = %v, want a ParamError naming tag.%s", k, err, k)
		}
	}
	for _, v := range []string{"0\n", "a\x00b", "\x7f", "", string([]byte{0xff})} {
		_, err := ParseTagFilters(url.Values{"tag.core": {v}})
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != "tag.core" {
			t.Errorf("ParseTagFilters(tag.core=%q) error = %v, want a ParamError naming tag.core", v, err)
		}
	}
	for _, fn := range []string{"MEAN", "mean;", "mean()", "percentile", "p50", `"mean"`, "mean::field", "médiane"} {
		var pe *ParamError
		if _, err := ParseFn(fn); !errors.As(err, &pe) || pe.Param != "fn" {
			t.Errorf("ParseFn(%q) error = %v, want a ParamError naming fn", fn, err)
		}
	}
	for _, ev := range []string{"0s", "-1m", "1m;", "1m\n", "1 m", "500ms", "1.5m", "m", "1y", "400d", "1m'", `1m"`, "1m::field", "１m"} {
		var pe *ParamError
		if _, err := ParseEvery(ev); !errors.As(err, &pe) || pe.Param != "every" {
			t.Errorf("ParseEvery(%q) error = %v, want a ParamError naming every", ev, err)
		}
	}
	// Quotes and backslashes in a tag value are allowed: they are escaped, never spliced.
	if _, err := ParseTagFilters(url.Values{"tag.path": {`C:\x' OR '1'='1`}}); err != nil {
		t.Errorf("ParseTagFilters(a quoted value) error: %v", err)
	}
}

func TestQuoteString(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := quoteString(in); got != want {
			t.Errorf("quoteString(%q) = %s, want %s", in, got, want)
		}
	}
	f(`a`, `'a'`)
	f(`a'b`, `'a\'b'`)
	f(`a\`, `'a\\'`)
	f(`\'`, `'\\\''`)
}
