package alert

import (
	"strings"
	"testing"
)

func TestRenderSummary(t *testing.T) {
	d := SummaryData{Rule: "CPU busy", Agent: "web-1", Value: 1e6, Threshold: 95.5, Severity: SeverityCritical,
		Labels: map[string]string{"team": "infra"}}
	tests := []struct {
		summary string
		data    SummaryData
		want    string
	}{
		{"", d, "CPU busy on web-1: critical, value 1000000 (threshold 95.5)"},
		{"{{.Rule}}|{{.Agent}}|{{.Value}}|{{.Threshold}}|{{.Severity}}|{{.Labels.team}}", d,
			"CPU busy|web-1|1000000|95.5|critical|infra"},
		{"{{- .Agent -}} \n {{/* a comment */}}x", d, "web-1x"},
		{"missing label: [{{.Labels.nope}}]", d, "missing label: []"},
		{"nil labels: [{{.Labels.team}}]", SummaryData{}, "nil labels: []"},
		{"plain text", d, "plain text"},
		{"{{/* only a comment */}}", d, ""},
		{"small {{.Value}}", SummaryData{Value: 0.000125}, "small 0.000125"},
		{"{{.Value}} {{.Threshold}}", SummaryData{Value: 1e20, Threshold: 1e-6}, "100000000000000000000 0.000001"},
		{"huge {{.Value}} {{.Threshold}}", SummaryData{Value: 1.7e308, Threshold: -1e21}, "huge 1.7e+308 -1e+21"},
		{"tiny {{.Value}}", SummaryData{Value: 5e-324}, "tiny 5e-324"},
		{"html is not escaped: {{.Agent}}", SummaryData{Agent: "<b>"}, "html is not escaped: <b>"},
	}
	for _, tt := range tests {
		r := Rule{ID: "r", Summary: tt.summary}
		got, err := r.RenderSummary(tt.data)
		if err != nil || got != tt.want {
			t.Errorf("RenderSummary(%q) = %q, %v, want %q", tt.summary, got, err, tt.want)
		}
	}
}

func TestSummaryRefusesUnsafeTemplates(t *testing.T) {
	for _, s := range []string{
		"{{.}}",
		"{{.Labels}}",
		"{{.Labels.a.b}}",
		"{{.Value.X}}",
		"{{.Secret}}",
		"{{$x := .Value}}",
		"{{$}}",
		"{{.Value | printf \"%v\"}}",
		"{{printf \"%v\" .Value}}",
		"{{len .Labels}}",
		"{{index .Labels \"team\"}}",
		"{{if .Value}}x{{end}}",
		"{{range .Labels}}x{{end}}",
		"{{with .Agent}}x{{end}}",
		"{{define \"x\"}}y{{end}}",
		"{{template \"x\"}}",
		"{{block \"x\" .}}y{{end}}",
		"{{\"literal\"}}",
		"{{1}}",
		"{{nil}}",
		"{{.Value",
		"{{end}}",
	} {
		r := Rule{ID: "r", Summary: s}
		if got, err := r.RenderSummary(SummaryData{}); err == nil {
			t.Errorf("RenderSummary(%q) = %q, nil; want an error", s, got)
		}
		if err := checkSummary(s); err == nil || err.Field != "summary" {
			t.Errorf("checkSummary(%q) = %v, want a summary error", s, err)
		}
	}
	// A long refused action is quoted shortened, on a rune boundary.
	err := checkSummary("{{if .Value}}" + strings.Repeat("é", 100) + "{{end}}")
	if err == nil || !strings.Contains(err.Reason, "...") || !strings.Contains(err.Reason, "not allowed") {
		t.Fatalf("checkSummary(long if) = %v, want a shortened quote", err)
	}
}
