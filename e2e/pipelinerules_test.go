package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// pipelineRules returns the pipeline rules (the built-in ones of migration 00007 unless a test
// changed them).
func (s *system) pipelineRules(t *testing.T) []alert.Rule {
	t.Helper()
	list, _ := adminGet[struct {
		Rules []alert.Rule `json:"rules"`
	}](t, s, "/api/v1/alert-rules")
	var out []alert.Rule
	for _, r := range list.Rules {
		if r.Kind == alert.KindPipeline {
			out = append(out, r)
		}
	}
	return out
}

// disablePipelineRules disables the pipeline rules through the rules API (as an operator who
// does not want them would) and waits until none of their alerts is active, so that a test can
// expect an empty alert list.
func (s *system) disablePipelineRules(t *testing.T) {
	t.Helper()
	for _, r := range s.pipelineRules(t) {
		id := r.ID
		r.ID, r.Enabled = "", false
		body, _ := json.Marshal(r)
		if code, b, _ := s.do("PUT", "/api/v1/alert-rules/"+id, "Bearer "+s.admin, body); code != http.StatusOK {
			t.Fatalf("disabling pipeline rule %s = %d %s", r.Name, code, b)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() string {
		code, b, _ := s.do("GET", "/api/v1/alerts", "Bearer "+s.admin, nil)
		var list struct {
			Alerts []alert.Active `json:"alerts"`
		}
		if code != http.StatusOK || json.Unmarshal(b, &list) != nil {
			return fmt.Sprintf("GET /api/v1/alerts = %d %s", code, b)
		}
		for _, a := range list.Alerts {
			if a.Kind == string(alert.KindPipeline) {
				return fmt.Sprintf("pipeline alert %s still active", a.RuleName)
			}
		}
		return ""
	})
}
