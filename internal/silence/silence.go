// Package silence holds back the notifications of matching alerts during a one-off or a weekly
// window. A silence never changes alert state or history: the notifier asks Silenced before it
// sends a transition, and that is all.
//
// # JSON
//
// A Silence is the body of POST /api/v1/silences. A one-off window:
//
//	{
//	  "matchers": {"rule_id": "5b0c...", "agent_id": "9d4c...", "labels": {"team": "infra"}},
//	  "starts_at": "2025-06-01T22:00:00Z",
//	  "ends_at": "2025-06-02T02:00:00Z",
//	  "comment": "database migration"
//	}
//
// A weekly window (instead of starts_at and ends_at):
//
//	"weekly": {"days": ["sat", "sun"], "start": "22:00", "end": "06:00", "time_zone": "Europe/Berlin"}
//
// "id", "created_by" and "created_at" are set by the store. Every matcher given must match (an
// alert of that rule, of that agent, and carrying every one of those labels); at least one is
// required, so that no silence holds back everything.
//
// # Weekly windows
//
// Days, Start and End are wall-clock times in TimeZone. A window starts on each listed day at
// Start and ends at End on the same day, or, when End is before Start, at End on the next day:
// {"days": ["fri"], "start": "22:00", "end": "06:00"} runs from Friday 22:00 to Saturday 06:00,
// and does not start again on Saturday evening. "24:00" is allowed as End for "until midnight".
//
// Because the window is wall-clock, a daylight-saving change shifts or stretches it the way a
// wall clock does: on the day clocks go forward, a window 02:30-04:00 (in a zone that skips
// 02:00-03:00) runs from 03:00 to 04:00; on the day they go back, a window 02:00-02:30 (in a zone
// that repeats 02:00-03:00) is active both times the clock shows those minutes. Zone rules come
// from time.LoadLocation, with the tz database embedded (time/tzdata) for hosts without one.
package silence

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/textcheck"

	// Embedded zone data: a container image without /usr/share/zoneinfo would otherwise reject
	// every time zone but UTC, and silence windows would depend on the host.
	_ "time/tzdata"
)

// Bounds Validate enforces.
const (
	MaxIDLen         = 128  // bytes of Matchers.RuleID and Matchers.AgentID
	MaxLabels        = 32   // entries of Matchers.Labels
	MaxLabelKeyLen   = 128  // bytes of a label name
	MaxLabelValueLen = 256  // bytes of a label value
	MaxCommentLen    = 1024 // bytes of Comment
)

// Silence holds back the notifications of the alerts its Matchers select while it is Active.
// Exactly one of the one-off window (StartsAt and EndsAt) and Weekly is set.
type Silence struct {
	ID       string   `json:"id"`
	Matchers Matchers `json:"matchers"`
	// StartsAt (inclusive) and EndsAt (exclusive) bound a one-off window.
	StartsAt *time.Time `json:"starts_at,omitempty"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
	// Weekly is a window that recurs every week.
	Weekly    *Weekly   `json:"weekly,omitempty"`
	Comment   string    `json:"comment"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
}

// Matchers select alerts: those of rule RuleID, of agent AgentID and carrying every pair of
// Labels, each only when set.
type Matchers struct {
	RuleID  string            `json:"rule_id,omitempty"`
	AgentID string            `json:"agent_id,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Weekly is a window recurring on Days ("mon" ... "sun") from Start to End ("HH:MM", wall clock
// in TimeZone, an IANA name such as "Europe/Berlin" or "UTC"). End before Start crosses midnight
// into the next day; see the package comment.
type Weekly struct {
	Days     []string `json:"days"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	TimeZone string   `json:"time_zone"`
}

// ValidationError says which member of a silence is invalid and why.
type ValidationError struct {
	// Field is the JSON path of the member: "matchers.labels", "weekly.days".
	Field string
	// Reason is a sentence fragment for the client.
	Reason string
}

