package silence_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/silence"
)

func ts(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

// Ids of a rule and an agent, as the stores assign them.
const (
	ruleA  = "5b0c6a52-0000-4000-8000-000000000001"
	agentA = "9d4c1f6e-0000-4000-8000-000000000002"
)

func weekly(days []string, start, end, tz string) silence.Silence {
	return silence.Silence{
		Matchers: silence.Matchers{RuleID: ruleA},
		Weekly:   &silence.Weekly{Days: days, Start: start, End: end, TimeZone: tz},
	}
}

func oneOff(start, end string) silence.Silence {
	return silence.Silence{Matchers: silence.Matchers{RuleID: ruleA}, StartsAt: ts(start), EndsAt: ts(end)}
}

func TestValidate(t *testing.T) {
	valid := oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z")
	tests := []struct {
		name  string
		edit  func(s *silence.Silence)
		field string // "" for valid
	}{
		{"one-off", func(s *silence.Silence) {}, ""},
		{"weekly", func(s *silence.Silence) {
			*s = weekly([]string{"mon", "fri"}, "22:00", "06:00", "Europe/Berlin")
		}, ""},
		{"weekly until midnight", func(s *silence.Silence) { *s = weekly([]string{"sun"}, "20:00", "24:00", "UTC") }, ""},
		{"labels only", func(s *silence.Silence) { s.Matchers = silence.Matchers{Labels: map[string]string{"team": "db"}} }, ""},
		{"agent only", func(s *silence.Silence) { s.Matchers = silence.Matchers{AgentID: agentA} }, ""},
		{"ids in upper case", func(s *silence.Silence) {
			s.Matchers = silence.Matchers{RuleID: strings.ToUpper(ruleA), AgentID: strings.ToUpper(agentA)}
		}, ""},
		{"comment with newline", func(s *silence.Silence) { s.Comment = "line 1\nline 2" }, ""},

		{"no matchers", func(s *silence.Silence) { s.Matchers = silence.Matchers{} }, "matchers"},
		{"empty labels map is no matcher", func(s *silence.Silence) { s.Matchers = silence.Matchers{Labels: map[string]string{}} }, "matchers"},
		{"control char in rule id", func(s *silence.Silence) { s.Matchers.RuleID = "r\x01" }, "matchers.rule_id"},
		{"long agent id", func(s *silence.Silence) { s.Matchers.AgentID = strings.Repeat("a", 129) }, "matchers.agent_id"},
		{"rule id not a UUID", func(s *silence.Silence) { s.Matchers.RuleID = "r1" }, "matchers.rule_id"},
		{"rule id UUID without hyphens", func(s *silence.Silence) { s.Matchers.RuleID = strings.ReplaceAll(ruleA, "-", "") }, "matchers.rule_id"},
		{"agent id not a UUID", func(s *silence.Silence) { s.Matchers.AgentID = "web-1" }, "matchers.agent_id"},
		{"agent id UUID with a non-hex digit", func(s *silence.Silence) { s.Matchers.AgentID = "x" + agentA[1:] }, "matchers.agent_id"},
		{"empty label key", func(s *silence.Silence) { s.Matchers.Labels = map[string]string{"": "x"} }, "matchers.labels"},
		{"empty label value", func(s *silence.Silence) { s.Matchers.Labels = map[string]string{"team": ""} }, "matchers.labels"},
		{"no window", func(s *silence.Silence) { s.StartsAt, s.EndsAt = nil, nil }, "starts_at"},
		{"no start", func(s *silence.Silence) { s.StartsAt = nil }, "starts_at"},
		{"zero start", func(s *silence.Silence) { s.StartsAt = &time.Time{} }, "starts_at"},
		{"no end", func(s *silence.Silence) { s.EndsAt = nil }, "ends_at"},
		{"end equals start", func(s *silence.Silence) { s.EndsAt = s.StartsAt }, "ends_at"},
		{"end before start", func(s *silence.Silence) { s.EndsAt = ts("2025-06-01T21:00:00Z") }, "ends_at"},
		{"both windows", func(s *silence.Silence) {
			s.Weekly = &silence.Weekly{Days: []string{"mon"}, Start: "01:00", End: "02:00", TimeZone: "UTC"}
		}, "starts_at"},
		{"weekly and ends_at", func(s *silence.Silence) {
			*s = weekly([]string{"mon"}, "01:00", "02:00", "UTC")
			s.EndsAt = ts("2025-06-01T21:00:00Z")
		}, "ends_at"},
		{"no days", func(s *silence.Silence) { *s = weekly(nil, "01:00", "02:00", "UTC") }, "weekly.days"},
		{"bad day", func(s *silence.Silence) { *s = weekly([]string{"Monday"}, "01:00", "02:00", "UTC") }, "weekly.days"},
		{"upper-case day", func(s *silence.Silence) { *s = weekly([]string{"MON"}, "01:00", "02:00", "UTC") }, "weekly.days"},
		{"day twice", func(s *silence.Silence) { *s = weekly([]string{"mon", "mon"}, "01:00", "02:00", "UTC") }, "weekly.days"},
		{"start one digit", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "1:00", "02:00", "UTC") }, "weekly.start"},
		{"start 24:00", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "24:00", "02:00", "UTC") }, "weekly.start"},
		{"start minute 60", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:60", "02:00", "UTC") }, "weekly.start"},
		{"start with seconds", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:00:00", "02:00", "UTC") }, "weekly.start"},
		{"end 24:01", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:00", "24:01", "UTC") }, "weekly.end"},
		{"end 25:00", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:00", "25:00", "UTC") }, "weekly.end"},
		{"end equals start", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:00", "01:00", "UTC") }, "weekly.end"},
		{"no time zone", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:00", "02:00", "") }, "weekly.time_zone"},
		{"Local time zone", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:00", "02:00", "Local") }, "weekly.time_zone"},
		{"unknown time zone", func(s *silence.Silence) { *s = weekly([]string{"mon"}, "01:00", "02:00", "Mars/Olympus") }, "weekly.time_zone"},
		{"long comment", func(s *silence.Silence) { s.Comment = strings.Repeat("x", 1025) }, "comment"},
		{"control char in comment", func(s *silence.Silence) { s.Comment = "bell\a" }, "comment"},
		{"invalid utf-8 comment", func(s *silence.Silence) { s.Comment = "\xff" }, "comment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid
			tt.edit(&s)
			err := s.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var verr *silence.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate() = %v, want a *ValidationError for %s", err, tt.field)
			}
			if verr.Field != tt.field || verr.Reason == "" {
				t.Errorf("Validate() = %v (field %q), want field %q", err, verr.Field, tt.field)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("Validate().Error() = %q, want it to start with %q", err, tt.field+": ")
			}
		})
	}
}

func TestActive(t *testing.T) {
	tests := []struct {
		name string
		s    silence.Silence
		at   string
		want bool
	}{
		// One-off: [starts_at, ends_at).
		{"one-off before", oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z"), "2025-06-01T21:59:59Z", false},
		{"one-off at start", oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z"), "2025-06-01T22:00:00Z", true},
		{"one-off inside", oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z"), "2025-06-02T01:59:59Z", true},
		{"one-off at end", oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z"), "2025-06-02T02:00:00Z", false},
		{"one-off in another zone", oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z"), "2025-06-02T03:30:00+02:00", true},

		// Weekly, same day. 2025-06-02 is a Monday.
		{"weekly before", weekly([]string{"mon"}, "09:00", "17:00", "UTC"), "2025-06-02T08:59:59Z", false},
		{"weekly at start", weekly([]string{"mon"}, "09:00", "17:00", "UTC"), "2025-06-02T09:00:00Z", true},
		{"weekly last second", weekly([]string{"mon"}, "09:00", "17:00", "UTC"), "2025-06-02T16:59:59Z", true},
		{"weekly at end", weekly([]string{"mon"}, "09:00", "17:00", "UTC"), "2025-06-02T17:00:00Z", false},
		{"weekly other day", weekly([]string{"mon"}, "09:00", "17:00", "UTC"), "2025-06-03T12:00:00Z", false},
		{"weekly next week", weekly([]string{"mon"}, "09:00", "17:00", "UTC"), "2025-06-09T12:00:00Z", true},
		{"weekly until 24:00", weekly([]string{"mon"}, "20:00", "24:00", "UTC"), "2025-06-02T23:59:59Z", true},
		{"weekly until 24:00 next midnight", weekly([]string{"mon"}, "20:00", "24:00", "UTC"), "2025-06-03T00:00:00Z", false},

		// Across midnight: Friday 22:00 to Saturday 06:00. 2025-06-06 is a Friday.
		{"midnight before start", weekly([]string{"fri"}, "22:00", "06:00", "UTC"), "2025-06-06T21:59:00Z", false},
		{"midnight friday night", weekly([]string{"fri"}, "22:00", "06:00", "UTC"), "2025-06-06T23:00:00Z", true},
		{"midnight saturday morning", weekly([]string{"fri"}, "22:00", "06:00", "UTC"), "2025-06-07T05:59:59Z", true},
		{"midnight at end", weekly([]string{"fri"}, "22:00", "06:00", "UTC"), "2025-06-07T06:00:00Z", false},
		{"midnight saturday night not listed", weekly([]string{"fri"}, "22:00", "06:00", "UTC"), "2025-06-07T23:00:00Z", false},
		{"midnight friday morning not yesterday's", weekly([]string{"fri"}, "22:00", "06:00", "UTC"), "2025-06-06T03:00:00Z", false},
		{"midnight sunday into monday", weekly([]string{"sun"}, "22:00", "02:00", "UTC"), "2025-06-02T01:00:00Z", true},
		{"midnight saturday into sunday", weekly([]string{"sat"}, "22:00", "02:00", "UTC"), "2025-06-08T01:00:00Z", true},

		// Non-UTC zone: the weekday and the hours are Tokyo's (UTC+9, no DST).
		{"tokyo sunday utc is monday local, before start", weekly([]string{"mon"}, "09:00", "17:00", "Asia/Tokyo"), "2025-06-01T23:30:00Z", false},
		{"tokyo monday morning", weekly([]string{"mon"}, "09:00", "17:00", "Asia/Tokyo"), "2025-06-02T00:30:00Z", true},
		{"tokyo monday 09:30 utc is evening local", weekly([]string{"mon"}, "09:00", "17:00", "Asia/Tokyo"), "2025-06-02T09:30:00Z", false},
		{"new york across midnight", weekly([]string{"fri"}, "22:00", "06:00", "America/New_York"), "2025-06-07T03:00:00Z", true},

		// Europe/Berlin goes from 02:00 CET to 03:00 CEST at 01:00 UTC on Sunday 2025-03-30.
		{"spring forward before", weekly([]string{"sun"}, "01:00", "04:00", "Europe/Berlin"), "2025-03-29T23:59:00Z", false},
		{"spring forward 01:30 CET", weekly([]string{"sun"}, "01:00", "04:00", "Europe/Berlin"), "2025-03-30T00:30:00Z", true},
		{"spring forward 03:30 CEST", weekly([]string{"sun"}, "01:00", "04:00", "Europe/Berlin"), "2025-03-30T01:30:00Z", true},
		{"spring forward 04:00 CEST ends", weekly([]string{"sun"}, "01:00", "04:00", "Europe/Berlin"), "2025-03-30T02:00:00Z", false},
		{"spring forward window in the gap starts at 03:00", weekly([]string{"sun"}, "02:30", "04:00", "Europe/Berlin"), "2025-03-30T01:00:00Z", true},
		{"spring forward window in the gap, 01:59 CET", weekly([]string{"sun"}, "02:30", "04:00", "Europe/Berlin"), "2025-03-30T00:59:00Z", false},
		// It goes from 03:00 CEST back to 02:00 CET at 01:00 UTC on Sunday 2025-10-26.
		{"fall back first 02:15 (CEST)", weekly([]string{"sun"}, "02:00", "02:30", "Europe/Berlin"), "2025-10-26T00:15:00Z", true},
		{"fall back 02:45 CEST", weekly([]string{"sun"}, "02:00", "02:30", "Europe/Berlin"), "2025-10-26T00:45:00Z", false},
		{"fall back second 02:15 (CET)", weekly([]string{"sun"}, "02:00", "02:30", "Europe/Berlin"), "2025-10-26T01:15:00Z", true},
		{"fall back 02:30 CET", weekly([]string{"sun"}, "02:00", "02:30", "Europe/Berlin"), "2025-10-26T01:30:00Z", false},
		// Summer offset is +2, winter +1: the same local window maps to different UTC hours.
		{"summer 09:00 local is 07:00 utc", weekly([]string{"mon"}, "09:00", "10:00", "Europe/Berlin"), "2025-06-02T07:30:00Z", true},
		{"winter 09:00 local is 08:00 utc", weekly([]string{"mon"}, "09:00", "10:00", "Europe/Berlin"), "2025-12-01T07:30:00Z", false},
		{"winter 08:30 utc", weekly([]string{"mon"}, "09:00", "10:00", "Europe/Berlin"), "2025-12-01T08:30:00Z", true},

		// Silences that fail Validate are never active.
		{"invalid: no end", silence.Silence{Matchers: silence.Matchers{RuleID: "r"}, StartsAt: ts("2025-06-01T00:00:00Z")}, "2025-06-02T00:00:00Z", false},
		{"invalid: unknown zone", weekly([]string{"mon"}, "09:00", "17:00", "Mars/Olympus"), "2025-06-02T12:00:00Z", false},
		{"invalid: bad start", weekly([]string{"mon"}, "9:00", "17:00", "UTC"), "2025-06-02T12:00:00Z", false},
		{"invalid: both windows", func() silence.Silence {
			s := weekly([]string{"mon"}, "09:00", "17:00", "UTC")
			s.StartsAt, s.EndsAt = ts("2025-06-01T00:00:00Z"), ts("2025-06-03T00:00:00Z")
			return s
		}(), "2025-06-02T12:00:00Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := *ts(tt.at)
			if got := tt.s.Active(at); got != tt.want {
				t.Errorf("Active(%s) = %v, want %v (window %+v %+v %+v)", tt.at, got, tt.want, tt.s.StartsAt, tt.s.EndsAt, tt.s.Weekly)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	s := oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z")
	tests := []struct {
		s    silence.Silence
		at   string
		want bool
	}{
		{s, "2025-06-01T21:00:00Z", false},
		{s, "2025-06-02T01:59:59Z", false},
		{s, "2025-06-02T02:00:00Z", true},
		{weekly([]string{"mon"}, "09:00", "17:00", "UTC"), "2999-01-01T00:00:00Z", false},
	}
	for _, tt := range tests {
		if got := tt.s.Expired(*ts(tt.at)); got != tt.want {
			t.Errorf("Expired(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
}

func TestMatches(t *testing.T) {
	labels := map[string]string{"team": "db", "env": "prod"}
	tests := []struct {
		name string
		m    silence.Matchers
		want bool
	}{
		{"rule", silence.Matchers{RuleID: "r1"}, true},
		{"other rule", silence.Matchers{RuleID: "r2"}, false},
		{"agent", silence.Matchers{AgentID: "a1"}, true},
		{"other agent", silence.Matchers{AgentID: "a2"}, false},
		{"rule and agent", silence.Matchers{RuleID: "r1", AgentID: "a1"}, true},
		{"rule and other agent", silence.Matchers{RuleID: "r1", AgentID: "a2"}, false},
		{"one label", silence.Matchers{Labels: map[string]string{"team": "db"}}, true},
		{"all labels", silence.Matchers{Labels: map[string]string{"team": "db", "env": "prod"}}, true},
		{"label value differs", silence.Matchers{Labels: map[string]string{"team": "web"}}, false},
		{"label missing", silence.Matchers{Labels: map[string]string{"region": "eu"}}, false},
		{"one label of two missing", silence.Matchers{Labels: map[string]string{"team": "db", "region": "eu"}}, false},
		{"rule and label differs", silence.Matchers{RuleID: "r1", Labels: map[string]string{"team": "web"}}, false},
		{"no matchers match nothing", silence.Matchers{}, false},
		{"ids in another letter case", silence.Matchers{RuleID: "R1", AgentID: "A1"}, true},
	}
	for _, tt := range tests {
		s := silence.Silence{Matchers: tt.m}
		if got := s.Matches("r1", "a1", labels); got != tt.want {
			t.Errorf("%s: Matches(r1, a1, %v) with %+v = %v, want %v", tt.name, labels, tt.m, got, tt.want)
		}
	}
}

func TestSilenced(t *testing.T) {
	at := *ts("2025-06-02T12:00:00Z")
	active := oneOff("2025-06-02T00:00:00Z", "2025-06-03T00:00:00Z")
	active.Matchers = silence.Matchers{AgentID: "a1"}
	over := oneOff("2025-06-01T00:00:00Z", "2025-06-02T00:00:00Z")
	over.Matchers = silence.Matchers{RuleID: "r1"}
	tests := []struct {
		name    string
		ss      []silence.Silence
		agentID string
		want    bool
	}{
		{"none", nil, "a1", false},
		{"active and matching", []silence.Silence{over, active}, "a1", true},
		{"active, not matching", []silence.Silence{active}, "a2", false},
		{"matching, not active", []silence.Silence{over}, "a1", false},
	}
	for _, tt := range tests {
		if got := silence.Silenced(tt.ss, "r1", tt.agentID, nil, at); got != tt.want {
			t.Errorf("%s: Silenced(r1, %s) = %v, want %v", tt.name, tt.agentID, got, tt.want)
		}
	}
}

// The JSON shape is the API's.
func TestJSON(t *testing.T) {
	in := `{"id":"s1","matchers":{"rule_id":"r1","agent_id":"a1","labels":{"team":"db"}},` +
		`"weekly":{"days":["sat","sun"],"start":"22:00","end":"06:00","time_zone":"Europe/Berlin"},` +
		`"comment":"night","created_by":"alice","created_at":"2025-06-01T00:00:00Z"}`
	var s silence.Silence
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	want := silence.Silence{
		ID:        "s1",
		Matchers:  silence.Matchers{RuleID: "r1", AgentID: "a1", Labels: map[string]string{"team": "db"}},
		Weekly:    &silence.Weekly{Days: []string{"sat", "sun"}, Start: "22:00", End: "06:00", TimeZone: "Europe/Berlin"},
		Comment:   "night",
		CreatedBy: "alice",
		CreatedAt: *ts("2025-06-01T00:00:00Z"),
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Unmarshal(%s) = %+v, want %+v", in, s, want)
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Errorf("Marshal = %s, want %s", out, in)
	}

	one := oneOff("2025-06-01T22:00:00Z", "2025-06-02T02:00:00Z")
	out, err = json.Marshal(one)
	if err != nil {
		t.Fatal(err)
	}
	const wantOne = `{"id":"","matchers":{"rule_id":"` + ruleA + `"},"starts_at":"2025-06-01T22:00:00Z","ends_at":"2025-06-02T02:00:00Z","comment":"","created_by":"","created_at":"0001-01-01T00:00:00Z"}`
	if string(out) != wantOne {
		t.Errorf("Marshal(one-off) = %s, want %s", out, wantOne)
	}
}
