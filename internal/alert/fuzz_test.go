package alert

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// ruleFields are the JSON members of a rule, the first segment of every ValidationError.Field.
var ruleFields = map[string]bool{
	"name": true, "kind": true, "metric": true, "tags": true, "agents": true, "aggregation": true,
	"window": true, "operator": true, "thresholds": true, "for": true, "after": true, "severity": true,
	"labels": true, "summary": true, "channels": true,
}

// FuzzValidate decodes arbitrary JSON into a Rule as the gateway does and checks Validate's
// contract beyond "no panic": a refused rule names a member of the rule's JSON shape and says
// why in printable text; an accepted rule survives a JSON round trip unchanged and still valid,
// and its summary renders (RenderSummary fails only for summaries Validate refuses).
func FuzzValidate(f *testing.F) {
	for _, r := range []Rule{thresholdRule(), silentRule()} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"name":"x","kind":"threshold","metric":"cpu.v","aggregation":"last","operator":">","thresholds":{"warning":{"value":1}}}`))
	f.Add([]byte(`{"name":"x","kind":"threshold","metric":"cpu.v","aggregation":"avg","window":"1s","operator":"==","thresholds":{"critical":{"value":0,"recovery":0}}}`))
	f.Add([]byte(`{"name":" ","kind":"agent_silent","after":"5s"}`))
	f.Add([]byte(`{"name":"x","kind":"threshold","metric":"cpu.v","summary":"{{.Labels.team}} {{printf \"%s\" .Rule}}"}`))
	f.Add([]byte(`{"name":"x","kind":"threshold","metric":"a.b","tags":{"agent":"x"},"agents":{"ids":["00000000-0000-4000-8000-000000000001"],"labels":{"a":"b"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := Rule{Enabled: true}
		if json.Unmarshal(body, &r) != nil {
			return
		}
		err := r.Validate()
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate(%s) = %T %v, want a *ValidationError", body, err, err)
			}
			top, _, _ := strings.Cut(ve.Field, ".")
			if !ruleFields[top] || strings.TrimSpace(ve.Reason) == "" || !utf8.ValidString(ve.Reason) {
				t.Fatalf("Validate(%s) = field %q reason %q: want a rule member and a reason", body, ve.Field, ve.Reason)
			}
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("json.Marshal(valid rule from %s): %v", body, err)
		}
		again := Rule{Enabled: true}
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("json.Unmarshal(%s) of a valid rule: %v", b, err)
		}
		if !reflect.DeepEqual(normalise(again), normalise(r)) {
			t.Fatalf("rule from %s round-trips through %s to %+v, want %+v", body, b, again, r)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("Validate(%s) of a round-tripped valid rule = %v", b, err)
		}
		if _, err := r.RenderSummary(SummaryData{Rule: r.Name, Agent: "a", Value: 1, Threshold: 2, Severity: SeverityWarning}); err != nil {
			t.Fatalf("RenderSummary of valid rule %s: %v", body, err)
		}
	})
}

// normalise makes empty and nil maps and slices compare equal (omitempty drops both).
func normalise(r Rule) Rule {
	if len(r.Tags) == 0 {
		r.Tags = nil
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	if len(r.Channels) == 0 {
		r.Channels = nil
	}
	if len(r.Agents.IDs) == 0 {
		r.Agents.IDs = nil
	}
	if len(r.Agents.Labels) == 0 {
		r.Agents.Labels = nil
	}
	return r
}
