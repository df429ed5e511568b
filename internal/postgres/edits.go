package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/jmoiron/sqlx"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/user"
)

// ErrLastAdminRole is returned when a role change would leave no admin. It wraps ErrConflict.
var ErrLastAdminRole = fmt.Errorf("%w: the last admin cannot lose the admin role", ErrConflict)

// Update sets the name and labels of agent id (labels nil: none) and audits it as actor's
// agent.update with what changed. An unknown id is ErrNotFound, a taken name ErrConflict, a
// name the table refuses ErrInvalid.
func (s *AgentStore) Update(ctx context.Context, id, name string, labels map[string]string, actor string) (agent.Agent, error) {
	if err := checkActor(actor); err != nil {
		return agent.Agent{}, err
	}
	if !validID(id) {
		return agent.Agent{}, fmt.Errorf("agent %q: %w", id, ErrNotFound)
	}
	if labels == nil {
		labels = map[string]string{}
	}
	labelsJSON, err := json.Marshal(labels)
	if err != nil {
		return agent.Agent{}, fmt.Errorf("encoding labels: %w", err)
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
			id, name, string(labelsJSON)); err != nil {
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

// SetRole gives user username role and audits it as actor's user.update. An unknown user is
// ErrNotFound, an unknown role ErrInvalid, taking the admin role from the only admin
// ErrLastAdminRole.
func (s *UserStore) SetRole(ctx context.Context, username, role, actor string) (user.User, error) {
	if err := checkActor(actor); err != nil {
		return user.User{}, err
	}
	var u user.User
	err := inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		// Lock every admin row, as Delete does, so two demotions cannot both see the other admin.
		var admins []string
		if err := tx.SelectContext(ctx, &admins,
			`SELECT username FROM users WHERE role = $1 ORDER BY username FOR UPDATE`, user.RoleAdmin); err != nil {
			return fmt.Errorf("locking admins: %w", err)
		}
		var old string
		err := tx.GetContext(ctx, &old, `SELECT role FROM users WHERE username = $1 FOR UPDATE`, username)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %q: %w", username, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading user %q: %w", username, err)
		}
		if old == user.RoleAdmin && role != user.RoleAdmin && len(admins) <= 1 {
			return ErrLastAdminRole
		}
		if err := tx.GetContext(ctx, &u, `UPDATE users SET role = $2 WHERE username = $1 RETURNING username, role, created_at`,
			username, role); err != nil {
			return fmt.Errorf("changing role of %q: %w", username, userWriteError(err, username, role))
		}
		return writeAudit(ctx, tx, actor, ActionUserUpdate, username, map[string]any{"role": role, "previous_role": old})
	})
	if err != nil {
		return user.User{}, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// SetPassword replaces the password hash (bcrypt, made by the caller) of user username and
// audits it as the user's own user.change_password (never with the hash). An unknown user is
// ErrNotFound.
func (s *UserStore) SetPassword(ctx context.Context, username, passwordHash string) error {
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = $2 WHERE username = $1`, username, passwordHash)
		if err != nil {
			return fmt.Errorf("changing password of %q: %w", username, userWriteError(err, username, ""))
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("user %q: %w", username, ErrNotFound)
		}
		return writeAudit(ctx, tx, username, ActionUserChangePassword, username, map[string]any{})
	})
}