// Error returns "field: reason".
func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// dayNames maps the JSON day names to weekdays.
var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Validate returns a *ValidationError naming the first invalid member, or nil. It does not look
// at ID, CreatedBy and CreatedAt (the store sets them), nor at whether the window is already
// over (it has no clock).
func (s Silence) Validate() error {
	if err := s.Matchers.validate(); err != nil {
		return err
	}
	if err := s.validateWindow(); err != nil {
		return err
	}
	switch {
	case len(s.Comment) > MaxCommentLen:
		return invalid("comment", "must be at most %d bytes, got %d", MaxCommentLen, len(s.Comment))
	case !utf8.ValidString(s.Comment):
		return invalid("comment", "must be valid UTF-8")
	case strings.ContainsFunc(s.Comment, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return invalid("comment", "must not contain control characters other than newlines and tabs")
	}
	return nil
}

func (m Matchers) validate() error {
	if m.empty() {
		return invalid("matchers", "at least one of rule_id, agent_id and labels is required")
	}
	if err := checkID("matchers.rule_id", m.RuleID); err != nil {
		return err
	}
	if err := checkID("matchers.agent_id", m.AgentID); err != nil {
		return err
	}
	if len(m.Labels) > MaxLabels {
		return invalid("matchers.labels", "must have at most %d entries, got %d", MaxLabels, len(m.Labels))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
		if k == "" {
			return invalid("matchers.labels", "must not have an empty key")
		}
		if err := checkText("matchers.labels", k, MaxLabelKeyLen); err != nil {
			return err
		}
		if m.Labels[k] == "" {
			return invalid("matchers.labels", "key %q: the value must not be empty", k)
		}
		if err := checkText("matchers.labels", m.Labels[k], MaxLabelValueLen); err != nil {
			return err
		}
	}
	return nil
}

// checkID checks an optional rule or agent id: empty, or a UUID (the ids the stores assign).
func checkID(field, id string) error {
	if id == "" {
		return nil
	}
	if err := checkText(field, id, MaxIDLen); err != nil {
		return err
	}
	if !alert.IsUUID(id) {
		return invalid(field, "%q is not a UUID: want 32 hex digits as 8-4-4-4-12, such as %q", id, "9d4c1f6e-2b7a-4c3d-8e5f-0a1b2c3d4e5f")
	}
	return nil
}

func (m Matchers) empty() bool { return m.RuleID == "" && m.AgentID == "" && len(m.Labels) == 0 }

func checkText(field, s string, limit int) error {
	if err := textcheck.Bounded(s, limit); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func (s Silence) validateWindow() error {
	if s.Weekly != nil {
		switch {
		case s.StartsAt != nil:
			return invalid("starts_at", "give a one-off window (starts_at, ends_at) or a weekly window, not both")
		case s.EndsAt != nil:
			return invalid("ends_at", "give a one-off window (starts_at, ends_at) or a weekly window, not both")
		}
		return s.Weekly.validate()
	}
	switch {
	case s.StartsAt == nil && s.EndsAt == nil:
		return invalid("starts_at", "a one-off window (starts_at and ends_at) or a weekly window is required")
	case s.StartsAt == nil || s.StartsAt.IsZero():
		return invalid("starts_at", "is required with ends_at")
	case s.EndsAt == nil || s.EndsAt.IsZero():
		return invalid("ends_at", "is required with starts_at")
	case !s.EndsAt.After(*s.StartsAt):
		return invalid("ends_at", "must be after starts_at (%s)", s.StartsAt.Format(time.RFC3339))
	}
	return nil
}

func (w *Weekly) validate() error {
	if len(w.Days) == 0 {
		return invalid("weekly.days", "at least one day is required: mon, tue, wed, thu, fri, sat, sun")
	}
	seen := make(map[string]bool, len(w.Days))
	for _, d := range w.Days {
		if _, ok := dayNames[d]; !ok {
			return invalid("weekly.days", "%q is not a day: use mon, tue, wed, thu, fri, sat, sun", d)
		}
		if seen[d] {
			return invalid("weekly.days", "lists %q twice", d)
		}
		seen[d] = true
	}
	start, ok := clock(w.Start)
	if !ok || start == minutesPerDay {
		return invalid("weekly.start", `must be a time of day "HH:MM" from "00:00" to "23:59", got %q`, w.Start)
	}
	end, ok := clock(w.End)
	if !ok {
		return invalid("weekly.end", `must be a time of day "HH:MM" from "00:00" to "24:00", got %q`, w.End)
	}
	if end == start {
		return invalid("weekly.end", "must differ from start (%s)", w.Start)
	}
	switch w.TimeZone {
	case "":
		return invalid("weekly.time_zone", `is required: an IANA time zone such as "Europe/Berlin" or "UTC"`)
	case "Local":
		return invalid("weekly.time_zone", `"Local" depends on the server: give an IANA time zone such as "Europe/Berlin" or "UTC"`)
	}
	if _, err := time.LoadLocation(w.TimeZone); err != nil {
		return invalid("weekly.time_zone", `%q is not an IANA time zone such as "Europe/Berlin" or "UTC"`, w.TimeZone)
	}
	return nil
}

const minutesPerDay = 24 * 60

// clock parses "HH:MM" (exactly two digits each, "24:00" allowed) into minutes after midnight.
func clock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	digit := func(c byte) (int, bool) { return int(c - '0'), c >= '0' && c <= '9' }
	h1, ok1 := digit(s[0])
	h2, ok2 := digit(s[1])
	m1, ok3 := digit(s[3])
	m2, ok4 := digit(s[4])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return 0, false
	}
	h, m := h1*10+h2, m1*10+m2
	if m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, false
	}
	return h*60 + m, true
}

