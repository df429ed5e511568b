package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

// AgentStore keeps the agent registry. Every change writes its audit row in the same transaction.
type AgentStore struct {
	db *sqlx.DB
}

// NewAgentStore returns an AgentStore on db.
func NewAgentStore(db *sqlx.DB) *AgentStore {
	return &AgentStore{db: db}
}

// agentColumns are the columns of agentRow; the previous key's expiry only while it is ahead.
const agentColumns = `id, name, labels, created_at, last_seen,
	CASE WHEN previous_key_expires_at > now() THEN previous_key_expires_at END AS previous_key_expires_at`

type agentRow struct {
	ID        string     `db:"id"`
	Name      string     `db:"name"`
	Labels    []byte     `db:"labels"`
	CreatedAt time.Time  `db:"created_at"`
	LastSeen  *time.Time `db:"last_seen"`
	// PreviousKeyExpiresAt is set while the key replaced by a rotation still works.
	PreviousKeyExpiresAt *time.Time `db:"previous_key_expires_at"`
}

func (r agentRow) agent() (agent.Agent, error) {
	a := agent.Agent{ID: r.ID, Name: r.Name, CreatedAt: r.CreatedAt.UTC()}
	if err := json.Unmarshal(r.Labels, &a.Labels); err != nil {
		return agent.Agent{}, fmt.Errorf("decoding labels of agent %s: %w", r.ID, err)
	}
	if a.Labels == nil {
		a.Labels = map[string]string{}
	}
	if r.LastSeen != nil {
		t := r.LastSeen.UTC()
		a.LastSeen = &t
	}
	if r.PreviousKeyExpiresAt != nil {
		t := r.PreviousKeyExpiresAt.UTC()
		a.PreviousKeyExpiresAt = &t
	}
	return a, nil
}

// validID reports whether id is a UUID in its canonical 36-character form, the only form the
// API hands out. Anything else cannot name an agent.
func validID(id string) bool {
	return len(id) == 36 && uuid.Validate(id) == nil
}

// encodeLabels returns the JSON an agent's labels are stored as (nil: none, {}).
func encodeLabels(labels map[string]string) (string, error) {
	if labels == nil {
		labels = map[string]string{}
	}
	b, err := json.Marshal(labels)
	if err != nil {
		return "", fmt.Errorf("encoding labels: %w", err)
	}
	return string(b), nil
}

