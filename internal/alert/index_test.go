package alert

import (
	"slices"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/metric"
)

func ruleIDs(rs []*Rule) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestIndex(t *testing.T) {
	mk := func(id, m string, enabled bool) Rule {
		r := thresholdRule()
		r.ID, r.Metric, r.Enabled = id, m, enabled
		return r
	}
	silent, silentOff := silentRule(), silentRule()
	silentOff.ID, silentOff.Enabled = "s2", false
	rules := []Rule{
		mk("cpu1", "cpu.usage", true),
		mk("cpu2", "cpu.usage", true),
		mk("off", "cpu.usage", false),
		mk("mem", "mem.used", true),
		mk("dots", "system.cpu.load1", true),
		silent, silentOff,
	}
	x := NewIndex(rules)
	rules[0].Metric = "changed.after" // the index holds its own copy

	tests := []struct {
		measurement, field string
		want               []string
	}{
		{"cpu", "usage", []string{"cpu1", "cpu2"}},
		{"mem", "used", []string{"mem"}},
		{"system", "cpu.load1", []string{"dots"}}, // both readings of "system.cpu.load1"
		{"system.cpu", "load1", []string{"dots"}},
		{"system.cpu.load1", "", nil},
		{"cpu", "idle", nil},
		{"cpuusage", "", nil},
		{"changed", "after", nil},
		{"", "", nil},
	}
	for _, tt := range tests {
		if got := ruleIDs(x.For(tt.measurement, tt.field)); !slices.Equal(got, tt.want) {
			t.Errorf("For(%q, %q) = %v, want %v", tt.measurement, tt.field, got, tt.want)
		}
	}
	if got := ruleIDs(x.Silent()); !slices.Equal(got, []string{"s1"}) {
		t.Errorf("Silent() = %v, want [s1]", got)
	}
	if r, ok := x.Rule("off"); !ok || r.Enabled {
		t.Errorf("Rule(off) = %v, %v; want the disabled rule", r, ok)
	}
	if r, ok := x.Rule("cpu1"); !ok || r.Metric != "cpu.usage" {
		t.Errorf("Rule(cpu1) = %+v, %v; want the copy taken by NewIndex", r, ok)
	}
	if _, ok := x.Rule("nope"); ok {
		t.Errorf("Rule(nope) found, want none")
	}
	if got := x.Len(); got != len(rules) {
		t.Errorf("Len() = %d, want %d", got, len(rules))
	}
	if got := NewIndex(nil).For("cpu", "usage"); got != nil {
		t.Errorf("NewIndex(nil).For = %v, want nil", got)
	}
}

