package postgres_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/silence"
)

func TestSilenceLifecycle(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)

	now := time.Now().UTC().Truncate(time.Microsecond)
	start, end := now.Add(-time.Hour), now.Add(time.Hour)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	startBerlin := start.In(berlin)
	current := silence.Silence{
		ID:       "ignored",
		Matchers: silence.Matchers{RuleID: "5b0c6a52-0000-4000-8000-0000000000a1", AgentID: "9d4c1f6e-0000-4000-8000-0000000000b1", Labels: map[string]string{"team": "db"}},
		StartsAt: &startBerlin, EndsAt: &end, Comment: "migration", CreatedBy: "mallory",
	}
	endedStart, endedEnd := now.Add(-2*time.Hour), now.Add(-time.Minute)
	ended := silence.Silence{Matchers: silence.Matchers{AgentID: "9d4c1f6e-0000-4000-8000-0000000000b2"}, StartsAt: &endedStart, EndsAt: &endedEnd}
	weekly := silence.Silence{
		Matchers: silence.Matchers{Labels: map[string]string{"env": "dev"}},
		Weekly:   &silence.Weekly{Days: []string{"sat", "sun"}, Start: "22:00", End: "06:00", TimeZone: "Europe/Berlin"},
		Comment:  "nights",
	}

	var created []silence.Silence
	for _, in := range []silence.Silence{current, ended, weekly} {
		s, err := pg.silences.Create(ctx, in, "alice")
		if err != nil {
			t.Fatalf("Create(%+v) = %v", in, err)
		}
		if uuid.Validate(s.ID) != nil || s.CreatedBy != "alice" || s.CreatedAt.IsZero() {
			t.Fatalf("Create = %+v, want a new uuid, created_by alice, created_at set", s)
		}
		want := in
		want.ID, want.CreatedBy, want.CreatedAt = s.ID, s.CreatedBy, s.CreatedAt
		if want.StartsAt != nil {
			st, en := want.StartsAt.UTC(), want.EndsAt.UTC()
			want.StartsAt, want.EndsAt = &st, &en
		}
		if !reflect.DeepEqual(s, want) {
			t.Errorf("Create = %+v, want %+v", s, want)
		}
		got, err := pg.silences.Get(ctx, s.ID)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("Get = %+v, %v; want %+v", got, err, s)
		}
		created = append(created, s)
	}
	if !created[0].Active(now) || created[1].Active(now) {
		t.Errorf("stored one-off silences active at now = %v, %v; want true, false", created[0].Active(now), created[1].Active(now))
	}

	ids := func(ss []silence.Silence) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}
	all, err := pg.silences.List(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{created[2].ID, created[1].ID, created[0].ID}; !reflect.DeepEqual(ids(all), want) {
		t.Errorf("List(includeExpired) = %v, want %v (newest first)", ids(all), want)
	}
	live, err := pg.silences.List(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{created[2].ID, created[0].ID}; !reflect.DeepEqual(ids(live), want) {
		t.Errorf("List(without expired) = %v, want %v (the ended one-off left out)", ids(live), want)
	}

	deleteGone(t, pg.silences.Delete, pg.silences.Get, created[0].ID, "bob")

	rows := auditRows(t, pg.audit)
	want := []struct{ actor, action, target string }{
		{"alice", postgres.ActionSilenceCreate, created[0].ID},
		{"alice", postgres.ActionSilenceCreate, created[1].ID},
		{"alice", postgres.ActionSilenceCreate, created[2].ID},
		{"bob", postgres.ActionSilenceDelete, created[0].ID},
	}
	if len(rows) != len(want) {
		t.Fatalf("audit rows = %+v, want %d", rows, len(want))
	}
	for i, w := range want {
		if rows[i].Actor != w.actor || rows[i].Action != w.action || rows[i].Target != w.target {
			t.Errorf("audit row %d = %+v, want %s %s %s", i, rows[i], w.actor, w.action, w.target)
		}
	}
	if rows[3].Details["comment"] != "migration" || rows[2].Details["weekly"] == nil {
		t.Errorf("audit details = %v, %v; want the deleted silence's comment and the weekly window", rows[3].Details, rows[2].Details)
	}
}

func TestSilenceFailedChangesAreNotStoredOrAudited(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	start := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(time.Hour)

	checkRefused(t, []refusal{
		{"no matchers", func() error {
			_, err := pg.silences.Create(ctx, silence.Silence{StartsAt: &start, EndsAt: &end}, "alice")
			return err
		}, postgres.ErrInvalid, "matchers"},
		{"end before start", func() error {
			_, err := pg.silences.Create(ctx, silence.Silence{Matchers: silence.Matchers{RuleID: "5b0c6a52-0000-4000-8000-0000000000a1"}, StartsAt: &end, EndsAt: &start}, "alice")
			return err
		}, postgres.ErrInvalid, "ends_at"},
		{"bad time zone", func() error {
			_, err := pg.silences.Create(ctx, silence.Silence{Matchers: silence.Matchers{RuleID: "5b0c6a52-0000-4000-8000-0000000000a1"},
				Weekly: &silence.Weekly{Days: []string{"mon"}, Start: "01:00", End: "02:00", TimeZone: "Nowhere/Town"}}, "alice")
			return err
		}, postgres.ErrInvalid, "weekly.time_zone"},
		{"no actor", func() error {
			_, err := pg.silences.Create(ctx, silence.Silence{Matchers: silence.Matchers{RuleID: "5b0c6a52-0000-4000-8000-0000000000a1"}, StartsAt: &start, EndsAt: &end}, "")
			return err
		}, postgres.ErrInvalid, ""},
		{"delete missing", func() error { return pg.silences.Delete(ctx, uuid.NewString(), "alice") }, postgres.ErrNotFound, ""},
		{"get not a uuid", func() error { _, err := pg.silences.Get(ctx, "s1"); return err }, postgres.ErrNotFound, ""},
	})
	if all, err := pg.silences.List(ctx, true); err != nil || len(all) != 0 {
		t.Errorf("List after failed changes = %+v, %v; want none", all, err)
	}
	checkAuditLen(t, pg.audit, 0)
}
