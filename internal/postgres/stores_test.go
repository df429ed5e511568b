package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// stores is a fresh test database (testenv.Postgres, dropped at cleanup) with every store on it:
// the fixture of the store tests.
type stores struct {
	db       *sqlx.DB
	url      string
	agents   *postgres.AgentStore
	users    *postgres.UserStore
	rules    *postgres.RuleStore
	channels *postgres.ChannelStore
	silences *postgres.SilenceStore
	events   *postgres.AlertEventStore
	acks     *postgres.AckStore
	audit    *postgres.AuditStore
}

func newStores(t *testing.T) stores {
	t.Helper()
	db, url := testenv.Postgres(t)
	return stores{
		db:       db,
		url:      url,
		agents:   postgres.NewAgentStore(db),
		users:    postgres.NewUserStore(db),
		rules:    postgres.NewRuleStore(db),
		channels: postgres.NewChannelStore(db),
		silences: postgres.NewSilenceStore(db),
		events:   postgres.NewAlertEventStore(db),
		acks:     postgres.NewAckStore(db),
		audit:    postgres.NewAuditStore(db),
	}
}

// deleteGone deletes id as actor with del and checks that get then answers ErrNotFound.
func deleteGone[T any](t *testing.T, del func(ctx context.Context, id, actor string) error, get func(ctx context.Context, id string) (T, error), id, actor string) {
	t.Helper()
	if err := del(t.Context(), id, actor); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := get(t.Context(), id); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
}
