package alert

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var testKey = Key{RuleID: "r1", AgentID: "a1", Series: "core=total"}

// evString writes a transition as "from[:severity]>to[:severity]@seconds".
func evString(t Transition) string {
	side := func(s Status, sev Severity) string {
		if sev == "" {
			return string(s)
		}
		return string(s) + ":" + string(sev)
	}
	return fmt.Sprintf("%s>%s@%g", side(t.From, t.FromSeverity), side(t.To, t.Severity), t.At.Sub(t0).Seconds())
}

// run feeds samples to Step from prev and returns the final state and every transition.
func run(prev State, rule Rule, samples ...sample) (State, []Transition) {
	var all []Transition
	for _, s := range samples {
		var evs []Transition
		prev, evs = Step(prev, rule, s.v, sec(s.at))
		all = append(all, evs...)
	}
	return prev, all
}

func evStrings(evs []Transition) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, evString(e))
	}
	return out
}

// checkTransitions fails the test unless evs are the transitions want, as evString writes them.
func checkTransitions(t *testing.T, evs []Transition, want []string) {
	t.Helper()
	if got := evStrings(evs); !slices.Equal(got, want) {
		t.Fatalf("transitions = %q\nwant          %q", got, want)
	}
}

func withFor(r Rule, d time.Duration) Rule {
	r.For = Duration(d)
	return r
}

