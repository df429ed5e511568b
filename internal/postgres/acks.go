package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// MaxAckCommentLen bounds the comment of an acknowledgement, in bytes.
const MaxAckCommentLen = 1024

// AlertAck is one acknowledgement of an alert by an operator, kept after the alert resolves.
type AlertAck struct {
	ID      int64     `json:"id" db:"id"`
	AlertID string    `json:"alert_id" db:"alert_id"`
	By      string    `json:"by" db:"acked_by"`
	Comment string    `json:"comment" db:"comment"`
	At      time.Time `json:"at" db:"at"`
}

// AckStore keeps the acknowledgements of alerts. Each is audited as alert.ack in its own
// transaction.
type AckStore struct {
	db *sqlx.DB
}

// NewAckStore returns an AckStore on db.
func NewAckStore(db *sqlx.DB) *AckStore {
	return &AckStore{db: db}
}

// Record stores that operator by acknowledged alert alertID at at (the time the caller also
// recorded in Redis) with comment, and audits it as by's alert.ack. An empty alert id or by, a
// zero at, or a comment over MaxAckCommentLen bytes or not storable as text is ErrInvalid.
func (s *AckStore) Record(ctx context.Context, alertID, by, comment string, at time.Time) error {
	if err := checkActor(by); err != nil {
		return err
	}
	switch {
	case alertID == "" || !storableText(alertID):
		return fmt.Errorf("%w: alert id is required", ErrInvalid)
	case at.IsZero():
		return fmt.Errorf("%w: the time of the acknowledgement is required", ErrInvalid)
	case len(comment) > MaxAckCommentLen:
		return fmt.Errorf("%w: comment must be at most %d bytes, got %d", ErrInvalid, MaxAckCommentLen, len(comment))
	case !storableText(comment) || !storableText(by):
		return fmt.Errorf("%w: comment and user must be valid UTF-8 without NUL bytes", ErrInvalid)
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO alert_acks (alert_id, acked_by, comment, at) VALUES ($1, $2, $3, $4)`,
			alertID, by, comment, at); err != nil {
			return fmt.Errorf("recording acknowledgement of alert %s: %w", alertID, err)
		}
		return writeAudit(ctx, tx, by, ActionAlertAck, alertID, map[string]any{"comment": comment})
	})
}

// List returns the acknowledgements of alert alertID, oldest first; none is an empty slice.
func (s *AckStore) List(ctx context.Context, alertID string) ([]AlertAck, error) {
	acks := []AlertAck{}
	if err := s.db.SelectContext(ctx, &acks, `
		SELECT id, alert_id, acked_by, comment, at FROM alert_acks WHERE alert_id = $1 ORDER BY at, id`,
		alertID); err != nil {
		return nil, fmt.Errorf("listing acknowledgements of alert %s: %w", alertID, err)
	}
	for i := range acks {
		acks[i].At = acks[i].At.UTC()
	}
	return acks, nil
}
