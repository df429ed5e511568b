package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fp(v float64) *float64 { return &v }

// uid returns the n-th test UUID.
func uid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// Test UUIDs of agents and channels.
var (
	chanA, chanB   = uid(1), uid(2)
	agentA, agentB = uid(11), uid(12)
)

// thresholdRule returns a valid threshold rule: warning above 80 (recovers at 70), critical
// above 95 (recovers at 90), avg over 5m, for 2m.
func thresholdRule() Rule {
	return Rule{
		ID: "r1", Name: "CPU busy", Kind: KindThreshold,
		Metric: "cpu.usage_percent", Tags: map[string]string{"core": "total"},
		Agents:      AgentSelector{Labels: map[string]string{"env": "prod"}},
		Aggregation: AggAvg, Window: Duration(5 * time.Minute), Operator: OpGT,
		Thresholds: Thresholds{
			Warning:  &Threshold{Value: fp(80), Recovery: fp(70)},
			Critical: &Threshold{Value: fp(95), Recovery: fp(90)},
		},
		For: Duration(2 * time.Minute), Labels: map[string]string{"team": "infra"},
		Summary:  "{{.Rule}} on {{.Agent}}: {{.Value}}",
		Channels: []string{chanA, chanB}, Enabled: true,
	}
}

func silentRule() Rule {
	return Rule{ID: "s1", Name: "Agent silent", Kind: KindAgentSilent, After: Duration(5 * time.Minute),
		Severity: SeverityCritical, Enabled: true}
}

