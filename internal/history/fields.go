package history

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Metric is one field a dashboard can chart: "measurement.field", its type, and the tag keys
// its series carry (for tag.<key> filters and group_by).
type Metric struct {
	Name        string   `json:"name"`
	Measurement string   `json:"measurement"`
	Field       string   `json:"field"`
	Type        string   `json:"type"` // float, integer, unsigned, string or boolean
	Numeric     bool     `json:"numeric"`
	Tags        []string `json:"tags"`
}

// Metrics lists the measurements and fields in the raw points, with their types and tag keys:
// the fleet's when agent is "", else those of the measurements the agent has sent (InfluxDB keeps
// field keys per measurement, so a field another agent sent in the same measurement is listed
// too). agent must be validated by the caller (a UUID); it is quoted anyway.
func (e *Engine) Metrics(ctx context.Context, agent string) ([]Metric, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, e.cfg.QueryTimeout, ErrTimeout)
	defer cancel()
	on := " ON " + quoteIdent(e.layout.Raw.Database)
	from := ""
	if e.layout.Raw.RP != "" {
		from = " FROM " + quoteIdent(e.layout.Raw.RP) + "./.*/"
	}
	stmts := []string{"SHOW FIELD KEYS" + on + from, "SHOW TAG KEYS" + on + from}
	if agent != "" {
		stmts = append(stmts, "SHOW MEASUREMENTS"+on+` WHERE "agent"::tag = `+quoteString(agent))
	}
	answers, err := e.store.QueryQL(ctx, strings.Join(stmts, "; "))
	if err != nil {
		return nil, e.queryErr(ctx, err)
	}
	if len(answers) != len(stmts) {
		return nil, fmt.Errorf("listing metrics: %d answers to %d statements", len(answers), len(stmts))
	}
	tags := map[string][]string{}
	for _, s := range answers[1] {
		for _, row := range s.Values {
			if k, ok := row[0].(string); ok {
				tags[s.Name] = append(tags[s.Name], k)
			}
		}
	}
	var only map[string]bool
	if agent != "" {
		only = map[string]bool{}
		for _, s := range answers[2] {
			for _, row := range s.Values {
				if m, ok := row[0].(string); ok {
					only[m] = true
				}
			}
		}
	}
	out := []Metric{}
	for _, s := range answers[0] {
		if only != nil && !only[s.Name] {
			continue
		}
		for _, row := range s.Values {
			if len(row) < 2 {
				continue
			}
			f, _ := row[0].(string)
			typ, _ := row[1].(string)
			t := tags[s.Name]
			if t == nil {
				t = []string{}
			}
			out = append(out, Metric{Name: s.Name + "." + f, Measurement: s.Name, Field: f, Type: typ,
				Numeric: typ == "float" || typ == "integer" || typ == "unsigned", Tags: t})
		}
	}
	slices.SortFunc(out, func(a, b Metric) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
