// Package postgres is the PostgreSQL adapter: connecting, applying the embedded schema migrations,
// and the stores for agents, operators and the audit log, where every change is audited in its own
// transaction.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/agentmonitor/agentmonitor/schema"
)

// Sentinel errors callers branch on with errors.Is. Returned errors wrap them with detail.
var (
	// ErrNotFound means the agent, user or key asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the change would break a uniqueness rule (a taken username, agent name or
	// key hash) or remove the last admin.
	ErrConflict = errors.New("conflict")
	// ErrInvalid means an argument breaks a schema rule (username charset, role, empty name, bad
	// paging); nothing was stored.
	ErrInvalid = errors.New("invalid")
)

// Config locates the database and says how long audit-log rows are kept.
type Config struct {
	URL               string `env:"DATABASE_URL" envDefault:"postgres://postgres:postgres@127.0.0.1:5432/agentmonitor?sslmode=disable" help:"PostgreSQL URL (postgres://user:password@host:port/database?sslmode=...)"`
	LogsRetentionDays int    `env:"LOGS_RETENTION_DAYS" envDefault:"7" help:"days audit-log rows are kept before they are purged"`
}

// Validate checks that the URL parses as a PostgreSQL connection string and the retention is
// positive. It does not connect.
func (c Config) Validate() error {
	if _, err := pq.NewConnector(c.URL); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if c.LogsRetentionDays < 1 {
		return fmt.Errorf("LOGS_RETENTION_DAYS: must be at least 1, got %d", c.LogsRetentionDays)
	}
	return nil
}

// LogsRetention returns LogsRetentionDays as a duration.
func (c Config) LogsRetention() time.Duration {
	return time.Duration(c.LogsRetentionDays) * 24 * time.Hour
}

// Pool settings for every binary. Ten connections are plenty: ingest resolves keys from a cache and
// pg-sync writes one statement per batch. Four binaries with a few copies each stay well under
// PostgreSQL's default max_connections of 100.
const (
	maxOpenConns    = 10
	maxIdleConns    = 10
	connMaxLifetime = 30 * time.Minute
	connMaxIdleTime = 5 * time.Minute
	pingTimeout     = 5 * time.Second
)

// Open connects to the database at url (a postgres:// URL or key=value DSN) and pings it within
// ctx, at most five seconds. The caller closes the returned pool.
func Open(ctx context.Context, url string) (*sqlx.DB, error) {
	connector, err := pq.NewConnector(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	db := sqlx.NewDb(sql.OpenDB(connector), "postgres")
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxIdleConns)
	db.SetConnMaxLifetime(connMaxLifetime)
	db.SetConnMaxIdleTime(connMaxIdleTime)
	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to postgres at %s: %w", describe(url), err)
	}
	return db, nil
}

// OpenMigrated opens the database at url as Open does and applies the migrations (Migrate) that
// it lacks: what every binary that uses the database does first. The caller closes the pool.
func OpenMigrated(ctx context.Context, url string) (*sqlx.DB, error) {
	db, err := Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("applying migrations: %w", err)
	}
	return db, nil
}

// describe names the server and database of a URL without its password, for error messages.
func describe(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "the configured DATABASE_URL"
	}
	return u.Host + u.Path
}

// Migrate applies every migration in schema.FS that the database lacks, in order. It holds a
// PostgreSQL session advisory lock while it works, so binaries starting at once apply each
// migration exactly once: the others wait (up to five minutes, or until ctx is done), then find
// nothing left to do. Running it on an up-to-date database changes nothing.
func Migrate(ctx context.Context, db *sqlx.DB) error {
	// Probe the lock every second rather than goose's default five: a starting binary waits for a
	// peer's migration for at most about a second longer than that migration takes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("creating migration lock: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db.DB, schema.FS,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		return fmt.Errorf("loading migrations: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	return nil
}

// inTx runs fn in a transaction and commits it when fn returns nil; otherwise it rolls back and
// returns fn's error unchanged, so that nothing fn did (the change or its audit row) remains.
func inTx(ctx context.Context, db *sqlx.DB, opts *sql.TxOptions, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.BeginTxx(ctx, opts)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that matters is fn's; a failed rollback ends the session anyway
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing transaction: %w", err)
	}
	return nil
}

// violation returns the constraint a PostgreSQL error names when its SQLSTATE is one of codes.
func violation(err error, codes ...pqerror.Code) (constraint string, ok bool) {
	if pqErr := pq.As(err, codes...); pqErr != nil {
		return pqErr.Constraint, true
	}
	return "", false
}

// checkPaging rejects a page request that cannot be served.
func checkPaging(limit, offset int) error {
	if limit < 1 {
		return fmt.Errorf("%w: limit must be at least 1, got %d", ErrInvalid, limit)
	}
	if offset < 0 {
		return fmt.Errorf("%w: offset must not be negative, got %d", ErrInvalid, offset)
	}
	return nil
}

// readSnapshot makes a count and a page of rows agree with each other.
var readSnapshot = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
