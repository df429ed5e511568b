package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/agentmonitor/agentmonitor/internal/silence"
)

// SilenceStore keeps silences. Every change writes its audit row in the same transaction.
type SilenceStore struct {
	db *sqlx.DB
}

// NewSilenceStore returns a SilenceStore on db.
func NewSilenceStore(db *sqlx.DB) *SilenceStore {
	return &SilenceStore{db: db}
}

const silenceColumns = `id, matchers, starts_at, ends_at, weekly, comment, created_by, created_at`

type silenceRow struct {
	ID        string     `db:"id"`
	Matchers  []byte     `db:"matchers"`
	StartsAt  *time.Time `db:"starts_at"`
	EndsAt    *time.Time `db:"ends_at"`
	Weekly    []byte     `db:"weekly"`
	Comment   string     `db:"comment"`
	CreatedBy string     `db:"created_by"`
	CreatedAt time.Time  `db:"created_at"`
}

func (r silenceRow) silence() (silence.Silence, error) {
	s := silence.Silence{
		ID: r.ID, StartsAt: utcPtr(r.StartsAt), EndsAt: utcPtr(r.EndsAt),
		Comment: r.Comment, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.UTC(),
	}
	if err := json.Unmarshal(r.Matchers, &s.Matchers); err != nil {
		return silence.Silence{}, fmt.Errorf("decoding matchers of silence %s: %w", r.ID, err)
	}
	if r.Weekly != nil {
		s.Weekly = new(silence.Weekly)
		if err := json.Unmarshal(r.Weekly, s.Weekly); err != nil {
			return silence.Silence{}, fmt.Errorf("decoding weekly window of silence %s: %w", r.ID, err)
		}
	}
	return s, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Create validates s, stores it under a new id with CreatedBy set to actor (s.ID, s.CreatedBy and
// s.CreatedAt are ignored) and audits it as actor's silence.create. An invalid silence is
// ErrInvalid wrapping the *silence.ValidationError (errors.As finds it). Times are stored to the
// microsecond.
func (s *SilenceStore) Create(ctx context.Context, sil silence.Silence, actor string) (silence.Silence, error) {
	if err := checkActor(actor); err != nil {
		return silence.Silence{}, err
	}
	if err := sil.Validate(); err != nil {
		return silence.Silence{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	matchers, err := json.Marshal(sil.Matchers)
	if err != nil {
		return silence.Silence{}, fmt.Errorf("encoding silence matchers: %w", err)
	}
	var weekly *string
	if sil.Weekly != nil {
		b, err := json.Marshal(sil.Weekly)
		if err != nil {
			return silence.Silence{}, fmt.Errorf("encoding silence weekly window: %w", err)
		}
		w := string(b)
		weekly = &w
	}
	return writeAudited(ctx, s.db, func(tx *sqlx.Tx, row *silenceRow) error {
		if err := tx.GetContext(ctx, row, `
			INSERT INTO silences (matchers, starts_at, ends_at, weekly, comment, created_by)
			VALUES (CAST($1 AS jsonb), $2, $3, CAST($4 AS jsonb), $5, $6)
			RETURNING `+silenceColumns,
			string(matchers), sil.StartsAt, sil.EndsAt, weekly, sil.Comment, actor); err != nil {
			return fmt.Errorf("creating silence: %w", err)
		}
		return nil
	}, silenceRow.silence, func(tx *sqlx.Tx, out silence.Silence) error {
		details := map[string]any{"matchers": out.Matchers, "comment": out.Comment}
		if out.Weekly != nil {
			details["weekly"] = out.Weekly
		} else {
			details["starts_at"], details["ends_at"] = out.StartsAt, out.EndsAt
		}
		return writeAudit(ctx, tx, actor, ActionSilenceCreate, out.ID, details)
	})
}

// Get returns the silence with id, or ErrNotFound (also for an id that is not a UUID).
func (s *SilenceStore) Get(ctx context.Context, id string) (silence.Silence, error) {
	row, err := getByID[silenceRow](ctx, s.db, "silence", "silences", silenceColumns, id)
	if err != nil {
		return silence.Silence{}, err
	}
	return row.silence()
}

// List returns the silences, newest first. Without includeExpired it leaves out the one-off
// silences whose window has ended by the database's clock (silence.Silence.Expired); weekly
// silences never expire.
func (s *SilenceStore) List(ctx context.Context, includeExpired bool) ([]silence.Silence, error) {
	var rows []silenceRow
	if err := s.db.SelectContext(ctx, &rows, `
		SELECT `+silenceColumns+` FROM silences
		WHERE $1 OR ends_at IS NULL OR ends_at > now()
		ORDER BY created_at DESC, id`, includeExpired); err != nil {
		return nil, fmt.Errorf("listing silences: %w", err)
	}
	return fromRows(rows, silenceRow.silence)
}

// Delete removes silence id and audits it as actor's silence.delete. An unknown id is
// ErrNotFound.
func (s *SilenceStore) Delete(ctx context.Context, id, actor string) error {
	if err := checkChange(actor, "silence", id); err != nil {
		return err
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		comment, err := deleteByID(ctx, tx, "silence", "silences", "comment", id)
		if err != nil {
			return err
		}
		return writeAudit(ctx, tx, actor, ActionSilenceDelete, id, map[string]any{"comment": comment})
	})
}
