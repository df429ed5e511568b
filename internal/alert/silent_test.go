package alert

import (
	"reflect"
	"testing"
	"time"
)

var silentKey = Key{RuleID: "s1", AgentID: "a1"}

// tick is one evaluation of an agent_silent rule: the agent's last_seen (-1: never) and now,
// in seconds after t0, which is also the agent's registration time.
type tick struct{ lastSeen, now float64 }

func runSilent(prev State, rule Rule, ticks ...tick) (State, []Transition) {
	var all []Transition
	for _, tk := range ticks {
		var seen *time.Time
		if tk.lastSeen >= 0 {
			ls := sec(tk.lastSeen)
			seen = &ls
		}
		var evs []Transition
		prev, evs = StepSilent(prev, rule, seen, t0, sec(tk.now))
		all = append(all, evs...)
	}
	return prev, all
}

func TestStepSilent(t *testing.T) {
	rule := silentRule() // after 5m, critical
	warning := rule
	warning.Severity = SeverityWarning
	tests := []struct {
		name  string
		rule  Rule
		ticks []tick
		want  []string
	}{
		{"never sent, within after", rule, []tick{{-1, 0}, {-1, 100}, {-1, 300}}, []string{}},
		{"never sent fires after after, once", rule, []tick{{-1, 100}, {-1, 300.001}, {-1, 400}, {-1, 5000}},
			[]string{"ok>firing:critical@300"}},
		{"never sent, noticed late: fires at the crossing", rule, []tick{{-1, 5000}},
			[]string{"ok>firing:critical@300"}},
		{"reporting agent stays ok", rule, []tick{{10, 20}, {200, 400}, {450, 700}}, []string{}},
		{"stops reporting, then reports again", rule, []tick{{100, 150}, {100, 401}, {100, 800}, {900, 905}, {900, 1000}},
			[]string{"ok>firing:critical@400", "firing:critical>resolved:critical@900"}},
		{"reports, but went silent again long ago", rule, []tick{{-1, 400}, {500, 2000}},
			[]string{"ok>firing:critical@300", "firing:critical>resolved:critical@500", "ok>firing:critical@800"}},
		{"a stale last_seen neither resolves nor fires again", rule, []tick{{100, 401}, {50, 500}, {-1, 600}},
			[]string{"ok>firing:critical@400"}},
		{"severity from the rule", warning, []tick{{-1, 301}}, []string{"ok>firing:warning@300"}},
		{"disabled kind never fires", func() Rule { r := rule; r.Kind = KindThreshold; return r }(), []tick{{-1, 5000}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, evs := runSilent(NewState(silentKey), tt.rule, tt.ticks...)
			checkTransitions(t, evs, tt.want)
		})
	}
}

func TestStepSilentDetails(t *testing.T) {
	rule := silentRule()
	s, evs := runSilent(NewState(silentKey), rule, tick{-1, 1000})
	if len(evs) != 1 {
		t.Fatalf("transitions = %q, want one", evStrings(evs))
	}
	f := evs[0]
	if f.Value != 300 || f.Threshold != 300 || !f.Notifies() || f.AlertID != s.AlertID() || !uuidV8.MatchString(f.ID) ||
		!f.FiringSince.Equal(sec(300)) || f.RecoveryValue != nil {
		t.Errorf("firing = %+v, want value and threshold 300 (seconds), firing since 300s", f)
	}
	wantState := State{Key: silentKey, Status: StatusFiring, Severity: SeverityCritical, Since: sec(300),
		ActiveSince: sec(300), FiringSince: sec(300), LastEval: t0, Value: 300}
	if !reflect.DeepEqual(s, wantState) {
		t.Fatalf("state = %+v\nwant    %+v", s, wantState)
	}

	// Another copy evaluating at another time derives the very same transition.
	_, other := runSilent(NewState(silentKey), rule, tick{-1, 301})
	if !reflect.DeepEqual(other, evs) {
		t.Errorf("copy at now=301s: %+v, want %+v", other, evs)
	}
	// Evaluating the stored state again changes nothing.
	if again, evs := runSilent(s, rule, tick{-1, 2000}); len(evs) != 0 || !reflect.DeepEqual(again, s) {
		t.Errorf("re-evaluation: %q, state %+v; want nothing", evStrings(evs), again)
	}

	// The agent reports at 1200s: resolved, carrying how long it was silent (since its
	// registration, as it never sent before) and how long the alert fired.
	s, evs = runSilent(s, rule, tick{1200, 1201})
	if len(evs) != 1 {
		t.Fatalf("transitions = %q, want one", evStrings(evs))
	}
	r := evs[0]
	if r.To != StatusResolved || r.RecoveryValue == nil || *r.RecoveryValue != 1200 || r.Value != 1200 ||
		time.Duration(r.Duration) != 900*time.Second || r.AlertID != f.AlertID || !r.Notifies() {
		t.Errorf("resolved = %+v, want recovery value 1200 (seconds silent), duration 900s, alert %s", r, f.AlertID)
	}
	if s.Status != StatusOK || !s.LastEval.Equal(sec(1200)) || s.Active() {
		t.Errorf("state = %+v, want ok with last_eval 1200s", s)
	}
	if _, evs := runSilent(s, rule, tick{1200, 1300}); len(evs) != 0 {
		t.Errorf("after resolving: %q, want nothing", evStrings(evs))
	}

	// last_seen lagged: the report predates the firing time. Resolved, duration not negative.
	s, _ = runSilent(NewState(silentKey), rule, tick{-1, 301})
	_, evs = runSilent(s, rule, tick{250, 302})
	if len(evs) != 1 || evs[0].Duration != 0 || *evs[0].RecoveryValue != 250 {
		t.Errorf("lagging report: %+v, want resolved with duration 0 and 250s silent", evs)
	}

	// A new silence is a new alert with new ids.
	_, evs = runSilent(NewState(silentKey), rule, tick{-1, 400}, tick{500, 2000})
	if len(evs) != 3 || evs[2].AlertID == evs[0].AlertID || evs[2].ID == evs[0].ID {
		t.Errorf("second silence: %+v, want a new alert", evs)
	}
	// Another agent: other ids.
	_, mine := runSilent(NewState(silentKey), rule, tick{-1, 400})
	_, theirs := runSilent(NewState(Key{RuleID: "s1", AgentID: "a2"}), rule, tick{-1, 400})
	if mine[0].ID == theirs[0].ID {
		t.Errorf("two agents share transition id %s", mine[0].ID)
	}
}