func TestMatches(t *testing.T) {
	point := func(m string, tags ...string) *metric.Point {
		p := &metric.Point{Measurement: m, Fields: []metric.Field{{Key: "usage_percent"}}}
		for i := 0; i < len(tags); i += 2 {
			p.Tags = append(p.Tags, metric.Tag{Key: tags[i], Value: tags[i+1]})
		}
		return p
	}
	prod := map[string]string{"env": "prod", "dc": "a"}
	base := thresholdRule() // cpu.usage_percent, tags core=total, agents with env=prod
	tests := []struct {
		name   string
		change func(r *Rule)
		agent  string
		labels map[string]string
		p      *metric.Point
		field  string
		want   bool
	}{
		{"all match", nil, "a1", prod, point("cpu", "agent", "a1", "core", "total"), "usage_percent", true},
		{"other field", nil, "a1", prod, point("cpu", "core", "total"), "usage_idle", false},
		{"other measurement", nil, "a1", prod, point("mem", "core", "total"), "usage_percent", false},
		{"prefix measurement", nil, "a1", prod, point("cp", "core", "total"), "u.usage_percent", false},
		{"tag missing", nil, "a1", prod, point("cpu"), "usage_percent", false},
		{"tag other value", nil, "a1", prod, point("cpu", "core", "0"), "usage_percent", false},
		{"label other value", nil, "a1", map[string]string{"env": "dev"}, point("cpu", "core", "total"), "usage_percent", false},
		{"agent without labels", nil, "a1", nil, point("cpu", "core", "total"), "usage_percent", false},
		{"disabled", func(r *Rule) { r.Enabled = false }, "a1", prod, point("cpu", "core", "total"), "usage_percent", false},
		{"silent kind", func(r *Rule) { r.Kind = KindAgentSilent }, "a1", prod, point("cpu", "core", "total"), "usage_percent", false},
		{"no filter, all agents", func(r *Rule) { r.Tags, r.Agents = nil, AgentSelector{} }, "zz", nil, point("cpu", "x", "y"), "usage_percent", true},
		{"ids: listed", func(r *Rule) { r.Agents = AgentSelector{IDs: []string{"a0", "a1"}} }, "a1", nil, point("cpu", "core", "total"), "usage_percent", true},
		{"ids: not listed", func(r *Rule) { r.Agents = AgentSelector{IDs: []string{"a0"}} }, "a1", prod, point("cpu", "core", "total"), "usage_percent", false},
		{"dotted metric", func(r *Rule) { r.Metric = "system.cpu.load1"; r.Tags = nil }, "a1", prod, point("system.cpu"), "load1", true},
		{"dotted metric other split", func(r *Rule) { r.Metric = "system.cpu.load1"; r.Tags = nil }, "a1", prod, point("system"), "cpu.load1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			if tt.change != nil {
				tt.change(&r)
			}
			if got := r.Matches(tt.agent, tt.labels, tt.p, tt.field); got != tt.want {
				t.Errorf("Matches(%q, %v, %+v, %q) = %v, want %v", tt.agent, tt.labels, tt.p, tt.field, got, tt.want)
			}
		})
	}
}

func TestSeriesKey(t *testing.T) {
	tags := func(kv ...string) *metric.Point {
		p := &metric.Point{}
		for i := 0; i < len(kv); i += 2 {
			p.Tags = append(p.Tags, metric.Tag{Key: kv[i], Value: kv[i+1]})
		}
		return p
	}
	tests := []struct {
		p    *metric.Point
		want string
	}{
		{tags(), ""},
		{tags("agent", "a1"), ""},
		{tags("agent", "a1", "core", "0"), "core=0"},
		{tags("core", "0", "host", "h"), "core=0,host=h"},
		{tags("a", "b,c=d"), `a=b\,c\=d`},
		{tags("a", `x\`), `a=x\\`},
	}
	for _, tt := range tests {
		if got := SeriesKey(tt.p); got != tt.want {
			t.Errorf("SeriesKey(%v) = %q, want %q", tt.p.Tags, got, tt.want)
		}
	}
	// Escaping keeps distinct tag sets apart.
	if a, b := SeriesKey(tags("a", "b,c=d")), SeriesKey(tags("a", "b", "c", "d")); a == b {
		t.Errorf("SeriesKey collides: %q == %q", a, b)
	}
}

func TestSampleValue(t *testing.T) {
	tests := []struct {
		v      metric.Value
		want   float64
		wantOK bool
	}{
		{metric.Value{Kind: metric.KindFloat, F: 1.5}, 1.5, true},
		{metric.Value{Kind: metric.KindInt, I: -3}, -3, true},
		{metric.Value{Kind: metric.KindUint, U: 7}, 7, true},
		{metric.Value{Kind: metric.KindBool, B: true}, 1, true},
		{metric.Value{Kind: metric.KindBool, B: false}, 0, true},
		{metric.Value{Kind: metric.KindString, S: "1"}, 0, false},
	}
	for _, tt := range tests {
		got, ok := SampleValue(tt.v)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("SampleValue(%+v) = %v, %v, want %v, %v", tt.v, got, ok, tt.want, tt.wantOK)
		}
	}
}
