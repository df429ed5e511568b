package postgres_test

import (
	"context"
	"slices"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// withoutBuiltins drops the built-in pipeline rules that migration 00007 inserts.
func withoutBuiltins(list []alert.Rule) []alert.Rule {
	return slices.DeleteFunc(list, func(r alert.Rule) bool { return r.Kind == alert.KindPipeline })
}

// TestBuiltinPipelineRules checks that the migration stores one valid, enabled rule per
// pipeline check, and that they can be edited and disabled like any rule.
func TestBuiltinPipelineRules(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	list, err := pg.rules.List(ctx)
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	checks := map[alert.Check]alert.Rule{}
	for _, r := range list {
		if r.Kind != alert.KindPipeline {
			continue
		}
		if err := r.Validate(); err != nil {
			t.Errorf("built-in rule %q: Validate() = %v", r.Name, err)
		}
		if !r.Enabled {
			t.Errorf("built-in rule %q is disabled, want enabled", r.Name)
		}
		checks[r.Pipeline.Check] = r
	}
	for _, c := range []alert.Check{alert.CheckGroupLag, alert.CheckDeadLetters, alert.CheckNoConsumer, alert.CheckStoreDown, alert.CheckWatchdog} {
		if _, ok := checks[c]; !ok {
			t.Errorf("no built-in rule with check %s (got %v)", c, checks)
		}
	}
	lag := checks[alert.CheckGroupLag]
	if lag.Pipeline == nil || lag.Pipeline.Bound == nil || *lag.Pipeline.Bound != 100000 || lag.For.String() != "2m" ||
		!slices.Equal(lag.Pipeline.Groups, []string{"influx-writer", "pg-sync", "alerter", "rollup"}) {
		t.Errorf("built-in lag rule = %+v, want influx-writer/pg-sync/alerter/rollup above 100000 for 2m", lag)
	}

	// Editable and disableable like every rule.
	bound := int64(5000)
	lag.Pipeline.Bound, lag.Enabled = &bound, false
	if _, err := pg.rules.Update(ctx, lag, "alice"); err != nil {
		t.Fatalf("Update(built-in lag rule) = %v", err)
	}
	got, err := pg.rules.Get(ctx, lag.ID)
	if err != nil || got.Enabled || *got.Pipeline.Bound != 5000 {
		t.Errorf("Get after update = %+v, %v, want disabled with bound 5000", got, err)
	}
}
