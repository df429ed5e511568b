package alert

import (
	"testing"
	"time"
)

func i64(v int64) *int64 { return &v }

func pipelineRule(check Check) Rule {
	r := Rule{ID: uid(7), Name: "Pipeline", Kind: KindPipeline, Severity: SeverityCritical, Enabled: true,
		Pipeline: &Pipeline{Check: check}}
	switch check {
	case CheckGroupLag:
		r.Pipeline.Groups, r.Pipeline.Bound, r.For = []string{"influx-writer", "pg-sync"}, i64(100000), Duration(2*time.Minute)
	case CheckNoConsumer:
		r.Pipeline.Groups, r.Pipeline.Idle = []string{"alerter"}, Duration(time.Minute)
	case CheckStoreDown:
		r.Pipeline.Stores = []string{StoreInfluxDB, StorePostgreSQL}
	}
	return r
}

func TestValidatePipeline(t *testing.T) {
	tests := []struct {
		name   string
		check  Check
		change func(r *Rule)
		field  string // "" for valid
	}{
		{"valid group_lag", CheckGroupLag, func(*Rule) {}, ""},
		{"valid dead_letters", CheckDeadLetters, func(*Rule) {}, ""},
		{"valid no_consumer", CheckNoConsumer, func(*Rule) {}, ""},
		{"valid store_down", CheckStoreDown, func(r *Rule) { r.For = Duration(30 * time.Second) }, ""},
		{"valid watchdog", CheckWatchdog, func(r *Rule) { r.Severity = SeverityWarning }, ""},
		{"valid bound 0", CheckGroupLag, func(r *Rule) { r.Pipeline.Bound = i64(0) }, ""},
		{"pipeline missing", CheckWatchdog, func(r *Rule) { r.Pipeline = nil }, "pipeline"},
		{"check missing", CheckWatchdog, func(r *Rule) { r.Pipeline.Check = "" }, "pipeline.check"},
		{"check unknown", CheckWatchdog, func(r *Rule) { r.Pipeline.Check = "lag" }, "pipeline.check"},
		{"groups missing", CheckGroupLag, func(r *Rule) { r.Pipeline.Groups = nil }, "pipeline.groups"},
		{"group blank", CheckNoConsumer, func(r *Rule) { r.Pipeline.Groups = []string{" "} }, "pipeline.groups"},
		{"group twice", CheckGroupLag, func(r *Rule) { r.Pipeline.Groups = []string{"a", "a"} }, "pipeline.groups"},
		{"groups on store_down", CheckStoreDown, func(r *Rule) { r.Pipeline.Groups = []string{"a"} }, "pipeline.groups"},
		{"bound missing", CheckGroupLag, func(r *Rule) { r.Pipeline.Bound = nil }, "pipeline.bound"},
		{"bound negative", CheckGroupLag, func(r *Rule) { r.Pipeline.Bound = i64(-1) }, "pipeline.bound"},
		{"bound on no_consumer", CheckNoConsumer, func(r *Rule) { r.Pipeline.Bound = i64(1) }, "pipeline.bound"},
		{"idle missing", CheckNoConsumer, func(r *Rule) { r.Pipeline.Idle = 0 }, "pipeline.idle"},
		{"idle short", CheckNoConsumer, func(r *Rule) { r.Pipeline.Idle = Duration(time.Second) }, "pipeline.idle"},
		{"idle on group_lag", CheckGroupLag, func(r *Rule) { r.Pipeline.Idle = Duration(time.Minute) }, "pipeline.idle"},
		{"stores missing", CheckStoreDown, func(r *Rule) { r.Pipeline.Stores = nil }, "pipeline.stores"},
		{"store unknown", CheckStoreDown, func(r *Rule) { r.Pipeline.Stores = []string{"mysql"} }, "pipeline.stores"},
		{"stores on watchdog", CheckWatchdog, func(r *Rule) { r.Pipeline.Stores = []string{"redis"} }, "pipeline.stores"},
		{"for on watchdog", CheckWatchdog, func(r *Rule) { r.For = Duration(time.Minute) }, "for"},
		{"for negative", CheckGroupLag, func(r *Rule) { r.For = Duration(-time.Second) }, "for"},
		{"severity missing", CheckDeadLetters, func(r *Rule) { r.Severity = "" }, "severity"},
		{"agents", CheckDeadLetters, func(r *Rule) { r.Agents.Labels = map[string]string{"a": "b"} }, "agents"},
		{"metric", CheckDeadLetters, func(r *Rule) { r.Metric = "cpu.x" }, "metric"},
		{"after", CheckDeadLetters, func(r *Rule) { r.After = Duration(time.Minute) }, "after"},
		{"pipeline on threshold", CheckWatchdog, func(r *Rule) {
			p := r.Pipeline
			*r = thresholdRule()
			r.Pipeline = p
		}, "pipeline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := pipelineRule(tt.check)
			tt.change(&r)
			checkValidate(t, r, tt.field, "")
		})
	}
}

func TestStepPipeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := Key{RuleID: uid(7), Series: "influx-writer"}
	tests := []struct {
		name  string
		rule  Rule
		steps []struct {
			after time.Duration
			value float64
		}
		want []Status // the To of each transition, in order
	}{
		{"lag over bound for 2m fires, then resolves", pipelineRule(CheckGroupLag), []struct {
			after time.Duration
			value float64
		}{{0, 200000}, {time.Minute, 150000}, {2 * time.Minute, 120000}, {3 * time.Minute, 10}},
			[]Status{StatusPending, StatusFiring, StatusResolved}},
		{"lag dipping below bound before for stays quiet", pipelineRule(CheckGroupLag), []struct {
			after time.Duration
			value float64
		}{{0, 200000}, {time.Minute, 5}, {2 * time.Minute, 200000}},
			[]Status{StatusPending, StatusOK, StatusPending}},
		{"no live consumer fires, a consumer back resolves", pipelineRule(CheckNoConsumer), []struct {
			after time.Duration
			value float64
		}{{0, 1}, {time.Second, 0}, {2 * time.Second, 2}},
			[]Status{StatusFiring, StatusResolved}},
		{"dead letters fire while any, resolve when none", pipelineRule(CheckDeadLetters), []struct {
			after time.Duration
			value float64
		}{{0, 0}, {time.Second, 3}, {2 * time.Second, 4}, {3 * time.Second, 0}},
			[]Status{StatusFiring, StatusResolved}},
		{"watchdog fires at once and stays", pipelineRule(CheckWatchdog), []struct {
			after time.Duration
			value float64
		}{{0, 1}, {time.Hour, 1}, {48 * time.Hour, 1}},
			[]Status{StatusFiring}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := NewState(key)
			var got []Status
			for _, s := range tt.steps {
				var trs []Transition
				st, trs = StepPipeline(st, tt.rule, s.value, t0.Add(s.after))
				for _, tr := range trs {
					got = append(got, tr.To)
					if tr.AgentID != "" || tr.Series != key.Series {
						t.Errorf("transition key = %+v, want no agent and series %q", tr.Key, key.Series)
					}
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("transitions = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("transitions = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestStepPipelineIgnoresOlderNow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := pipelineRule(CheckWatchdog)
	st, trs := StepPipeline(NewState(Key{RuleID: r.ID}), r, 1, t0)
	if len(trs) != 1 || trs[0].To != StatusFiring {
		t.Fatalf("first check = %+v, want firing", trs)
	}
	if next, trs := StepPipeline(st, r, 0, t0.Add(-time.Second)); len(trs) != 0 || next.Status != StatusFiring {
		t.Errorf("StepPipeline at an older now = %+v, %v, want the state unchanged", next, trs)
	}
}
