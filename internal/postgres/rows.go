package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// The stores keyed by a UUID (agents, channels, rules, silences) read one row, convert rows and
// delete one row the same way; these helpers are that one way. what names the kind of row in
// errors ("alert rule"), table and columns are constants of the calling store, never input.

// getByID reads the row with id from table into an R. An id that is not a UUID, or that names no
// row, is ErrNotFound.
func getByID[R any](ctx context.Context, db *sqlx.DB, what, table, columns, id string) (R, error) {
	var row R
	if !validID(id) {
		return row, fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	err := db.GetContext(ctx, &row, `SELECT `+columns+` FROM `+table+` WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return row, fmt.Errorf("%s %s: %w", what, id, ErrNotFound)
	}
	if err != nil {
		return row, fmt.Errorf("getting %s %s: %w", what, id, err)
	}
	return row, nil
}

// deleteByID deletes the row with id (a valid UUID) from table in tx and returns its column
// returning, which the audit row records. An id that names no row is ErrNotFound; any other
// failure is wrapped, so that callers can still look for a constraint violation in it.
func deleteByID(ctx context.Context, tx *sqlx.Tx, what, table, returning, id string) (string, error) {
	var value string
	err := tx.GetContext(ctx, &value, `DELETE FROM `+table+` WHERE id = $1 RETURNING `+returning, id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%s %s: %w", what, id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("deleting %s %s: %w", what, id, err)
	}
	return value, nil
}

// fromRows converts each database row with conv, stopping at the first row it cannot convert.
func fromRows[R, T any](rows []R, conv func(R) (T, error)) ([]T, error) {
	out := make([]T, 0, len(rows))
	for _, r := range rows {
		v, err := conv(r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// writeAudited runs write, which inserts or updates one row and scans what it returns into row,
// converts that row with conv and writes audit's audit row of the result, all in one transaction.
// It returns the result, or the zero value and the first error with nothing kept.
func writeAudited[R, T any](ctx context.Context, db *sqlx.DB, write func(tx *sqlx.Tx, row *R) error,
	conv func(R) (T, error), audit func(tx *sqlx.Tx, v T) error) (T, error) {
	var out T
	err := inTx(ctx, db, nil, func(tx *sqlx.Tx) error {
		var row R
		if err := write(tx, &row); err != nil {
			return err
		}
		v, err := conv(row)
		if err != nil {
			return err
		}
		if err := audit(tx, v); err != nil {
			return err
		}
		out = v
		return nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}