// Active reports whether at falls in the silence's window: for a one-off window StartsAt <= at <
// EndsAt; for a weekly window, see the package comment. A silence that fails Validate is never
// active.
func (s Silence) Active(at time.Time) bool {
	if s.Weekly != nil {
		if s.StartsAt != nil || s.EndsAt != nil {
			return false
		}
		return s.Weekly.active(at)
	}
	if s.StartsAt == nil || s.EndsAt == nil {
		return false
	}
	return !at.Before(*s.StartsAt) && at.Before(*s.EndsAt)
}

func (w *Weekly) active(at time.Time) bool {
	start, ok1 := clock(w.Start)
	end, ok2 := clock(w.End)
	if !ok1 || !ok2 || start == end || start == minutesPerDay || w.TimeZone == "" || w.TimeZone == "Local" {
		return false
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return false
	}
	local := at.In(loc)
	// Whole minutes are enough: the window's bounds are whole minutes, and its end is exclusive.
	m := local.Hour()*60 + local.Minute()
	today := local.Weekday()
	if start < end {
		return w.on(today) && start <= m && m < end
	}
	// Crosses midnight: the part after Start belongs to today's window, the part before End to
	// the window that started yesterday.
	yesterday := (today + 6) % 7
	return (w.on(today) && m >= start) || (w.on(yesterday) && m < end)
}

// on reports whether a window starts on day d.
func (w *Weekly) on(d time.Weekday) bool {
	for _, name := range w.Days {
		if wd, ok := dayNames[name]; ok && wd == d {
			return true
		}
	}
	return false
}

// Expired reports whether the silence can never be active again at or after at: a one-off
// window that has ended. Weekly silences never expire.
func (s Silence) Expired(at time.Time) bool {
	return s.Weekly == nil && s.EndsAt != nil && !at.Before(*s.EndsAt)
}

// Matches reports whether the alert of rule ruleID on agent agentID with labels is selected by
// the silence's matchers: each matcher that is set must match (ids without regard to letter
// case, as UUIDs compare), and a silence without matchers matches nothing.
func (s Silence) Matches(ruleID, agentID string, labels map[string]string) bool {
	m := s.Matchers
	if m.empty() {
		return false
	}
	if m.RuleID != "" && !strings.EqualFold(m.RuleID, ruleID) {
		return false
	}
	if m.AgentID != "" && !strings.EqualFold(m.AgentID, agentID) {
		return false
	}
	for k, v := range m.Labels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Silenced reports whether any of ss both matches the alert (rule ruleID, agent agentID, labels)
// and is active at at: its notification is then held back.
func Silenced(ss []Silence, ruleID, agentID string, labels map[string]string, at time.Time) bool {
	for i := range ss {
		if ss[i].Matches(ruleID, agentID, labels) && ss[i].Active(at) {
			return true
		}
	}
	return false
}
