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