func TestStep(t *testing.T) {
	base := thresholdRule() // warning > 80 (recovery 70), critical > 95 (recovery 90), for 2m
	noRecovery := base
	noRecovery.Thresholds = Thresholds{Warning: &Threshold{Value: fp(80)}}
	below := base
	below.Operator = OpLT // free disk below 20 (recovers at 30), critical below 5 (recovers at 10)
	below.Thresholds = Thresholds{Warning: &Threshold{Value: fp(20), Recovery: fp(30)}, Critical: &Threshold{Value: fp(5), Recovery: fp(10)}}
	equal := base
	equal.Operator = OpEQ // state codes: 1 is a warning, 2 critical
	equal.Thresholds = Thresholds{Warning: &Threshold{Value: fp(1)}, Critical: &Threshold{Value: fp(2)}}

	tests := []struct {
		name    string
		rule    Rule
		samples []sample
		want    []string
	}{
		{"below every threshold", base, []sample{{0, 10}, {10, 80}, {20, 79}}, []string{}},
		{"for: pending, then firing once for has passed", base,
			[]sample{{0, 85}, {60, 85}, {119, 85}, {120, 85}, {180, 85}},
			[]string{"ok>pending:warning@0", "pending:warning>firing:warning@120"}},
		{"for: firing on the first sample after for", base,
			[]sample{{0, 85}, {300, 85}},
			[]string{"ok>pending:warning@0", "pending:warning>firing:warning@300"}},
		{"for: pending that recovers before for goes back to ok", base,
			[]sample{{0, 85}, {60, 60}, {200, 60}},
			[]string{"ok>pending:warning@0", "pending:warning>ok:warning@60"}},
		{"for: pending in the hysteresis band stays pending and fires", base,
			[]sample{{0, 85}, {60, 75}, {120, 75}},
			[]string{"ok>pending:warning@0", "pending:warning>firing:warning@120"}},
		{"for: a new crossing restarts the clock", base,
			[]sample{{0, 85}, {60, 60}, {90, 85}, {180, 85}, {210, 85}},
			[]string{"ok>pending:warning@0", "pending:warning>ok:warning@60", "ok>pending:warning@90", "pending:warning>firing:warning@210"}},
		{"for 0 fires at once", withFor(base, 0),
			[]sample{{0, 85}, {10, 60}},
			[]string{"ok>firing:warning@0", "firing:warning>resolved:warning@10"}},
		{"hysteresis: oscillating between threshold and recovery does not flap", withFor(base, 0),
			[]sample{{0, 85}, {10, 75}, {20, 82}, {30, 71}, {40, 79}, {50, 81}, {60, 70.5}, {70, 90}, {80, 70}},
			[]string{"ok>firing:warning@0", "firing:warning>resolved:warning@80"}},
		{"without recovery the same values flap", withFor(noRecovery, 0),
			[]sample{{0, 85}, {10, 75}, {20, 82}, {30, 71}},
			[]string{"ok>firing:warning@0", "firing:warning>resolved:warning@10", "ok>firing:warning@20", "firing:warning>resolved:warning@30"}},
		{"recovery at exactly the recovery level", withFor(base, 0),
			[]sample{{0, 85}, {10, 70.000001}, {20, 70}},
			[]string{"ok>firing:warning@0", "firing:warning>resolved:warning@20"}},
		{"escalation and de-escalation with hysteresis", withFor(base, 0),
			[]sample{{0, 85}, {10, 96}, {20, 92}, {30, 96}, {40, 89}, {50, 75}, {60, 91}, {70, 60}},
			[]string{"ok>firing:warning@0", "firing:warning>firing:critical@10", "firing:critical>firing:warning@40",
				"firing:warning>resolved:warning@70"}},
		{"straight to critical and back to ok", withFor(base, 0),
			[]sample{{0, 99}, {10, 50}},
			[]string{"ok>firing:critical@0", "firing:critical>resolved:critical@10"}},
		{"escalation waits for for too", base,
			[]sample{{0, 85}, {60, 96}, {120, 96}, {150, 96}, {180, 96}},
			[]string{"ok>pending:warning@0", "pending:warning>pending:critical@60", "pending:critical>firing:warning@120",
				"firing:warning>firing:critical@180"}},
		{"a critical spike shorter than for does not escalate", base,
			[]sample{{0, 85}, {120, 85}, {130, 99}, {140, 85}, {300, 85}},
			[]string{"ok>pending:warning@0", "pending:warning>firing:warning@120"}},
		{"both severities crossed at once fire critical", base,
			[]sample{{0, 99}, {120, 99}},
			[]string{"ok>pending:critical@0", "pending:critical>firing:critical@120"}},
		{"downward operator", withFor(below, 0),
			[]sample{{0, 50}, {10, 19}, {20, 25}, {30, 4}, {40, 8}, {50, 11}, {60, 29}, {70, 30}},
			[]string{"ok>firing:warning@10", "firing:warning>firing:critical@30", "firing:critical>firing:warning@50",
				"firing:warning>resolved:warning@70"}},
		{"== with two severities: critical drops to warning without a new wait", withFor(equal, time.Minute),
			[]sample{{0, 2}, {60, 2}, {70, 1}, {130, 2}, {189, 2}, {190, 2}, {200, 0}},
			[]string{"ok>pending:critical@0", "pending:critical>firing:critical@60", "firing:critical>firing:warning@70",
				"firing:warning>firing:critical@190", "firing:critical>resolved:critical@200"}},
		{"a critical that stops holding while pending", base,
			[]sample{{0, 99}, {60, 85}, {120, 85}},
			[]string{"ok>pending:critical@0", "pending:critical>pending:warning@60", "pending:warning>firing:warning@120"}},
		{"out-of-order and equal times are ignored", withFor(base, 0),
			[]sample{{100, 85}, {50, 10}, {100, 10}, {99.999, 10}, {110, 85}},
			[]string{"ok>firing:warning@100"}},
		{"NaN and Inf are ignored", withFor(base, 0),
			[]sample{{0, 85}, {10, math.NaN()}, {15, math.Inf(1)}, {17, math.Inf(-1)}, {20, 85}},
			[]string{"ok>firing:warning@0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, evs := run(NewState(testKey), tt.rule, tt.samples...)
			checkTransitions(t, evs, tt.want)
		})
	}
}

