package postgres_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/user"
)

func TestUserLifecycle(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)

	for _, u := range []struct{ name, role string }{
		{"root", user.RoleAdmin},
		{"ops.team@example.com", user.RoleOperator},
		{"eve", user.RoleViewer},
	} {
		got, err := pg.users.Create(ctx, u.name, "hash-of-"+u.name, u.role, "bootstrap")
		if err != nil {
			t.Fatalf("Create(%q, %q) = %v", u.name, u.role, err)
		}
		if got.Username != u.name || got.Role != u.role || got.CreatedAt.IsZero() {
			t.Errorf("Create(%q, %q) = %+v", u.name, u.role, got)
		}
	}
	u, hash, err := pg.users.Credentials(ctx, "eve")
	if err != nil || u.Username != "eve" || u.Role != user.RoleViewer || hash != "hash-of-eve" {
		t.Errorf("Credentials(eve) = %+v, %q, %v, want eve viewer hash-of-eve", u, hash, err)
	}
	if _, _, err := pg.users.Credentials(ctx, "nobody"); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("Credentials(nobody) = %v, want ErrNotFound", err)
	}

	list, err := pg.users.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range list {
		names = append(names, u.Username+"/"+u.Role)
	}
	if got, want := strings.Join(names, ","), "eve/viewer,ops.team@example.com/operator,root/admin"; got != want {
		t.Errorf("List = %s, want %s", got, want)
	}

	if err := pg.users.Delete(ctx, "eve", "root"); err != nil {
		t.Fatalf("Delete(eve) = %v", err)
	}
	if _, _, err := pg.users.Credentials(ctx, "eve"); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("Credentials after Delete = %v, want ErrNotFound", err)
	}

	rows := auditRows(t, pg.audit)
	want := []string{
		"bootstrap user.create root role=admin",
		"bootstrap user.create ops.team@example.com role=operator",
		"bootstrap user.create eve role=viewer",
		"root user.delete eve role=viewer",
	}
	if len(rows) != len(want) {
		t.Fatalf("audit log has %d rows %+v, want %d", len(rows), rows, len(want))
	}
	for i, r := range rows {
		got := r.Actor + " " + r.Action + " " + r.Target + " role=" + r.Details["role"].(string)
		if got != want[i] {
			t.Errorf("audit row %d = %q, want %q", i, got, want[i])
		}
		if strings.Contains(strings.ToLower(got), "hash") {
			t.Errorf("audit row %d mentions the password hash: %+v", i, r)
		}
	}
}

func TestUserFailedChangesAreNotStoredOrAudited(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	if _, err := pg.users.Create(ctx, "root", "h", user.RoleAdmin, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.users.Create(ctx, "viewer", "h", user.RoleViewer, "bootstrap"); err != nil {
		t.Fatal(err)
	}

	create := func(username, hash, role, actor string) func() error {
		return func() error { _, err := pg.users.Create(ctx, username, hash, role, actor); return err }
	}
	checkRefused(t, []refusal{
		{"duplicate username", create("viewer", "h", user.RoleViewer, "root"), postgres.ErrConflict, ""},
		{"empty username", create("", "h", user.RoleViewer, "root"), postgres.ErrInvalid, ""},
		{"uppercase username", create("Viewer", "h", user.RoleViewer, "root"), postgres.ErrInvalid, ""},
		{"username with space", create("a b", "h", user.RoleViewer, "root"), postgres.ErrInvalid, ""},
		{"username too long", create(strings.Repeat("a", 65), "h", user.RoleViewer, "root"), postgres.ErrInvalid, ""},
		{"unknown role", create("bob", "h", "superuser", "root"), postgres.ErrInvalid, ""},
		{"empty hash", create("bob", "", user.RoleViewer, "root"), postgres.ErrInvalid, ""},
		{"no actor", create("bob", "h", user.RoleViewer, ""), postgres.ErrInvalid, ""},
		{"delete missing", func() error { return pg.users.Delete(ctx, "nobody", "root") }, postgres.ErrNotFound, ""},
		{"delete last admin", func() error { return pg.users.Delete(ctx, "root", "root") }, postgres.ErrLastAdmin, ""},
		{"delete without actor", func() error { return pg.users.Delete(ctx, "viewer", "") }, postgres.ErrInvalid, ""},
	})
	if !errors.Is(postgres.ErrLastAdmin, postgres.ErrConflict) {
		t.Errorf("ErrLastAdmin does not wrap ErrConflict")
	}
	// 64 characters is the limit, not above it.
	if _, err := pg.users.Create(ctx, strings.Repeat("a", 64), "h", user.RoleViewer, "root"); err != nil {
		t.Errorf("Create(64-character username) = %v, want nil", err)
	}

	list, err := pg.users.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Errorf("after failed changes List = %+v, want root, viewer and the 64-character user", list)
	}
	rows := auditRows(t, pg.audit)
	if len(rows) != 3 {
		t.Errorf("audit log = %+v, want only the 3 successful creates", rows)
	}
}

