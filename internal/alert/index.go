package alert

import (
	"strings"

	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// agentTag is the tag carrying the agent id on every point read from the stream.
const agentTag = "agent"

// Index finds the rules a point can match. It is immutable once built and safe for concurrent
// use; the alerter builds a new one whenever the rules change and swaps it in.
type Index struct {
	rules  []Rule
	byID   map[string]*Rule
	metric map[string]map[string][]*Rule // measurement → field → enabled threshold rules
	silent []*Rule
	pipe   []*Rule
}

// NewIndex indexes a copy of rules. It does not validate them (the store only holds valid
// ones); when two rules share an ID, Rule returns the later.
func NewIndex(rules []Rule) *Index {
	x := &Index{
		rules:  append([]Rule(nil), rules...),
		byID:   make(map[string]*Rule, len(rules)),
		metric: make(map[string]map[string][]*Rule),
	}
	for i := range x.rules {
		r := &x.rules[i]
		x.byID[r.ID] = r
		if !r.Enabled {
			continue
		}
		switch r.Kind {
		case KindAgentSilent:
			x.silent = append(x.silent, r)
		case KindPipeline:
			x.pipe = append(x.pipe, r)
		case KindThreshold:
			// A measurement and a field may both contain dots, so "a.b.c" is (a, b.c) or
			// (a.b, c): index the rule under every split, as metric.Name reads them all the
			// same way. Lookups are then two map reads with no string building.
			for dot := range len(r.Metric) {
				if r.Metric[dot] != '.' || dot == 0 || dot == len(r.Metric)-1 {
					continue
				}
				m, f := r.Metric[:dot], r.Metric[dot+1:]
				if x.metric[m] == nil {
					x.metric[m] = make(map[string][]*Rule)
				}
				x.metric[m][f] = append(x.metric[m][f], r)
			}
		}
	}
	return x
}

// For returns the enabled threshold rules on measurement.field, in the order given to NewIndex,
// or nil. The rules belong to the index: callers must not modify them.
func (x *Index) For(measurement, field string) []*Rule {
	return x.metric[measurement][field]
}

// Watches reports whether an enabled threshold rule is on a field of measurement, so that readers
// of points can skip the others without decoding them.
func (x *Index) Watches(measurement string) bool { return len(x.metric[measurement]) > 0 }

// Silent returns the enabled agent_silent rules, in the order given to NewIndex.
func (x *Index) Silent() []*Rule { return x.silent }

// Pipeline returns the enabled pipeline rules, in the order given to NewIndex.
func (x *Index) Pipeline() []*Rule { return x.pipe }

// Rule returns the rule with this id, enabled or not, and whether there is one. The alerter uses
// it to retire the states of rules that were deleted or disabled.
func (x *Index) Rule(id string) (*Rule, bool) {
	r, ok := x.byID[id]
	return r, ok
}

// Len returns the number of rules indexed, disabled ones included.
func (x *Index) Len() int { return len(x.rules) }

// Matches reports whether r evaluates field of point p sent by this agent: r is an enabled
// threshold rule on p's measurement and field, its agent selector chooses the agent and every
// tag of its filter is on p with that value. It does not look at the field's value (see
// SampleValue).
func (r *Rule) Matches(agentID string, agentLabels map[string]string, p *metric.Point, field string) bool {
	if !r.Enabled || r.Kind != KindThreshold || !r.isMetric(p.Measurement, field) {
		return false
	}
	return r.Agents.Selects(agentID, agentLabels) && r.MatchesTags(p)
}

// isMetric reports whether r.Metric is measurement.field, without building that string.
func (r *Rule) isMetric(measurement, field string) bool {
	m := r.Metric
	return len(m) == len(measurement)+1+len(field) && m[len(measurement)] == '.' &&
		strings.HasPrefix(m, measurement) && strings.HasSuffix(m, field)
}

// MatchesTags reports whether p carries every tag of r's filter with exactly its value.
func (r *Rule) MatchesTags(p *metric.Point) bool {
	for k, v := range r.Tags {
		if got, ok := p.Tag(k); !ok || got != v {
			return false
		}
	}
	return true
}

// SampleValue returns the value a rule compares: numbers as float64, booleans as 1 and 0. A
// string has none (false): rules on string fields never evaluate.
func SampleValue(v metric.Value) (float64, bool) {
	if v.Kind == metric.KindBool {
		if v.B {
			return 1, true
		}
		return 0, true
	}
	return v.AsFloat()
}

// SeriesKey returns the series of p within its agent: its tags other than "agent", in p's order
// (sorted by key for every point that passed validation), as "k=v,k=v" with '\', ',' and '='
// escaped by a backslash so that distinct tag sets never share a key. It is "" for a point
// that carries no other tag.
func SeriesKey(p *metric.Point) string {
	var b strings.Builder
	for _, t := range p.Tags {
		if t.Key == agentTag {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		writeEscaped(&b, t.Key)
		b.WriteByte('=')
		writeEscaped(&b, t.Value)
	}
	return b.String()
}

func writeEscaped(b *strings.Builder, s string) {
	for i := range len(s) {
		switch c := s[i]; c {
		case '\\', ',', '=':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}