func TestStepEventDetails(t *testing.T) {
	rule := thresholdRule() // for 2m
	s, evs := run(NewState(testKey), rule, sample{0, 85}, sample{60, 97}, sample{120, 97}, sample{180, 97})
	if len(evs) != 4 {
		t.Fatalf("transitions = %q, want 4", evStrings(evs))
	}
	pending, firing := evs[0], evs[2]
	if pending.Threshold != 80 || pending.Value != 85 || pending.Notifies() || pending.RecoveryValue != nil {
		t.Errorf("pending = %+v, want threshold 80, value 85, no notification, no recovery value", pending)
	}
	if firing.Threshold != 80 || firing.Value != 97 || !firing.Notifies() || !firing.FiringSince.Equal(sec(120)) || !firing.ActiveSince.Equal(sec(0)) {
		t.Errorf("firing = %+v, want threshold 80, value 97, notifying, firing since 120s, active since 0s", firing)
	}
	if esc := evs[3]; esc.Threshold != 95 || !esc.Notifies() || !esc.FiringSince.Equal(sec(120)) {
		t.Errorf("escalation = %+v, want threshold 95, notifying, firing since 120s", esc)
	}
	wantState := State{Key: testKey, Status: StatusFiring, Severity: SeverityCritical, Since: sec(180),
		ActiveSince: sec(0), FiringSince: sec(120), LastEval: sec(180), Value: 97, WarningSince: sec(0), CriticalSince: sec(60)}
	if !reflect.DeepEqual(s, wantState) {
		t.Fatalf("state = %+v\nwant    %+v", s, wantState)
	}

	// De-escalate, then resolve: the resolved transition carries the recovery value, the
	// recovery level it passed and how long the alert fired.
	s, evs = run(s, rule, sample{200, 85}, sample{400, 65.5})
	if got, want := evStrings(evs), []string{"firing:critical>firing:warning@200", "firing:warning>resolved:warning@400"}; !slices.Equal(got, want) {
		t.Fatalf("transitions = %q, want %q", got, want)
	}
	res := evs[1]
	if res.RecoveryValue == nil || *res.RecoveryValue != 65.5 || res.Value != 65.5 {
		t.Errorf("resolved recovery value = %v, value %v; want 65.5", res.RecoveryValue, res.Value)
	}
	if res.Threshold != 70 || time.Duration(res.Duration) != 280*time.Second || !res.Notifies() {
		t.Errorf("resolved = %+v, want threshold 70, duration 280s (fired at 120s), notifying", res)
	}
	if !res.FiringSince.Equal(sec(120)) || !res.ActiveSince.Equal(sec(0)) {
		t.Errorf("resolved since = %v / %v, want firing 120s, active 0s", res.FiringSince, res.ActiveSince)
	}
	wantState = State{Key: testKey, Status: StatusOK, Since: sec(400), LastEval: sec(400), Value: 65.5}
	if !reflect.DeepEqual(s, wantState) {
		t.Fatalf("state = %+v\nwant    %+v", s, wantState)
	}
	if s.AlertID() != "" || s.Active() {
		t.Errorf("ok state: AlertID %q, Active %v; want none", s.AlertID(), s.Active())
	}

	// Pending that clears: the transition says for how long, and does not notify.
	_, evs = run(NewState(testKey), rule, sample{0, 85}, sample{45, 60})
	if len(evs) != 2 || time.Duration(evs[1].Duration) != 45*time.Second || evs[1].Notifies() || evs[1].Threshold != 70 {
		t.Errorf("pending>ok = %+v, want duration 45s, threshold 70, no notification", evs)
	}
}

