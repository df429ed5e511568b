package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Audit actions written by the stores.
const (
	ActionAgentCreate    = "agent.create"
	ActionAgentRotateKey = "agent.rotate_key"
	// ActionAgentRevokePreviousKey ends the grace period of the key replaced by a rotation.
	ActionAgentRevokePreviousKey = "agent.revoke_previous_key"
	// ActionAgentUpdate changes an agent's name or labels.
	ActionAgentUpdate = "agent.update"
	// ActionUserUpdate changes a user's role.
	ActionUserUpdate = "user.update"
	// ActionUserChangePassword is a user changing their own password.
	ActionUserChangePassword = "user.change_password"
	ActionAgentDelete        = "agent.delete"
	ActionUserCreate         = "user.create"
	ActionUserDelete         = "user.delete"
)

// ActorSystem is the actor recorded for changes the system makes on its own, such as creating the
// first admin.
const ActorSystem = "system"

// AuditEntry is one audit-log row: who (Actor) did what (Action) to which agent id or username
// (Target), when (At), with Details such as the agent's name. Details never hold keys or
// password hashes.
type AuditEntry struct {
	ID      int64          `json:"id"`
	At      time.Time      `json:"at"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Target  string         `json:"target"`
	Details map[string]any `json:"details"`
	// ClientAddr is the address of the client that made the change (WithClientAddr); empty for
	// the system's own changes and rows written before it was recorded.
	ClientAddr string `json:"client_addr"`
}

// AuditStore reads and purges the audit log. Rows are written by AgentStore and UserStore inside
// the transactions of the changes they record.
type AuditStore struct {
	db *sqlx.DB
}

// NewAuditStore returns an AuditStore on db.
func NewAuditStore(db *sqlx.DB) *AuditStore {
	return &AuditStore{db: db}
}

type auditRow struct {
	ID      int64     `db:"id"`
	At      time.Time `db:"at"`
	Actor   string    `db:"actor"`
	Action  string    `db:"action"`
	Target  string    `db:"target"`
	Details []byte    `db:"details"`
	Addr    string    `db:"client_addr"`
}

// List returns a page of the audit log, newest first, and the total number of rows. limit must be
// at least 1 and offset not negative (ErrInvalid otherwise).
func (s *AuditStore) List(ctx context.Context, limit, offset int) ([]AuditEntry, int, error) {
	if err := checkPaging(limit, offset); err != nil {
		return nil, 0, err
	}
	var (
		rows  []auditRow
		total int
	)
	err := inTx(ctx, s.db, readSnapshot, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &total, `SELECT count(*) FROM audit_log`); err != nil {
			return fmt.Errorf("counting audit rows: %w", err)
		}
		if err := tx.SelectContext(ctx, &rows, `
			SELECT id, at, actor, action, target, details, client_addr
			FROM audit_log ORDER BY at DESC, id DESC LIMIT $1 OFFSET $2`, limit, offset); err != nil {
			return fmt.Errorf("listing audit rows: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	entries := make([]AuditEntry, 0, len(rows))
	for _, r := range rows {
		e := AuditEntry{ID: r.ID, At: r.At.UTC(), Actor: r.Actor, Action: r.Action, Target: r.Target, ClientAddr: r.Addr}
		if err := json.Unmarshal(r.Details, &e.Details); err != nil {
			return nil, 0, fmt.Errorf("decoding details of audit row %d: %w", r.ID, err)
		}
		entries = append(entries, e)
	}
	return entries, total, nil
}

// Purge deletes the audit rows written more than olderThan ago by the database's clock (the one
// that stamped them) and returns how many it deleted. olderThan must be positive.
func (s *AuditStore) Purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("%w: audit retention must be positive, got %s", ErrInvalid, olderThan)
	}
	res, err := s.db.ExecContext(ctx,
		`DELETE FROM audit_log WHERE at < now() - make_interval(secs => $1)`, olderThan.Seconds())
	if err != nil {
		return 0, fmt.Errorf("purging audit rows older than %s: %w", olderThan, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purging audit rows older than %s: %w", olderThan, err)
	}
	return n, nil
}

// writeAudit records one change inside tx, the transaction of the change itself, with the client
// address ctx carries (WithClientAddr).
func writeAudit(ctx context.Context, tx *sqlx.Tx, actor, action, target string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	b, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("encoding audit details: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO audit_log (actor, action, target, details, client_addr) VALUES ($1, $2, $3, CAST($4 AS jsonb), $5)`,
		actor, action, target, string(b), clientAddr(ctx)); err != nil {
		return fmt.Errorf("writing audit row %s: %w", action, err)
	}
	return nil
}

// checkActor refuses a change made without naming who makes it: every change is audited.
func checkActor(actor string) error {
	if actor == "" {
		return fmt.Errorf("%w: actor is required, every change is audited", ErrInvalid)
	}
	return nil
}

// checkChange checks a change by actor of the what (such as "agent") with id: the actor is
// required (checkActor), and an id that is not a UUID names nothing (ErrNotFound).
func checkChange(actor, what, id string) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if !validID(id) {
		return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	return nil
}
