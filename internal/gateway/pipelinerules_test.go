package gateway

import (
	"net/http"
	"slices"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// withoutBuiltins drops the built-in pipeline rules (migration 00007) from a rule list.
func withoutBuiltins(l ruleList) ruleList {
	l.Rules = slices.DeleteFunc(l.Rules, func(r alert.Rule) bool { return r.Kind == alert.KindPipeline })
	return l
}

// TestAlertRulePipeline: the built-in pipeline rules are listed, edited and disabled through
// the rules API like any rule, and a new pipeline rule is accepted.
func TestAlertRulePipeline(t *testing.T) {
	t.Parallel()
	e, _, op, _ := newRolesEnv(t)

	r := e.do(req{method: "GET", path: "/api/v1/alert-rules", auth: bearer(op)})
	byCheck := map[alert.Check]alert.Rule{}
	for _, rule := range decode[ruleList](t, r).Rules {
		if rule.Kind == alert.KindPipeline {
			byCheck[rule.Pipeline.Check] = rule
		}
	}
	if len(byCheck) != 5 {
		t.Fatalf("built-in pipeline rules = %v, want one per check (5)", byCheck)
	}

	// Edit the lag rule's bound and groups.
	lag := byCheck[alert.CheckGroupLag]
	body := `{"name":"` + lag.Name + `","kind":"pipeline","severity":"warning","for":"5m",` +
		`"pipeline":{"check":"group_lag","groups":["influx-writer"],"bound":250000}}`
	r = e.do(req{method: "PUT", path: "/api/v1/alert-rules/" + lag.ID, auth: bearer(op), body: body})
	if r.status != http.StatusOK {
		t.Fatalf("PUT lag rule = %s, want 200", r)
	}
	got := decode[alert.Rule](t, r)
	if *got.Pipeline.Bound != 250000 || !slices.Equal(got.Pipeline.Groups, []string{"influx-writer"}) ||
		got.For.String() != "5m" || got.Severity != alert.SeverityWarning || !got.Enabled {
		t.Errorf("edited lag rule = %+v, want bound 250000 on influx-writer for 5m, warning, enabled", got)
	}

	// Disable the watchdog.
	dog := byCheck[alert.CheckWatchdog]
	r = e.do(req{method: "PUT", path: "/api/v1/alert-rules/" + dog.ID, auth: bearer(op),
		body: `{"name":"Watchdog","kind":"pipeline","severity":"warning","pipeline":{"check":"watchdog"},"enabled":false}`})
	if r.status != http.StatusOK || decode[alert.Rule](t, r).Enabled {
		t.Fatalf("disabling the watchdog = %s, want 200 and disabled", r)
	}
	r = e.do(req{method: "GET", path: "/api/v1/alert-rules/" + dog.ID, auth: bearer(op)})
	if decode[alert.Rule](t, r).Enabled {
		t.Errorf("watchdog after disabling = %s, want disabled", r)
	}

	// A new pipeline rule.
	r = e.do(req{method: "POST", path: "/api/v1/alert-rules", auth: bearer(op),
		body: `{"name":"Notifier stalled","kind":"pipeline","severity":"critical","for":"30s",` +
			`"pipeline":{"check":"no_consumer","groups":["notifier"],"idle":"2m"},"labels":{"team":"ops"}}`})
	if r.status != http.StatusCreated {
		t.Fatalf("creating a pipeline rule = %s, want 201", r)
	}
	if c := decode[alert.Rule](t, r); c.Pipeline == nil || c.Pipeline.Idle.String() != "2m" || c.Pipeline.Groups[0] != "notifier" {
		t.Errorf("created = %+v, want no_consumer on notifier with idle 2m", c)
	}
}
