// Package postgrestest holds test helpers over the PostgreSQL stores, for the tests of the
// packages that write through them (postgres itself, pg-sync, the alerter): registering an
// agent and reading back what a worker wrote. The test database comes from testenv.Postgres.
package postgrestest

import (
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// CreateAgent registers an agent named name (no labels, the key name) as actor "test", failing
// the test if the store refuses.
func CreateAgent(t testing.TB, agents *postgres.AgentStore, name string) agent.Agent {
	t.Helper()
	a, err := agents.Create(t.Context(), name, nil, agent.HashAPIKey(name), "test")
	if err != nil {
		t.Fatalf("creating agent %s: %v", name, err)
	}
	return a
}

// LastSeen returns the stored last_seen of agent id (nil before its first batch), failing the
// test if the agent cannot be read.
func LastSeen(t testing.TB, agents *postgres.AgentStore, id string) *time.Time {
	t.Helper()
	a, err := agents.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s) = %v", id, err)
	}
	return a.LastSeen
}
