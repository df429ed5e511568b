package alerter_test

import (
	"slices"
	"testing"
	"time"
)

// TestLabelSelectedRulesFollowAgentEdits: a rule selecting env=prod starts covering an agent
// once its labels are edited to env=prod and the registry snapshot refreshed, and its alert ends
// (Retire) once they are edited away.
func TestLabelSelectedRulesFollowAgentEdits(t *testing.T) {
	e := newEnv(t)
	a := e.createAgent(t, "web-1", map[string]string{"env": "test"})
	rule := cpuRule(0)
	rule.Agents.Labels = map[string]string{"env": "prod"}
	e.createRule(t, rule)
	r := e.replica(t)

	handle(t, r, entry(a.ID, cpu{"0", 99, at(0)}))
	if evs := e.streamEvents(t); len(evs) != 0 {
		t.Fatalf("agent with env=test: events %v, want none", transitions(evs))
	}
	if _, err := e.agents.Update(t.Context(), a.ID, a.Name, map[string]string{"env": "prod"}, "test"); err != nil {
		t.Fatalf("AgentStore.Update = %v", err)
	}
	if err := r.agents.Refresh(t.Context()); err != nil { // what AGENTS_REFRESH_INTERVAL does
		t.Fatal(err)
	}
	handle(t, r, entry(a.ID, cpu{"0", 99, at(1)}))
	if got, want := transitions(e.streamEvents(t)), []string{"ok>firing(critical)"}; !slices.Equal(got, want) {
		t.Fatalf("after the labels became env=prod: %v, want %v", got, want)
	}
	if _, err := e.agents.Update(t.Context(), a.ID, "web-1", map[string]string{}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := r.agents.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.eval.Retire(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, want := transitions(e.streamEvents(t)), []string{"ok>firing(critical)", "firing>resolved(critical)"}; !slices.Equal(got, want) {
		t.Fatalf("after the labels were removed: %v, want %v", got, want)
	}
}
