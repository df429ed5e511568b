package postgres

import (
	"context"
	"fmt"
)

// Record writes one audit row for an action that changes no PostgreSQL row (for example a dead
// letter replayed in Redis), in its own transaction.
func (s *AuditStore) Record(ctx context.Context, actor, action, target string, details map[string]any) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recording audit row %s: %w", action, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := writeAudit(ctx, tx, actor, action, target, details); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recording audit row %s: %w", action, err)
	}
	return nil
}