func TestValidate(t *testing.T) {
	many := func(n int, f func(i int) string) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[f(i)] = "v"
		}
		return m
	}
	ids := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = uid(i)
		}
		return s
	}
	tests := []struct {
		name   string
		base   func() Rule
		change func(r *Rule)
		field  string // "" for a valid rule
		reason string // a fragment of the reason
	}{
		{"valid threshold rule", thresholdRule, func(r *Rule) {}, "", ""},
		{"valid silent rule", silentRule, func(r *Rule) {}, "", ""},
		{"valid: last without window", thresholdRule, func(r *Rule) { r.Aggregation, r.Window = AggLast, 0 }, "", ""},
		{"valid: last with window", thresholdRule, func(r *Rule) { r.Aggregation = AggLast }, "", ""},
		{"valid: only critical", thresholdRule, func(r *Rule) { r.Thresholds.Warning = nil }, "", ""},
		{"valid: only warning, no recovery", thresholdRule, func(r *Rule) {
			r.Thresholds = Thresholds{Warning: &Threshold{Value: fp(1)}}
		}, "", ""},
		{"valid: recovery equal to threshold", thresholdRule, func(r *Rule) { r.Thresholds.Critical.Recovery = fp(95) }, "", ""},
		{"valid: downward operator", thresholdRule, func(r *Rule) {
			r.Operator = OpLT
			r.Thresholds = Thresholds{Warning: &Threshold{Value: fp(20), Recovery: fp(30)}, Critical: &Threshold{Value: fp(5), Recovery: fp(30)}}
		}, "", ""},
		{"valid: == without recovery", thresholdRule, func(r *Rule) {
			r.Operator = OpEQ
			r.Thresholds = Thresholds{Warning: &Threshold{Value: fp(1)}, Critical: &Threshold{Value: fp(0)}}
		}, "", ""},
		{"valid: agent ids", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{agentA, strings.ToUpper(agentB)}} }, "", ""},
		{"valid: all agents, no tags, no labels, no summary", thresholdRule, func(r *Rule) {
			r.Agents, r.Tags, r.Labels, r.Summary, r.Channels = AgentSelector{}, nil, nil, "", nil
		}, "", ""},
		{"valid: dotted measurement", thresholdRule, func(r *Rule) { r.Metric = "system.cpu.load1" }, "", ""},
		{"valid: summary with newline", thresholdRule, func(r *Rule) { r.Summary = "{{.Rule}}\n\t{{.Labels.team}}" }, "", ""},

		{"name missing", thresholdRule, func(r *Rule) { r.Name = "" }, "name", "blank"},
		{"name blank", thresholdRule, func(r *Rule) { r.Name = "  " }, "name", "blank"},
		{"name too long", thresholdRule, func(r *Rule) { r.Name = strings.Repeat("x", MaxNameLen+1) }, "name", "at most"},
		{"name control", thresholdRule, func(r *Rule) { r.Name = "a\nb" }, "name", "control"},
		{"name bad utf8", thresholdRule, func(r *Rule) { r.Name = "a\xffb" }, "name", "UTF-8"},
		{"kind missing", thresholdRule, func(r *Rule) { r.Kind = "" }, "kind", "required"},
		{"kind unknown", thresholdRule, func(r *Rule) { r.Kind = "rate" }, "kind", `"rate"`},
		{"metric missing", thresholdRule, func(r *Rule) { r.Metric = "" }, "metric", "required"},
		{"metric without dot", thresholdRule, func(r *Rule) { r.Metric = "cpu" }, "metric", "measurement.field"},
		{"metric leading dot", thresholdRule, func(r *Rule) { r.Metric = ".usage" }, "metric", "measurement.field"},
		{"metric trailing dot", thresholdRule, func(r *Rule) { r.Metric = "cpu." }, "metric", "measurement.field"},
		{"metric too long", thresholdRule, func(r *Rule) { r.Metric = "a." + strings.Repeat("x", MaxMetricLen) }, "metric", "at most"},
		{"tags on agent", thresholdRule, func(r *Rule) { r.Tags = map[string]string{"agent": "x"} }, "tags", "agents.ids"},
		{"tags empty value", thresholdRule, func(r *Rule) { r.Tags = map[string]string{"core": ""} }, "tags", `"core"`},
		{"tags empty key", thresholdRule, func(r *Rule) { r.Tags = map[string]string{"": "x"} }, "tags", "empty key"},
		{"tags too many", thresholdRule, func(r *Rule) {
			r.Tags = many(MaxMapEntries+1, func(i int) string { return fmt.Sprint("k", i) })
		}, "tags", "at most"},
		{"tags control in value", thresholdRule, func(r *Rule) { r.Tags = map[string]string{"core": "a\x00"} }, "tags", "control"},
		{"agents both", thresholdRule, func(r *Rule) { r.Agents.IDs = []string{agentA} }, "agents", "not both"},
		{"agents ids empty id", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{""}} }, "agents.ids", "empty"},
		{"agents ids duplicate", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{agentA, agentA}} }, "agents.ids", agentA + `" twice`},
		{"agents ids duplicate in another case", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{agentA, strings.ToUpper(agentA)}} }, "agents.ids", "twice"},
		{"agents ids not a UUID", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{"web-1"}} }, "agents.ids", `"web-1" is not a UUID`},
		{"agents ids UUID without hyphens", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{strings.ReplaceAll(agentA, "-", "")}} }, "agents.ids", "not a UUID"},
		{"agents ids UUID in braces", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{"{" + agentA + "}"}} }, "agents.ids", "not a UUID"},
		{"agents ids UUID with a non-hex digit", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: []string{"g" + agentA[1:]}} }, "agents.ids", "not a UUID"},
		{"agents ids too many", thresholdRule, func(r *Rule) { r.Agents = AgentSelector{IDs: ids(MaxAgentIDs + 1)} }, "agents.ids", "at most"},
		{"agents labels empty value", thresholdRule, func(r *Rule) { r.Agents.Labels = map[string]string{"env": ""} }, "agents.labels", `"env"`},
		{"aggregation missing", thresholdRule, func(r *Rule) { r.Aggregation = "" }, "aggregation", "required"},
		{"aggregation unknown", thresholdRule, func(r *Rule) { r.Aggregation = "p95" }, "aggregation", `"p95"`},
		{"window missing for avg", thresholdRule, func(r *Rule) { r.Window = 0 }, "window", `required for aggregation "avg": at least 1s (got none or 0s)`},
		{"window 1ns", thresholdRule, func(r *Rule) { r.Window = Duration(time.Nanosecond) }, "window", "must be at least 1s, got 1ns"},
		{"window 999ms", thresholdRule, func(r *Rule) { r.Window = Duration(999 * time.Millisecond) }, "window", "must be at least 1s, got 999ms"},
		{"window 1ns on last", thresholdRule, func(r *Rule) { r.Aggregation, r.Window = AggLast, Duration(1) }, "window", "at least 1s"},
		{"valid: window 1s", thresholdRule, func(r *Rule) { r.Window = Duration(time.Second) }, "", ""},
		{"valid: window 24h", thresholdRule, func(r *Rule) { r.Window = Duration(MaxWindow) }, "", ""},
		{"window negative", thresholdRule, func(r *Rule) { r.Window = Duration(-time.Second) }, "window", "negative"},
		{"window too long", thresholdRule, func(r *Rule) { r.Window = Duration(MaxWindow + 1) }, "window", "at most 24h"},
		{"operator missing", thresholdRule, func(r *Rule) { r.Operator = "" }, "operator", "required"},
		{"operator unknown", thresholdRule, func(r *Rule) { r.Operator = "=>" }, "operator", `"=>"`},
		{"thresholds none", thresholdRule, func(r *Rule) { r.Thresholds = Thresholds{} }, "thresholds", "at least one"},
		{"warning value missing", thresholdRule, func(r *Rule) { r.Thresholds.Warning.Value = nil }, "thresholds.warning.value", "required"},
		{"critical value missing", thresholdRule, func(r *Rule) { r.Thresholds.Critical.Value = nil }, "thresholds.critical.value", "required"},
		{"warning value NaN", thresholdRule, func(r *Rule) { r.Thresholds.Warning.Value = fp(math.NaN()) }, "thresholds.warning.value", "finite"},
		{"critical value Inf", thresholdRule, func(r *Rule) { r.Thresholds.Critical.Value = fp(math.Inf(1)) }, "thresholds.critical.value", "finite"},
		{"warning recovery Inf", thresholdRule, func(r *Rule) { r.Thresholds.Warning.Recovery = fp(math.Inf(-1)) }, "thresholds.warning.recovery", "finite"},
		{"warning recovery above threshold for >", thresholdRule, func(r *Rule) { r.Thresholds.Warning.Recovery = fp(85) }, "thresholds.warning.recovery", "at or below the threshold (80)"},
		{"critical recovery above threshold for >", thresholdRule, func(r *Rule) { r.Thresholds.Critical.Recovery = fp(96) }, "thresholds.critical.recovery", "at or below"},
		{"recovery below threshold for <", thresholdRule, func(r *Rule) {
			r.Operator = OpLE
			r.Thresholds = Thresholds{Critical: &Threshold{Value: fp(10), Recovery: fp(5)}}
		}, "thresholds.critical.recovery", "at or above the threshold (10)"},
		{"recovery with ==", thresholdRule, func(r *Rule) {
			r.Operator = OpEQ
			r.Thresholds = Thresholds{Critical: &Threshold{Value: fp(1), Recovery: fp(1)}}
		}, "thresholds.critical.recovery", ">, >=, < and <="},
		{"recovery with !=", thresholdRule, func(r *Rule) {
			r.Operator = OpNE
			r.Thresholds = Thresholds{Warning: &Threshold{Value: fp(1), Recovery: fp(0)}}
		}, "thresholds.warning.recovery", ">, >=, < and <="},
		{"critical not beyond warning for >", thresholdRule, func(r *Rule) { r.Thresholds.Critical = &Threshold{Value: fp(80)} }, "thresholds.critical.value", "above the warning threshold (80)"},
		{"critical not beyond warning for <", thresholdRule, func(r *Rule) {
			r.Operator = OpLT
			r.Thresholds = Thresholds{Warning: &Threshold{Value: fp(20)}, Critical: &Threshold{Value: fp(25)}}
		}, "thresholds.critical.value", "below the warning threshold (20)"},
		{"critical clears before warning", thresholdRule, func(r *Rule) { r.Thresholds.Critical.Recovery = fp(60) }, "thresholds.critical.recovery", "warning recovery level (70)"},
		{"critical clears before warning without warning recovery", thresholdRule, func(r *Rule) {
			r.Thresholds.Warning.Recovery = nil
			r.Thresholds.Critical.Recovery = fp(79)
		}, "thresholds.critical.recovery", "warning recovery level (80)"},
		{"for negative", thresholdRule, func(r *Rule) { r.For = Duration(-time.Second) }, "for", "must not be negative, got -1s"},
		{"for 1ns", thresholdRule, func(r *Rule) { r.For = Duration(1) }, "for", "must be 0s (fire on the first crossing sample) or at least 1s, got 1ns"},
		{"valid: for 0s", thresholdRule, func(r *Rule) { r.For = 0 }, "", ""},
		{"for too long", thresholdRule, func(r *Rule) { r.For = Duration(MaxFor + time.Second) }, "for", "at most 168h"},
		{"after on threshold rule", thresholdRule, func(r *Rule) { r.After = Duration(time.Minute) }, "after", "agent_silent"},
		{"severity on threshold rule", thresholdRule, func(r *Rule) { r.Severity = SeverityWarning }, "severity", "agent_silent"},
		{"labels bad key", thresholdRule, func(r *Rule) { r.Labels = map[string]string{"bad-key": "x"} }, "labels", `"bad-key"`},
		{"labels key starting with digit", thresholdRule, func(r *Rule) { r.Labels = map[string]string{"1x": "x"} }, "labels", `"1x"`},
		{"labels key starting with __", thresholdRule, func(r *Rule) { r.Labels = map[string]string{"__x": "x"} }, "labels", `"__x"`},
		{"labels reserved", thresholdRule, func(r *Rule) { r.Labels = map[string]string{"severity": "page"} }, "labels", "reserved"},
		{"labels empty value", thresholdRule, func(r *Rule) { r.Labels = map[string]string{"team": ""} }, "labels", `"team"`},
		{"summary unknown field", thresholdRule, func(r *Rule) { r.Summary = "{{.Secret}}" }, "summary", "not allowed"},
		{"summary function", thresholdRule, func(r *Rule) { r.Summary = `{{printf "%d" .Value}}` }, "summary", "not allowed"},
		{"summary syntax", thresholdRule, func(r *Rule) { r.Summary = "{{.Value" }, "summary", "line 1: unclosed action"},
		{"summary too long", thresholdRule, func(r *Rule) { r.Summary = strings.Repeat("x", MaxSummaryLen+1) }, "summary", "at most"},
		{"summary control", thresholdRule, func(r *Rule) { r.Summary = "a\x07" }, "summary", "control"},
		{"channels empty id", thresholdRule, func(r *Rule) { r.Channels = []string{""} }, "channels", "empty"},
		{"channels duplicate", thresholdRule, func(r *Rule) { r.Channels = []string{chanA, chanA} }, "channels", chanA + `" twice`},
		{"channels not a UUID", thresholdRule, func(r *Rule) { r.Channels = []string{chanA, "ops"} }, "channels", `"ops" is not a UUID`},
		{"channels too many", thresholdRule, func(r *Rule) { r.Channels = ids(MaxChannels + 1) }, "channels", "at most"},

		{"silent: metric", silentRule, func(r *Rule) { r.Metric = "cpu.x" }, "metric", "threshold rules"},
		{"silent: tags", silentRule, func(r *Rule) { r.Tags = map[string]string{"a": "b"} }, "tags", "threshold rules"},
		{"silent: agents both", silentRule, func(r *Rule) {
			r.Agents = AgentSelector{IDs: []string{"a"}, Labels: map[string]string{"b": "c"}}
		}, "agents", "not both"},
		{"silent: aggregation", silentRule, func(r *Rule) { r.Aggregation = AggLast }, "aggregation", "threshold rules"},
		{"silent: window", silentRule, func(r *Rule) { r.Window = Duration(time.Minute) }, "window", "threshold rules"},
		{"silent: operator", silentRule, func(r *Rule) { r.Operator = OpGT }, "operator", "threshold rules"},
		{"silent: thresholds", silentRule, func(r *Rule) { r.Thresholds.Critical = &Threshold{Value: fp(1)} }, "thresholds", "threshold rules"},
		{"silent: for", silentRule, func(r *Rule) { r.For = Duration(time.Minute) }, "for", "after"},
		{"silent: after missing or 0s", silentRule, func(r *Rule) { r.After = 0 }, "after", "required for agent_silent rules: at least 10s (got none or 0s)"},
		{"silent: after negative", silentRule, func(r *Rule) { r.After = Duration(-time.Minute) }, "after", "must not be negative, got -1m"},
		{"silent: after too short", silentRule, func(r *Rule) { r.After = Duration(time.Second) }, "after", "must be at least 10s, got 1s"},
		{"silent: after too long", silentRule, func(r *Rule) { r.After = Duration(MaxAfter + 1) }, "after", "at most 720h"},
		{"silent: severity missing", silentRule, func(r *Rule) { r.Severity = "" }, "severity", "required"},
		{"silent: severity unknown", silentRule, func(r *Rule) { r.Severity = "page" }, "severity", `"page"`},
		{"silent: labels", silentRule, func(r *Rule) { r.Labels = map[string]string{"agent": "x"} }, "labels", "reserved"},
		{"silent: summary", silentRule, func(r *Rule) { r.Summary = "{{range .Labels}}{{end}}" }, "summary", "not allowed"},
		{"silent: channels", silentRule, func(r *Rule) { r.Channels = []string{chanA, chanA} }, "channels", "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.base()
			tt.change(&r)
			checkValidate(t, r, tt.field, tt.reason)
		})
	}
}