var uuidV8 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestTransitionIDs(t *testing.T) {
	rule := withFor(thresholdRule(), 0)
	samples := []sample{{0, 85}, {10, 96}, {20, 85}, {30, 10}, {40, 85}, {50, 10}}
	_, a := run(NewState(testKey), rule, samples...)
	_, b := run(NewState(testKey), rule, samples...)
	if len(a) != 6 {
		t.Fatalf("transitions = %q, want 6", evStrings(a))
	}
	seen := map[string]bool{}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].AlertID != b[i].AlertID {
			t.Errorf("transition %d: ids %s/%s and %s/%s differ between identical runs", i, a[i].ID, a[i].AlertID, b[i].ID, b[i].AlertID)
		}
		if !uuidV8.MatchString(a[i].ID) || !uuidV8.MatchString(a[i].AlertID) {
			t.Errorf("transition %d: ids %q, %q are not version 8 UUIDs", i, a[i].ID, a[i].AlertID)
		}
		if seen[a[i].ID] {
			t.Errorf("transition %d: id %s repeats", i, a[i].ID)
		}
		seen[a[i].ID] = true
	}
	// One alert per episode: the first four transitions share one, the last two another.
	if a[0].AlertID != a[3].AlertID || a[1].AlertID != a[0].AlertID || a[4].AlertID == a[0].AlertID || a[4].AlertID != a[5].AlertID {
		t.Errorf("alert ids = %s %s %s %s %s %s, want one per episode", a[0].AlertID, a[1].AlertID, a[2].AlertID, a[3].AlertID, a[4].AlertID, a[5].AlertID)
	}
	s, _ := run(NewState(testKey), rule, samples[:2]...)
	if s.AlertID() != a[0].AlertID {
		t.Errorf("State.AlertID() = %s, want the transitions' %s", s.AlertID(), a[0].AlertID)
	}
	// Another agent, series or rule: other ids.
	for _, k := range []Key{{"r1", "a2", "core=total"}, {"r1", "a1", "core=0"}, {"r2", "a1", "core=total"}} {
		_, c := run(NewState(k), rule, samples[0])
		if c[0].ID == a[0].ID || c[0].AlertID == a[0].AlertID {
			t.Errorf("key %+v: same ids as %+v", k, testKey)
		}
	}
	// Field boundaries are part of the hash: ("ab", "c") and ("a", "bc") differ.
	if deriveID("ab", "c") == deriveID("a", "bc") {
		t.Errorf("deriveID collides across field boundaries")
	}
}

