package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/agentmonitor/agentmonitor/internal/user"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq/pqerror"
)

// ErrLastAdmin is returned when a delete would leave no admin. It wraps ErrConflict.
var ErrLastAdmin = fmt.Errorf("%w: the last admin cannot be deleted", ErrConflict)

// ErrLastAdminRole is returned when a role change would leave no admin. It wraps ErrConflict.
var ErrLastAdminRole = fmt.Errorf("%w: the last admin cannot lose the admin role", ErrConflict)

// UserStore keeps operator accounts. Every change writes its audit row in the same transaction.
type UserStore struct {
	db *sqlx.DB
}

// NewUserStore returns a UserStore on db.
func NewUserStore(db *sqlx.DB) *UserStore {
	return &UserStore{db: db}
}

// userWriteError turns a constraint violation on users into ErrConflict or ErrInvalid.
func userWriteError(err error, username, role string) error {
	if _, ok := violation(err, pqerror.UniqueViolation); ok {
		return fmt.Errorf("%w: user %q already exists", ErrConflict, username)
	}
	if c, ok := violation(err, pqerror.CheckViolation); ok {
		switch c {
		case "users_username_check":
			return fmt.Errorf("%w: username %q must be 1-64 characters of a-z, 0-9, '.', '_', '@' or '-', starting with a letter or digit", ErrInvalid, username)
		case "users_role_check":
			return fmt.Errorf("%w: role %q must be one of admin, operator, viewer", ErrInvalid, role)
		case "users_password_hash_check":
			return fmt.Errorf("%w: password hash must not be empty", ErrInvalid)
		}
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// Create adds user username with passwordHash (bcrypt, made by the caller) and role, and audits it
// as actor's user.create. A taken username is ErrConflict; a username outside the allowed charset,
// an unknown role, an empty hash or an empty actor is ErrInvalid.
func (s *UserStore) Create(ctx context.Context, username, passwordHash, role, actor string) (user.User, error) {
	if err := checkActor(actor); err != nil {
		return user.User{}, err
	}
	var u user.User
	err := inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		q, args, err := tx.BindNamed(`
			INSERT INTO users (username, password_hash, role) VALUES (:username, :password_hash, :role)
			RETURNING username, role, created_at`,
			map[string]any{"username": username, "password_hash": passwordHash, "role": role})
		if err != nil {
			return fmt.Errorf("binding user insert: %w", err)
		}
		if err := tx.GetContext(ctx, &u, q, args...); err != nil {
			return fmt.Errorf("creating user: %w", userWriteError(err, username, role))
		}
		return writeAudit(ctx, tx, actor, ActionUserCreate, u.Username, map[string]any{"role": u.Role})
	})
	if err != nil {
		return user.User{}, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// Credentials returns user username and its password hash, for checking a login, or ErrNotFound.
func (s *UserStore) Credentials(ctx context.Context, username string) (user.User, string, error) {
	var row struct {
		user.User
		PasswordHash string `db:"password_hash"`
	}
	err := s.db.GetContext(ctx, &row,
		`SELECT username, role, created_at, password_hash FROM users WHERE username = $1`, username)
	if errors.Is(err, sql.ErrNoRows) {
		return user.User{}, "", fmt.Errorf("user %q: %w", username, ErrNotFound)
	}
	if err != nil {
		return user.User{}, "", fmt.Errorf("getting user %q: %w", username, err)
	}
	row.CreatedAt = row.CreatedAt.UTC()
	return row.User, row.PasswordHash, nil
}

// List returns every user ordered by username.
func (s *UserStore) List(ctx context.Context) ([]user.User, error) {
	users := []user.User{}
	if err := s.db.SelectContext(ctx, &users,
		`SELECT username, role, created_at FROM users ORDER BY username`); err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	for i := range users {
		users[i].CreatedAt = users[i].CreatedAt.UTC()
	}
	return users, nil
}

// Delete removes user username and audits it as actor's user.delete. An unknown user is
// ErrNotFound; deleting the only admin is ErrLastAdmin, so that operators cannot lock themselves
// out. Sessions of the deleted user are the caller's to end.
func (s *UserStore) Delete(ctx context.Context, username, actor string) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		// Lock every admin row, so that two deletes of the last two admins cannot both see the
		// other one still there: the second waits for the first, then finds one admin left.
		var admins []string
		if err := tx.SelectContext(ctx, &admins,
			`SELECT username FROM users WHERE role = $1 ORDER BY username FOR UPDATE`, user.RoleAdmin); err != nil {
			return fmt.Errorf("locking admins: %w", err)
		}
		var role string
		err := tx.GetContext(ctx, &role, `DELETE FROM users WHERE username = $1 RETURNING role`, username)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %q: %w", username, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("deleting user %q: %w", username, err)
		}
		if role == user.RoleAdmin && len(admins) <= 1 {
			return ErrLastAdmin // rolls the delete back
		}
		return writeAudit(ctx, tx, actor, ActionUserDelete, username, map[string]any{"role": role})
	})
}

// EnsureAdmin creates user "admin" with role admin and passwordHash when no user has the admin
// role, audited with actor "system", and reports whether it did. It is safe to call from many
// binaries at once: one of them creates the user, the others return false. When a non-admin user
// named "admin" exists it creates nothing.
func (s *UserStore) EnsureAdmin(ctx context.Context, passwordHash string) (bool, error) {
	created := false
	err := inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		// Two callers may both see no admin; the unique username makes the second insert a no-op.
		var u user.User
		err := tx.GetContext(ctx, &u, `
			INSERT INTO users (username, password_hash, role)
			SELECT $1, $2, $3
			WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = $3)
			ON CONFLICT (username) DO NOTHING
			RETURNING username, role, created_at`, user.AdminUsername, passwordHash, user.RoleAdmin)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("creating admin: %w", userWriteError(err, user.AdminUsername, user.RoleAdmin))
		}
		created = true
		return writeAudit(ctx, tx, ActorSystem, ActionUserCreate, u.Username,
			map[string]any{"role": u.Role, "reason": "no admin existed"})
	})
	if err != nil {
		return false, err
	}
	return created, nil
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