// checkValidate checks r.Validate(): nil when field is "", else a *ValidationError on field whose
// reason contains reason and whose Error() is "field: reason".
func checkValidate(t *testing.T, r Rule, field, reason string) {
	t.Helper()
	err := r.Validate()
	if field == "" {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v (%T), want *ValidationError for %q", err, err, field)
	}
	if ve.Field != field || !strings.Contains(ve.Reason, reason) {
		t.Fatalf("Validate() = %v, want field %q with reason containing %q", err, field, reason)
	}
	if want := ve.Field + ": " + ve.Reason; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

// docRule is the threshold rule of the package comment, with its comments removed.
const docRule = `{
  "id": "5b0c6a52",
  "name": "CPU busy",
  "kind": "threshold",
  "metric": "cpu.usage_percent",
  "tags": {"core": "total"},
  "agents": {"labels": {"env": "prod"}},
  "aggregation": "avg",
  "window": "5m",
  "operator": ">",
  "thresholds": {
    "warning":  {"value": 80, "recovery": 70},
    "critical": {"value": 95}
  },
  "for": "2m",
  "labels": {"team": "infra"},
  "summary": "{{.Rule}}: {{.Agent}} at {{.Value}}% ({{.Severity}} above {{.Threshold}})",
  "channels": ["9d4c1f6e-2b7a-4c3d-8e5f-0a1b2c3d4e5f"],
  "enabled": true
}`

func TestRuleJSON(t *testing.T) {
	var got Rule
	if err := json.Unmarshal([]byte(docRule), &got); err != nil {
		t.Fatalf("Unmarshal(docRule) = %v", err)
	}
	want := Rule{
		ID: "5b0c6a52", Name: "CPU busy", Kind: KindThreshold, Metric: "cpu.usage_percent",
		Tags: map[string]string{"core": "total"}, Agents: AgentSelector{Labels: map[string]string{"env": "prod"}},
		Aggregation: AggAvg, Window: Duration(5 * time.Minute), Operator: OpGT,
		Thresholds: Thresholds{Warning: &Threshold{Value: fp(80), Recovery: fp(70)}, Critical: &Threshold{Value: fp(95)}},
		For:        Duration(2 * time.Minute), Labels: map[string]string{"team": "infra"},
		Summary:  "{{.Rule}}: {{.Agent}} at {{.Value}}% ({{.Severity}} above {{.Threshold}})",
		Channels: []string{"9d4c1f6e-2b7a-4c3d-8e5f-0a1b2c3d4e5f"}, Enabled: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Unmarshal(docRule) = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("docRule.Validate() = %v, want nil", err)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("Marshal = %v", err)
	}
	for _, frag := range []string{`"window":"5m"`, `"for":"2m"`, `"critical":{"value":95}`, `"enabled":true`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("Marshal = %s, want it to contain %s", b, frag)
		}
	}
	for _, absent := range []string{`"after"`, `"severity"`, `"ids"`} {
		if strings.Contains(string(b), absent) {
			t.Errorf("Marshal = %s, want no %s", b, absent)
		}
	}
	var back Rule
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, got) {
		t.Fatalf("round trip = %+v, %v, want %+v", back, err, got)
	}

	// A silent rule omits every threshold member.
	b, err = json.Marshal(silentRule())
	if err != nil {
		t.Fatalf("Marshal(silentRule) = %v", err)
	}
	if want := `{"id":"s1","name":"Agent silent","kind":"agent_silent","after":"5m","severity":"critical","enabled":true}`; string(b) != want {
		t.Errorf("Marshal(silentRule) = %s, want %s", b, want)
	}

	// Absent "enabled" leaves a pre-set true alone, as the package comment promises.
	r := Rule{Enabled: true}
	if err := json.Unmarshal([]byte(`{"name":"x"}`), &r); err != nil || !r.Enabled {
		t.Errorf("Unmarshal without enabled into Rule{Enabled: true}: Enabled = %v, %v; want true", r.Enabled, err)
	}
}

