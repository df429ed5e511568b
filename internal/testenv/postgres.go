package testenv

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// DefaultPostgresURL is the server tests use when TEST_DATABASE_URL is unset: the local PostgreSQL
// with trust auth. Its database is only used to create and drop the per-test databases.
const DefaultPostgresURL = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Postgres creates a fresh database for t on the server at TEST_DATABASE_URL (default
// DefaultPostgresURL), applies the migrations, and returns a pool on it and its URL. The pool is
// closed and the database dropped in t.Cleanup. The test fails, never skips, when the server is
// unreachable.
func Postgres(t testing.TB) (db *sqlx.DB, dbURL string) {
	t.Helper()
	dbURL = EmptyPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := postgres.OpenMigrated(ctx, dbURL)
	if err != nil {
		t.Fatalf("testenv: opening test database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dbURL
}

// EmptyPostgres creates a fresh database for t like Postgres, without applying migrations, and
// returns its URL. The database is dropped (connections and all) in t.Cleanup.
func EmptyPostgres(t testing.TB) string {
	t.Helper()
	serverURL := os.Getenv("TEST_DATABASE_URL")
	if serverURL == "" {
		serverURL = DefaultPostgresURL
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("testenv: TEST_DATABASE_URL must be a postgres:// URL, got %q", serverURL)
	}
	name := databaseName("test_", t.Name())

	admin := func(stmt string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := sql.Open("postgres", serverURL)
		if err != nil {
			t.Fatalf("testenv: opening %s: %v", u.Redacted(), err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("testenv: %s on %s (is PostgreSQL running? set TEST_DATABASE_URL): %v", stmt, u.Redacted(), err)
		}
	}
	admin("CREATE DATABASE " + pq.QuoteIdentifier(name))
	t.Cleanup(func() { admin("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)") })

	dbu := *u
	dbu.Path = "/" + name
	return dbu.String()
}

// CountingPostgres opens a pool on dbURL (closed in t.Cleanup) that counts every statement its
// connections send to the server: each query, exec, prepare and BEGIN. Tests use it to prove that
// an operation is a single statement.
func CountingPostgres(t testing.TB, dbURL string) (*sqlx.DB, *atomic.Int64) {
	t.Helper()
	inner, err := pq.NewConnector(dbURL)
	if err != nil {
		t.Fatalf("testenv: parsing %q: %v", dbURL, err)
	}
	c := &countingConnector{inner: inner, n: new(atomic.Int64)}
	db := sqlx.NewDb(sql.OpenDB(c), "postgres")
	t.Cleanup(func() { db.Close() })
	return db, c.n
}

// countingConnector wraps lib/pq's connections, forwarding every interface they implement. A
// proxy in the driver is the only place that sees every statement without a server-side extension
// (pg_stat_statements is not loaded on a stock server).
type countingConnector struct {
	inner driver.Connector
	n     *atomic.Int64
}

func (c *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, n: c.n}, nil
}

func (c *countingConnector) Driver() driver.Driver { return c.inner.Driver() }

type countingConn struct {
	driver.Conn
	n *atomic.Int64
}

func (c *countingConn) Prepare(query string) (driver.Stmt, error) {
	c.n.Add(1)
	return c.Conn.Prepare(query)
}

func (c *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.n.Add(1)
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.n.Add(1)
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.n.Add(1)
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.n.Add(1)
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *countingConn) Ping(ctx context.Context) error {
	return c.Conn.(driver.Pinger).Ping(ctx)
}

func (c *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

func (c *countingConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *countingConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }
