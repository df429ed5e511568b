package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/agentmonitor/agentmonitor/internal/agent"
)

// MaxKeyGrace bounds the grace period of a rotation: a replaced key that works for longer is a
// second key, not a rotation.
const MaxKeyGrace = 30 * 24 * time.Hour

// RotateKey replaces the key hash of agent id with no grace period: the old key stops resolving
// at once. See RotateKeyGrace.
func (s *AgentStore) RotateKey(ctx context.Context, id, keyHash, actor string) error {
	_, err := s.RotateKeyGrace(ctx, id, keyHash, 0, actor)
	return err
}

// RotateKeyGrace replaces the key hash of agent id and audits it as actor's agent.rotate_key.
// With grace > 0 the replaced key keeps resolving until grace from now (the agent's
// PreviousKeyExpiresAt); a key replaced by an earlier rotation stops at once either way. It
// returns the agent as changed. An unknown id is ErrNotFound; a hash in use is ErrConflict; a
// grace below 0 or above MaxKeyGrace is ErrInvalid.
func (s *AgentStore) RotateKeyGrace(ctx context.Context, id, keyHash string, grace time.Duration, actor string) (agent.Agent, error) {
	if err := checkActor(actor); err != nil {
		return agent.Agent{}, err
	}
	if grace < 0 || grace > MaxKeyGrace {
		return agent.Agent{}, fmt.Errorf("%w: grace %s must be between 0s and %s", ErrInvalid, grace, MaxKeyGrace)
	}
	if !validID(id) {
		return agent.Agent{}, fmt.Errorf("agent %q: %w", id, ErrNotFound)
	}
	var a agent.Agent
	err := inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		var row agentRow
		// The previous key is kept only with a grace period, given in microseconds.
		err := tx.GetContext(ctx, &row, `
			UPDATE agents SET
				previous_key_hash       = CASE WHEN $3::bigint > 0 THEN api_key_hash END,
				previous_key_expires_at = CASE WHEN $3::bigint > 0 THEN now() + $3::bigint * interval '1 microsecond' END,
				api_key_hash            = $2
			WHERE id = $1 RETURNING `+agentColumns, id, keyHash, grace.Microseconds())
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("agent %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("rotating key of agent %s: %w", id, agentWriteError(err, ""))
		}
		if a, err = row.agent(); err != nil {
			return err
		}
		details := map[string]any{"name": a.Name}
		if a.PreviousKeyExpiresAt != nil {
			details["grace"] = grace.String()
			details["previous_key_expires_at"] = a.PreviousKeyExpiresAt
		}
		return writeAudit(ctx, tx, actor, ActionAgentRotateKey, id, details)
	})
	if err != nil {
		return agent.Agent{}, err
	}
	return a, nil
}

// RevokePreviousKey makes the key replaced by the last rotation of agent id stop resolving now,
// before its grace period ends, and audits it as actor's agent.revoke_previous_key. An unknown id
// is ErrNotFound, and so is an agent whose previous key no longer works.
func (s *AgentStore) RevokePreviousKey(ctx context.Context, id, actor string) error {
	if err := checkChange(actor, "agent", id); err != nil {
		return err
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		var name string
		err := tx.GetContext(ctx, &name, `
			UPDATE agents SET previous_key_hash = NULL, previous_key_expires_at = NULL
			WHERE id = $1 AND previous_key_expires_at > now() RETURNING name`, id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("previous key of agent %s (none, or its grace period is over): %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoking previous key of agent %s: %w", id, err)
		}
		return writeAudit(ctx, tx, actor, ActionAgentRevokePreviousKey, id, map[string]any{"name": name})
	})
}

// AgentIDByKeyHash returns the id of the agent whose key hashes to keyHash (see HashAPIKey),
// its previous key within its grace period included, or ErrNotFound.
func (s *AgentStore) AgentIDByKeyHash(ctx context.Context, keyHash string) (string, error) {
	id, _, err := s.ResolveKeyHash(ctx, keyHash)
	return id, err
}

// ResolveKeyHash returns the id of the agent whose current key, or previous key within its grace
// period, hashes to keyHash, and for a previous key when it stops working (zero for a current
// key); ErrNotFound when no agent has it.
func (s *AgentStore) ResolveKeyHash(ctx context.Context, keyHash string) (string, time.Time, error) {
	var row struct {
		ID      string     `db:"id"`
		Expires *time.Time `db:"expires"`
	}
	err := s.db.GetContext(ctx, &row, `
		SELECT id, CASE WHEN api_key_hash = $1 THEN NULL ELSE previous_key_expires_at END AS expires
		FROM agents
		WHERE api_key_hash = $1 OR (previous_key_hash = $1 AND previous_key_expires_at > now())
		LIMIT 1`, keyHash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, fmt.Errorf("agent key: %w", ErrNotFound)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("looking up agent key: %w", err)
	}
	if row.Expires == nil {
		return row.ID, time.Time{}, nil
	}
	return row.ID, *row.Expires, nil
}
