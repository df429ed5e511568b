package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/postgres/postgrestest"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestHashAPIKey(t *testing.T) {
	// sha256("abc"), FIPS 180-2 appendix B.1.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := agent.HashAPIKey("abc"); got != want {
		t.Errorf("HashAPIKey(%q) = %s, want %s", "abc", got, want)
	}
}

func TestAgentLifecycle(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)

	labels := map[string]string{"env": "prod", "role": "db"}
	key1 := agent.HashAPIKey("key-1")
	a, err := pg.agents.Create(ctx, "db-1", labels, key1, "alice")
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if uuid.Validate(a.ID) != nil || a.Name != "db-1" || !maps.Equal(a.Labels, labels) || a.CreatedAt.IsZero() || a.LastSeen != nil {
		t.Fatalf("Create = %+v, want a uuid, name db-1, labels %v, created_at set, no last_seen", a, labels)
	}
	got, err := pg.agents.Get(ctx, a.ID)
	if err != nil {
		t.Fatalf("Get(%s) = %v", a.ID, err)
	}
	if got.ID != a.ID || got.Name != a.Name || !maps.Equal(got.Labels, labels) || !got.CreatedAt.Equal(a.CreatedAt) || got.LastSeen != nil {
		t.Errorf("Get(%s) = %+v, want %+v", a.ID, got, a)
	}
	if id, err := pg.agents.AgentIDByKeyHash(ctx, key1); err != nil || id != a.ID {
		t.Errorf("AgentIDByKeyHash(key1) = %q, %v, want %q", id, err, a.ID)
	}

	key2 := agent.HashAPIKey("key-2")
	if err := pg.agents.RotateKey(ctx, a.ID, key2, "bob"); err != nil {
		t.Fatalf("RotateKey = %v", err)
	}
	if _, err := pg.agents.AgentIDByKeyHash(ctx, key1); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("AgentIDByKeyHash(old key) after rotation = %v, want ErrNotFound", err)
	}
	if id, err := pg.agents.AgentIDByKeyHash(ctx, key2); err != nil || id != a.ID {
		t.Errorf("AgentIDByKeyHash(new key) = %q, %v, want %q", id, err, a.ID)
	}

	deleteGone(t, pg.agents.Delete, pg.agents.Get, a.ID, "carol")
	if _, err := pg.agents.AgentIDByKeyHash(ctx, key2); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("AgentIDByKeyHash after Delete = %v, want ErrNotFound", err)
	}

	want := []struct{ actor, action, name string }{
		{"alice", postgres.ActionAgentCreate, "db-1"},
		{"bob", postgres.ActionAgentRotateKey, "db-1"},
		{"carol", postgres.ActionAgentDelete, "db-1"},
	}
	rows := auditRows(t, pg.audit)
	if len(rows) != len(want) {
		t.Fatalf("audit log has %d rows %+v, want %d", len(rows), rows, len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.Actor != w.actor || r.Action != w.action || r.Target != a.ID || r.Details["name"] != w.name || r.At.IsZero() {
			t.Errorf("audit row %d = %+v, want actor %s action %s target %s name %s", i, r, w.actor, w.action, a.ID, w.name)
		}
		for _, hash := range []string{key1, key2} {
			if strings.Contains(fmt.Sprint(r.Details), hash) {
				t.Errorf("audit row %d details %v contain a key hash", i, r.Details)
			}
		}
	}
	if got, ok := rows[0].Details["labels"].(map[string]any); !ok || got["env"] != "prod" || got["role"] != "db" {
		t.Errorf("agent.create details labels = %v, want %v", rows[0].Details["labels"], labels)
	}
}