func TestDuration(t *testing.T) {
	f := func(in time.Duration, want string) {
		t.Helper()
		b, err := Duration(in).MarshalText()
		if err != nil || string(b) != want {
			t.Errorf("Duration(%v).MarshalText() = %q, %v, want %q", in, b, err, want)
		}
		var back Duration
		if err := back.UnmarshalText(b); err != nil || time.Duration(back) != in {
			t.Errorf("UnmarshalText(%q) = %v, %v, want %v", b, time.Duration(back), err, in)
		}
	}
	f(0, "0s")
	f(90*time.Second, "1m30s")
	f(5*time.Minute, "5m")
	f(time.Hour, "1h")
	f(90*time.Minute, "1h30m")
	f(time.Hour+time.Second, "1h0m1s")
	f(250*time.Millisecond, "250ms")
	f(2*time.Minute+500*time.Millisecond, "2m0.5s")

	for _, bad := range []string{`"5x"`, `""`, `300`, `"five minutes"`} {
		var r struct{ W Duration }
		if err := json.Unmarshal([]byte(`{"W":`+bad+`}`), &r); err == nil {
			t.Errorf("Unmarshal(%s) = nil error, want one", bad)
		}
	}
}

func TestOperatorHolds(t *testing.T) {
	tests := []struct {
		op   Operator
		v, t float64
		want bool
	}{
		{OpGT, 2, 1, true}, {OpGT, 1, 1, false},
		{OpGE, 1, 1, true}, {OpGE, 0, 1, false},
		{OpLT, 0, 1, true}, {OpLT, 1, 1, false},
		{OpLE, 1, 1, true}, {OpLE, 2, 1, false},
		{OpEQ, 1, 1, true}, {OpEQ, 2, 1, false},
		{OpNE, 2, 1, true}, {OpNE, 1, 1, false},
		{"?", 1, 1, false},
	}
	for _, tt := range tests {
		if got := tt.op.Holds(tt.v, tt.t); got != tt.want {
			t.Errorf("Operator(%q).Holds(%v, %v) = %v, want %v", tt.op, tt.v, tt.t, got, tt.want)
		}
	}
}