// agentWriteError turns a constraint violation on agents into ErrConflict or ErrInvalid.
func agentWriteError(err error, name string) error {
	if c, ok := violation(err, pqerror.UniqueViolation); ok {
		if c == "agents_name_key" {
			return fmt.Errorf("%w: an agent named %q already exists", ErrConflict, name)
		}
		return fmt.Errorf("%w: that api key hash is already in use", ErrConflict)
	}
	if c, ok := violation(err, pqerror.CheckViolation); ok {
		switch c {
		case "agents_name_check":
			return fmt.Errorf("%w: agent name %q must be 1-200 characters without control characters or surrounding spaces", ErrInvalid, name)
		case "agents_api_key_hash_check":
			return fmt.Errorf("%w: api key hash must be 64 lowercase hex digits (see agent.HashAPIKey)", ErrInvalid)
		}
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// Create registers an agent named name with labels (nil means none) and the hash of its key, and
// audits it as actor's agent.create. The name and the key hash are unique (ErrConflict); a blank
// name, a hash that is not HashAPIKey's form, or an empty actor is ErrInvalid.
func (s *AgentStore) Create(ctx context.Context, name string, labels map[string]string, keyHash, actor string) (agent.Agent, error) {
	if err := checkActor(actor); err != nil {
		return agent.Agent{}, err
	}
	labelsJSON, err := encodeLabels(labels)
	if err != nil {
		return agent.Agent{}, err
	}
	return writeAudited(ctx, s.db, func(tx *sqlx.Tx, row *agentRow) error {
		// CAST, not ::jsonb: sqlx reads ":labels::jsonb" as a parameter named "labels:".
		q, args, err := tx.BindNamed(`
			INSERT INTO agents (name, labels, api_key_hash)
			VALUES (:name, CAST(:labels AS jsonb), :key_hash)
			RETURNING `+agentColumns, map[string]any{
			"name": name, "labels": labelsJSON, "key_hash": keyHash,
		})
		if err != nil {
			return fmt.Errorf("binding agent insert: %w", err)
		}
		if err := tx.GetContext(ctx, row, q, args...); err != nil {
			return fmt.Errorf("creating agent: %w", agentWriteError(err, name))
		}
		return nil
	}, agentRow.agent, func(tx *sqlx.Tx, a agent.Agent) error {
		return writeAudit(ctx, tx, actor, ActionAgentCreate, a.ID, map[string]any{"name": a.Name, "labels": a.Labels})
	})
}

// Get returns the agent with id, or ErrNotFound (also for an id that is not a UUID).
func (s *AgentStore) Get(ctx context.Context, id string) (agent.Agent, error) {
	row, err := getByID[agentRow](ctx, s.db, "agent", "agents", agentColumns, id)
	if err != nil {
		return agent.Agent{}, err
	}
	return row.agent()
}

// List returns a page of agents ordered by name, and the total number of agents, both from one
// snapshot. limit must be at least 1 and offset not negative (ErrInvalid otherwise); an offset
// past the end gives an empty page and the total.
func (s *AgentStore) List(ctx context.Context, limit, offset int) ([]agent.Agent, int, error) {
	if err := checkPaging(limit, offset); err != nil {
		return nil, 0, err
	}
	var (
		rows  []agentRow
		total int
	)
	err := inTx(ctx, s.db, readSnapshot, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &total, `SELECT count(*) FROM agents`); err != nil {
			return fmt.Errorf("counting agents: %w", err)
		}
		if err := tx.SelectContext(ctx, &rows,
			`SELECT `+agentColumns+` FROM agents ORDER BY name, id LIMIT $1 OFFSET $2`, limit, offset); err != nil {
			return fmt.Errorf("listing agents: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	agents, err := fromRows(rows, agentRow.agent)
	if err != nil {
		return nil, 0, err
	}
	return agents, total, nil
}

// Delete removes agent id and audits it as actor's agent.delete. An unknown id is ErrNotFound.
func (s *AgentStore) Delete(ctx context.Context, id, actor string) error {
	if err := checkChange(actor, "agent", id); err != nil {
		return err
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		name, err := deleteByID(ctx, tx, "agent", "agents", "name", id)
		if err != nil {
			return err
		}
		return writeAudit(ctx, tx, actor, ActionAgentDelete, id, map[string]any{"name": name})
	})
}

// TouchLastSeen moves the last_seen of each agent id in seen forward to its time, in one
// statement. last_seen never moves back (GREATEST), so a redelivered or late batch is harmless.
// Ids of agents that do not exist, including ones that are not UUIDs, are ignored: an agent may be
// deleted while its points are in flight. An empty map does nothing.
func (s *AgentStore) TouchLastSeen(ctx context.Context, seen map[string]time.Time) error {
	// Coalesce spellings of one id (case) first: a row matched twice by UPDATE ... FROM is
	// updated with an arbitrary one of the matches, not the latest.
	latest := make(map[string]time.Time, len(seen))
	for id, t := range seen {
		if !validID(id) {
			continue
		}
		id = strings.ToLower(id)
		if prev, ok := latest[id]; !ok || t.After(prev) {
			latest[id] = t
		}
	}
	if len(latest) == 0 {
		return nil
	}
	// Sorted ids make concurrent pg-sync copies lock shared rows in the same order, which keeps
	// their updates from deadlocking each other.
	ids := slices.Sorted(maps.Keys(latest))
	times := make([]time.Time, len(ids))
	for i, id := range ids {
		times[i] = latest[id]
	}
	if _, err := s.db.ExecContext(ctx, `
		UPDATE agents a SET last_seen = GREATEST(a.last_seen, v.t)
		FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)
		WHERE a.id = v.id`, pq.Array(ids), pq.Array(times)); err != nil {
		return fmt.Errorf("updating last_seen of %d agents: %w", len(ids), err)
	}
	return nil
}

// Update sets the name and labels of agent id (labels nil: none) and audits it as actor's
// agent.update with what changed. An unknown id is ErrNotFound, a taken name ErrConflict, a
// name the table refuses ErrInvalid.
func (s *AgentStore) Update(ctx context.Context, id, name string, labels map[string]string, actor string) (agent.Agent, error) {
	if err := checkChange(actor, "agent", id); err != nil {
		return agent.Agent{}, err
	}
	labelsJSON, err := encodeLabels(labels)
	if err != nil {
		return agent.Agent{}, err
	}
	var a agent.Agent
	err = inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		var before agentRow
		err := tx.GetContext(ctx, &before, `SELECT `+agentColumns+` FROM agents WHERE id = $1 FOR UPDATE`, id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("agent %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading agent %s: %w", id, err)
		}
		old, err := before.agent()
		if err != nil {
			return err
		}
		var row agentRow
		if err := tx.GetContext(ctx, &row, `UPDATE agents SET name = $2, labels = CAST($3 AS jsonb) WHERE id = $1 RETURNING `+agentColumns,
			id, name, labelsJSON); err != nil {
			return fmt.Errorf("updating agent %s: %w", id, agentWriteError(err, name))
		}
		if a, err = row.agent(); err != nil {
			return err
		}
		details := map[string]any{"name": a.Name}
		if old.Name != a.Name {
			details["previous_name"] = old.Name
		}
		if !maps.Equal(old.Labels, a.Labels) {
			details["labels"], details["previous_labels"] = a.Labels, old.Labels
		}
		return writeAudit(ctx, tx, actor, ActionAgentUpdate, id, details)
	})
	if err != nil {
		return agent.Agent{}, err
	}
	return a, nil
}