func TestAgentCreateNilLabels(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	a, err := pg.agents.Create(ctx, "bare", nil, agent.HashAPIKey("k"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pg.agents.Get(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Labels == nil || got.Labels == nil || len(got.Labels) != 0 {
		t.Errorf("Create(nil labels) = %v, Get = %v, want empty non-nil maps", a.Labels, got.Labels)
	}
}

// A failed change stores nothing and writes no audit row.
func TestAgentFailedChangesAreNotStoredOrAudited(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	existing, err := pg.agents.Create(ctx, "web-1", nil, agent.HashAPIKey("web-1"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pg.agents.Create(ctx, "web-2", nil, agent.HashAPIKey("web-2"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	missing := uuid.NewString()

	checkRefused(t, []refusal{
		{"duplicate name", func() error {
			_, err := pg.agents.Create(ctx, "web-1", nil, agent.HashAPIKey("fresh"), "mallory")
			return err
		}, postgres.ErrConflict, ""},
		{"duplicate key hash", func() error {
			_, err := pg.agents.Create(ctx, "web-3", nil, agent.HashAPIKey("web-1"), "mallory")
			return err
		}, postgres.ErrConflict, ""},
		{"empty name", func() error {
			_, err := pg.agents.Create(ctx, "", nil, agent.HashAPIKey("x1"), "mallory")
			return err
		}, postgres.ErrInvalid, ""},
		{"padded name", func() error {
			_, err := pg.agents.Create(ctx, " web-4", nil, agent.HashAPIKey("x2"), "mallory")
			return err
		}, postgres.ErrInvalid, ""},
		{"key not hashed", func() error {
			_, err := pg.agents.Create(ctx, "web-5", nil, "plain-key", "mallory")
			return err
		}, postgres.ErrInvalid, ""},
		{"no actor", func() error {
			_, err := pg.agents.Create(ctx, "web-6", nil, agent.HashAPIKey("x3"), "")
			return err
		}, postgres.ErrInvalid, ""},
		{"rotate to a hash in use", func() error {
			return pg.agents.RotateKey(ctx, other.ID, agent.HashAPIKey("web-1"), "mallory")
		}, postgres.ErrConflict, ""},
		{"rotate missing", func() error {
			return pg.agents.RotateKey(ctx, missing, agent.HashAPIKey("x4"), "mallory")
		}, postgres.ErrNotFound, ""},
		{"rotate non-uuid", func() error {
			return pg.agents.RotateKey(ctx, "not-a-uuid", agent.HashAPIKey("x5"), "mallory")
		}, postgres.ErrNotFound, ""},
		{"delete missing", func() error { return pg.agents.Delete(ctx, missing, "mallory") }, postgres.ErrNotFound, ""},
		{"delete non-uuid", func() error { return pg.agents.Delete(ctx, "'; DROP TABLE agents; --", "mallory") }, postgres.ErrNotFound, ""},
		{"delete without actor", func() error { return pg.agents.Delete(ctx, existing.ID, "") }, postgres.ErrInvalid, ""},
		{"get missing", func() error { _, err := pg.agents.Get(ctx, missing); return err }, postgres.ErrNotFound, ""},
		{"get non-uuid", func() error { _, err := pg.agents.Get(ctx, "web-1"); return err }, postgres.ErrNotFound, ""},
		{"unknown key", func() error {
			_, err := pg.agents.AgentIDByKeyHash(ctx, agent.HashAPIKey("nobody"))
			return err
		}, postgres.ErrNotFound, ""},
	})

	list, total, err := pg.agents.List(ctx, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if total != 2 || len(list) != 2 {
		t.Errorf("after failed changes: %d agents (total %d), want the 2 created", len(list), total)
	}
	if id, err := pg.agents.AgentIDByKeyHash(ctx, agent.HashAPIKey("web-2")); err != nil || id != other.ID {
		t.Errorf("failed rotation changed web-2's key: AgentIDByKeyHash = %q, %v", id, err)
	}
	for _, r := range auditRows(t, pg.audit) {
		if r.Actor != "alice" || r.Action != postgres.ActionAgentCreate {
			t.Errorf("failed change wrote audit row %+v", r)
		}
	}
}

func TestAgentListPaging(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	names := []string{"e", "c", "a", "d", "b"}
	for _, n := range names {
		if _, err := pg.agents.Create(ctx, n, map[string]string{"n": n}, agent.HashAPIKey(n), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		limit, offset int
		want          string
	}{
		{2, 0, "a,b"},
		{2, 2, "c,d"},
		{2, 4, "e"},
		{2, 6, ""},
		{10, 0, "a,b,c,d,e"},
	}
	for _, tt := range tests {
		page, total, err := pg.agents.List(ctx, tt.limit, tt.offset)
		if err != nil {
			t.Fatalf("List(%d, %d) = %v", tt.limit, tt.offset, err)
		}
		var got []string
		for _, a := range page {
			got = append(got, a.Name)
			if a.Labels["n"] != a.Name {
				t.Errorf("List(%d, %d): agent %s has labels %v", tt.limit, tt.offset, a.Name, a.Labels)
			}
		}
		if strings.Join(got, ",") != tt.want || total != len(names) {
			t.Errorf("List(%d, %d) = %v, total %d, want [%s], total %d", tt.limit, tt.offset, got, total, tt.want, len(names))
		}
	}
	for _, c := range [][2]int{{0, 0}, {-5, 0}, {1, -1}} {
		if _, _, err := pg.agents.List(ctx, c[0], c[1]); !errors.Is(err, postgres.ErrInvalid) {
			t.Errorf("List(%d, %d) = %v, want ErrInvalid", c[0], c[1], err)
		}
	}
}

func TestTouchLastSeen(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	a := postgrestest.CreateAgent(t, pg.agents, "a")
	b := postgrestest.CreateAgent(t, pg.agents, "b")
	idle := postgrestest.CreateAgent(t, pg.agents, "idle")
	// timestamptz keeps microseconds.
	t0 := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	t1, t2 := t0.Add(time.Minute+time.Microsecond), t0.Add(2*time.Minute)

	counted, statements := testenv.CountingPostgres(t, pg.url)
	touch := postgres.NewAgentStore(counted)
	step := func(seen map[string]time.Time, wantA, wantB *time.Time) {
		t.Helper()
		before := statements.Load()
		if err := touch.TouchLastSeen(ctx, seen); err != nil {
			t.Fatalf("TouchLastSeen(%v) = %v", seen, err)
		}
		if n := statements.Load() - before; n > 1 {
			t.Errorf("TouchLastSeen(%v) sent %d statements, want at most 1", seen, n)
		}
		for _, c := range []struct {
			id   string
			want *time.Time
		}{{a.ID, wantA}, {b.ID, wantB}} {
			got := postgrestest.LastSeen(t, pg.agents, c.id)
			if (got == nil) != (c.want == nil) || (got != nil && !got.Equal(*c.want)) {
				t.Errorf("after TouchLastSeen(%v): last_seen(%s) = %v, want %v", seen, c.id, got, c.want)
			}
		}
	}

	before := statements.Load()
	step(map[string]time.Time{a.ID: t1, b.ID: t0}, &t1, &t0)
	if n := statements.Load() - before; n != 1 {
		t.Errorf("TouchLastSeen of 2 agents sent %d statements, want exactly 1", n)
	}
	// Older times never move last_seen back; newer ones move it forward.
	step(map[string]time.Time{a.ID: t0, b.ID: t2}, &t1, &t2)
	// Unknown and malformed ids are ignored; the rest still apply.
	step(map[string]time.Time{uuid.NewString(): t2, "garbage": t2, a.ID: t2}, &t2, &t2)
	// Only malformed ids: nothing to send.
	before = statements.Load()
	step(map[string]time.Time{"garbage": t2}, &t2, &t2)
	step(nil, &t2, &t2)
	if n := statements.Load() - before; n != 0 {
		t.Errorf("TouchLastSeen with nothing to update sent %d statements, want 0", n)
	}
	// Two spellings of one id: the latest time wins, whatever the join picks.
	t3 := t2.Add(time.Minute)
	step(map[string]time.Time{strings.ToUpper(b.ID): t3, b.ID: t2}, &t2, &t3)

	if got := postgrestest.LastSeen(t, pg.agents, idle.ID); got != nil {
		t.Errorf("last_seen of an agent never touched = %v, want nil", got)
	}
}