// TestStepRedelivery replays what an at-least-once stream does: each sample may be delivered
// again, before or after its state was stored. Either way each transition is produced once,
// or produced again with the same id when the first attempt's state was never stored.
func TestStepRedelivery(t *testing.T) {
	rule := thresholdRule()
	samples := []sample{{0, 85}, {60, 99}, {120, 99}, {180, 99}, {240, 60}, {300, 40}}
	_, want := run(NewState(testKey), rule, samples...)
	if len(want) == 0 {
		t.Fatalf("no transitions")
	}

	// Stored, then delivered again (and again out of order): nothing more.
	s := NewState(testKey)
	var got []Transition
	for i, smp := range samples {
		var evs []Transition
		s, evs = Step(s, rule, smp.v, sec(smp.at))
		got = append(got, evs...)
		for j := i; j >= 0; j-- { // every earlier sample is redelivered
			again, evs := Step(s, rule, samples[j].v, sec(samples[j].at))
			if len(evs) != 0 || !reflect.DeepEqual(again, s) {
				t.Fatalf("redelivering sample %d after %d: %q, state changed: %v", j, i, evStrings(evs), !reflect.DeepEqual(again, s))
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with redeliveries: %q, want %q", evStrings(got), evStrings(want))
	}

	// Processed but not stored (the alerter died before its atomic write): the retry from the
	// stored state yields the same transitions, with the same ids, for a store to deduplicate.
	s = NewState(testKey)
	got = nil
	for _, smp := range samples {
		_, lost := Step(s, rule, smp.v, sec(smp.at))
		var evs []Transition
		s, evs = Step(s, rule, smp.v, sec(smp.at))
		if !reflect.DeepEqual(lost, evs) {
			t.Fatalf("retry of %v: %+v, first attempt %+v", smp, evs, lost)
		}
		got = append(got, evs...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with retries: %q, want %q", evStrings(got), evStrings(want))
	}
}

func TestStepRuleEdits(t *testing.T) {
	rule := withFor(thresholdRule(), 0)
	s, _ := run(NewState(testKey), rule, sample{0, 99})
	if s.Status != StatusFiring || s.Severity != SeverityCritical {
		t.Fatalf("state = %+v, want firing critical", s)
	}
	// For grows to an hour: the firing alert neither resolves nor goes back to pending, and
	// still de-escalates.
	longer := withFor(rule, time.Hour)
	s, evs := run(s, longer, sample{5, 99}, sample{10, 85})
	if got := evStrings(evs); !slices.Equal(got, []string{"firing:critical>firing:warning@10"}) {
		t.Errorf("after a longer for: %q", got)
	}
	s, _ = run(s, rule, sample{11, 99}) // back to critical under for 0
	// The critical threshold is removed: the next sample de-escalates.
	edited := rule
	edited.Thresholds.Critical = nil
	s, evs = run(s, edited, sample{15, 99})
	if got := evStrings(evs); !slices.Equal(got, []string{"firing:critical>firing:warning@15"}) {
		t.Errorf("after removing critical: %q", got)
	}
	// The rule becomes unusable (no thresholds): the alert resolves.
	edited.Thresholds.Warning = nil
	_, evs = run(s, edited, sample{20, 99})
	if got := evStrings(evs); !slices.Equal(got, []string{"firing:warning>resolved:warning@20"}) || evs[0].Threshold != 0 {
		t.Errorf("after removing every threshold: %q (threshold %v)", got, evs[0].Threshold)
	}
	// A zero State (never stored) works like NewState, taking the rule's id.
	s, evs = Step(State{}, rule, 99, sec(0))
	if s.RuleID != rule.ID || s.Status != StatusFiring || len(evs) != 1 || evs[0].RuleID != rule.ID {
		t.Errorf("Step(State{}) = %+v, %+v; want firing, keyed by rule %q", s, evs, rule.ID)
	}
}

func TestRetire(t *testing.T) {
	rule := thresholdRule()
	changed := sec(1000)
	firing, _ := run(NewState(testKey), rule, sample{0, 85}, sample{120, 85})
	next, evs := Retire(firing, changed)
	if got := evStrings(evs); !slices.Equal(got, []string{"firing:warning>resolved:warning@1000"}) {
		t.Fatalf("Retire(firing) = %q", got)
	}
	e := evs[0]
	if e.Reason != ReasonRuleChanged || e.RecoveryValue != nil || time.Duration(e.Duration) != 880*time.Second ||
		e.AlertID != firing.AlertID() || !e.Notifies() || !uuidV8.MatchString(e.ID) {
		t.Errorf("Retire(firing) = %+v", e)
	}
	if next.Status != StatusOK || next.Active() || next.Key != testKey || !next.LastEval.Equal(changed) {
		t.Errorf("Retire(firing) state = %+v, want ok", next)
	}
	// Its id differs from a resolution by a sample at the same time.
	_, byStep := Step(firing, rule, 0, changed)
	if len(byStep) != 1 || byStep[0].ID == e.ID {
		t.Errorf("Retire id %s equals Step's %+v", e.ID, byStep)
	}
	// Deterministic in (state, at).
	if _, again := Retire(firing, changed); again[0].ID != e.ID {
		t.Errorf("Retire ids differ: %s, %s", again[0].ID, e.ID)
	}

	pending, _ := run(NewState(testKey), rule, sample{0, 85})
	_, evs = Retire(pending, sec(30))
	if got := evStrings(evs); !slices.Equal(got, []string{"pending:warning>ok:warning@30"}) || evs[0].Notifies() {
		t.Errorf("Retire(pending) = %q (notifies %v)", got, evs[0].Notifies())
	}
	// A change older than the last sample keeps LastEval.
	if next, _ := Retire(firing, sec(5)); !next.LastEval.Equal(sec(120)) {
		t.Errorf("Retire(firing, earlier) LastEval = %v, want %v", next.LastEval, sec(120))
	}
	ok := NewState(testKey)
	if next, evs := Retire(ok, changed); len(evs) != 0 || !reflect.DeepEqual(next, ok) {
		t.Errorf("Retire(ok) = %+v, %q; want no change", next, evStrings(evs))
	}
}

func TestStateAndTransitionJSON(t *testing.T) {
	rule := withFor(thresholdRule(), 0)
	s, evs := run(NewState(testKey), rule, sample{0, 99}, sample{10, 50})
	s, more := run(s, rule, sample{20, 85})
	evs = append(evs, more...)

	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("Marshal(state) = %v", err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("state round trip = %+v, %v; want %+v (json %s)", back, err, s, b)
	}
	for _, frag := range []string{`"rule_id":"r1"`, `"agent_id":"a1"`, `"series":"core=total"`, `"status":"firing"`, `"severity":"warning"`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("state json %s lacks %s", b, frag)
		}
	}
	if strings.Contains(string(b), "critical_since") {
		t.Errorf("state json %s has a zero critical_since", b)
	}

	resolved := evs[1]
	b, err = json.Marshal(resolved)
	if err != nil {
		t.Fatalf("Marshal(transition) = %v", err)
	}
	for _, frag := range []string{`"from":"firing"`, `"to":"resolved"`, `"recovery_value":50`, `"duration":"10s"`, `"value":50`, `"threshold":90`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("transition json %s lacks %s", b, frag)
		}
	}
	var backT Transition
	if err := json.Unmarshal(b, &backT); err != nil || !reflect.DeepEqual(backT, resolved) {
		t.Fatalf("transition round trip = %+v, %v; want %+v", backT, err, resolved)
	}
	if b, _ := json.Marshal(evs[0]); strings.Contains(string(b), "recovery_value") || strings.Contains(string(b), "duration") {
		t.Errorf("firing transition json %s has recovery_value or duration", b)
	}
}

func TestEvaluate(t *testing.T) {
	rule := withFor(thresholdRule(), 0) // avg over 5m, warning > 80, critical > 95
	var w Window
	s := NewState(testKey)
	type step struct {
		at, v float64
		want  []string
		value float64 // the state's value afterwards
	}
	steps := []step{
		{0, 70, []string{}, 70},
		{60, 90, []string{}, 80}, // avg 80: not above 80
		{120, 100, []string{"ok>firing:warning@120"}, 260.0 / 3},
		{120, 100, []string{}, 260.0 / 3}, // redelivered: neither window nor state change
		{30, 0, []string{}, 260.0 / 3},    // late: counted by the window, not evaluated
		// avg of 70, 0, 90, 100, 80 is 68, past the recovery level 70: resolved.
		{180, 80, []string{"firing:warning>resolved:warning@180"}, 68},
		// The window now holds 100 (120s), 80 (180s) and 60 (400s): avg 80, not above 80.
		{400, 60, []string{}, 80},
	}
	for _, st := range steps {
		var evs []Transition
		s, evs = Evaluate(s, &w, rule, st.v, sec(st.at))
		if got := evStrings(evs); !slices.Equal(got, st.want) {
			t.Errorf("Evaluate(%v at %vs) = %q, want %q", st.v, st.at, got, st.want)
		}
		if math.Abs(s.Value-st.value) > 1e-9 {
			t.Errorf("after %v at %vs: state value %v, want %v", st.v, st.at, s.Value, st.value)
		}
	}
	if got := w.Count(); got != 3 {
		t.Errorf("window count = %d, want 3", got)
	}

	// last needs no window: a nil one is fine, and the value is the sample's.
	last := rule
	last.Aggregation, last.Window = AggLast, 0
	silent := silentRule()
	if last.NeedsWindow() || !rule.NeedsWindow() || silent.NeedsWindow() {
		t.Errorf("NeedsWindow: last %v, avg %v, silent %v; want false, true, false", last.NeedsWindow(), rule.NeedsWindow(), silent.NeedsWindow())
	}
	s, evs := Evaluate(NewState(testKey), nil, last, 99, sec(0))
	if got := evStrings(evs); !slices.Equal(got, []string{"ok>firing:critical@0"}) || s.Value != 99 {
		t.Errorf("Evaluate(last, nil window) = %q, value %v", got, s.Value)
	}
}