// Two admins deleting each other at once must not leave zero admins.
func TestUserDeleteKeepsOneAdminUnderRace(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	for _, n := range []string{"ann", "ben"} {
		if _, err := pg.users.Create(ctx, n, "h", user.RoleAdmin, "bootstrap"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, pair := range [][2]string{{"ann", "ben"}, {"ben", "ann"}} {
		wg.Go(func() { errs[i] = pg.users.Delete(ctx, pair[1], pair[0]) })
	}
	wg.Wait()
	ok, lastAdmin := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, postgres.ErrLastAdmin):
			lastAdmin++
		default:
			t.Errorf("Delete = %v, want nil or ErrLastAdmin", err)
		}
	}
	list, err := pg.users.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok != 1 || lastAdmin != 1 || len(list) != 1 || list[0].Role != user.RoleAdmin {
		t.Errorf("concurrent deletes: %d succeeded, %d ErrLastAdmin, users left %+v; want 1, 1, one admin", ok, lastAdmin, list)
	}
}

func TestEnsureAdmin(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)

	// Several binaries start at once: exactly one creates the admin.
	const binaries = 4
	var wg sync.WaitGroup
	created := make([]bool, binaries)
	errs := make([]error, binaries)
	for i := range binaries {
		wg.Go(func() { created[i], errs[i] = pg.users.EnsureAdmin(ctx, "first-hash") })
	}
	wg.Wait()
	n := 0
	for i := range binaries {
		if errs[i] != nil {
			t.Errorf("EnsureAdmin #%d = %v", i, errs[i])
		}
		if created[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("concurrent EnsureAdmin created the admin %d times, want 1", n)
	}
	if ok, err := pg.users.EnsureAdmin(ctx, "second-hash"); ok || err != nil {
		t.Errorf("EnsureAdmin again = %v, %v, want false, nil", ok, err)
	}
	u, hash, err := pg.users.Credentials(ctx, user.AdminUsername)
	if err != nil || u.Role != user.RoleAdmin || hash != "first-hash" {
		t.Errorf("Credentials(admin) = %+v, %q, %v, want role admin with the first hash", u, hash, err)
	}
	rows := auditRows(t, pg.audit)
	if len(rows) != 1 || rows[0].Actor != postgres.ActorSystem || rows[0].Action != postgres.ActionUserCreate || rows[0].Target != "admin" {
		t.Errorf("audit log = %+v, want one user.create of admin by system", rows)
	}
}

// An admin under another name is enough: EnsureAdmin does not add "admin" beside it.
func TestEnsureAdminWithOtherAdmin(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	if _, err := pg.users.Create(ctx, "root", "h", user.RoleAdmin, "bootstrap"); err != nil {
		t.Fatal(err)
	}
	if ok, err := pg.users.EnsureAdmin(ctx, "h2"); ok || err != nil {
		t.Errorf("EnsureAdmin with an admin present = %v, %v, want false, nil", ok, err)
	}
	if _, _, err := pg.users.Credentials(ctx, user.AdminUsername); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("Credentials(admin) = %v, want ErrNotFound", err)
	}
	if ok, err := pg.users.EnsureAdmin(ctx, ""); ok || err != nil {
		t.Errorf("EnsureAdmin(empty hash) with an admin present = %v, %v, want false, nil", ok, err)
	}
}
