package postgres_test

import (
	"io/fs"

	"github.com/agentmonitor/agentmonitor/schema"

	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
	"github.com/agentmonitor/agentmonitor/internal/user"
)

func TestMigrateTwiceIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.EmptyPostgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 2 {
		if err := postgres.Migrate(ctx, db); err != nil {
			t.Fatalf("Migrate #%d = %v, want nil", i+1, err)
		}
	}
	for _, table := range []string{"agents", "users", "audit_log"} {
		var exists bool
		if err := db.GetContext(ctx, &exists, `SELECT to_regclass($1) IS NOT NULL`, table); err != nil {
			t.Fatal(err)
		}
		if !exists {
			t.Errorf("table %s does not exist after Migrate", table)
		}
	}
	var applied int
	if err := db.GetContext(ctx, &applied, `SELECT count(*) FROM goose_db_version WHERE version_id = 1`); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Errorf("migration 1 recorded %d times, want 1", applied)
	}
}

// Several binaries starting at once each run Migrate with their own pool.
func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.EmptyPostgres(t)
	const binaries = 4
	var wg sync.WaitGroup
	errs := make([]error, binaries)
	for i := range binaries {
		wg.Go(func() {
			db, err := postgres.Open(ctx, dbURL)
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			errs[i] = postgres.Migrate(ctx, db)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("binary %d: Migrate = %v, want nil", i, err)
		}
	}
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var applied int
	if err := db.GetContext(ctx, &applied, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`); err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(schema.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(files) {
		t.Errorf("goose_db_version holds %d applied migrations, want %d (each applied once)", applied, len(files))
	}
}

func TestOpenFails(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{
		"postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", // nothing listens on port 1
		"mysql://root@127.0.0.1/x",
		"postgres://postgres@127.0.0.1:5432/x?sslmode=bogus",
	} {
		db, err := postgres.Open(ctx, url)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) = nil error, want one", url)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := postgres.Config{URL: "postgres://u:p@db:5432/agentmonitor?sslmode=disable", LogsRetentionDays: 7}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v, want nil", good, err)
	}
	if got, want := good.LogsRetention(), 7*24*time.Hour; got != want {
		t.Errorf("LogsRetention() = %v, want %v", got, want)
	}
	for _, c := range []postgres.Config{
		{URL: "http://db/x", LogsRetentionDays: 7},
		{URL: good.URL, LogsRetentionDays: 0},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", c)
		}
	}
}

func TestAuditPurge(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	if _, err := pg.db.ExecContext(ctx, `
		INSERT INTO audit_log (at, actor, action, target) VALUES
			(now() - interval '8 days', 'old', 'user.create', 'a'),
			(now() - interval '7 days 1 minute', 'old', 'user.create', 'b'),
			(now() - interval '6 days', 'new', 'user.create', 'c'),
			(now(), 'new', 'user.create', 'd')`); err != nil {
		t.Fatal(err)
	}
	n, err := pg.audit.Purge(ctx, 7*24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("Purge(7d) = %d, %v, want 2, nil", n, err)
	}
	entries, total, err := pg.audit.List(ctx, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if total != 2 || len(entries) != 2 {
		t.Fatalf("after Purge: List = %d entries, total %d, want 2, 2", len(entries), total)
	}
	for _, e := range entries {
		if e.Actor != "new" {
			t.Errorf("Purge kept %+v, want only rows newer than 7 days", e)
		}
	}
	if _, err := pg.audit.Purge(ctx, 0); !errors.Is(err, postgres.ErrInvalid) {
		t.Errorf("Purge(0) = %v, want ErrInvalid", err)
	}
}

func TestAuditListPaging(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	for _, name := range []string{"u1", "u2", "u3"} {
		if _, err := pg.users.Create(ctx, name, "hash", user.RoleViewer, "root"); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for offset := 0; offset < 4; offset += 2 {
		page, total, err := pg.audit.List(ctx, 2, offset)
		if err != nil {
			t.Fatal(err)
		}
		if total != 3 {
			t.Errorf("List(2, %d) total = %d, want 3", offset, total)
		}
		for _, e := range page {
			got = append(got, e.Target)
		}
	}
	if want := "u3,u2,u1"; strings.Join(got, ",") != want {
		t.Errorf("audit targets newest first = %v, want %s", got, want)
	}
	for _, c := range [][2]int{{0, 0}, {-1, 0}, {1, -1}} {
		if _, _, err := pg.audit.List(ctx, c[0], c[1]); !errors.Is(err, postgres.ErrInvalid) {
			t.Errorf("List(%d, %d) = %v, want ErrInvalid", c[0], c[1], err)
		}
	}
}

// auditRows returns the whole audit log, oldest first.
func auditRows(t *testing.T, db *postgres.AuditStore) []postgres.AuditEntry {
	t.Helper()
	entries, total, err := db.List(context.Background(), 1000, 0)
	if err != nil {
		t.Fatalf("AuditStore.List: %v", err)
	}
	if total != len(entries) {
		t.Fatalf("AuditStore.List total = %d, want %d", total, len(entries))
	}
	for i, j := 0, len(entries)-1; i < j; i, j = i+1, j-1 {
		entries[i], entries[j] = entries[j], entries[i]
	}
	return entries
}
