package postgres_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

func TestChannelLifecycle(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)

	in := alert.Channel{
		ID: "ignored", Name: "ops", Type: "webhook", URL: "https://hooks.example.com/a", Secret: "s3cret",
		Headers: map[string]string{"Authorization": "Bearer token-value"}, Enabled: true, RepeatInterval: 4 * time.Hour,
	}
	c, err := pg.channels.Create(ctx, in, "alice")
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if uuid.Validate(c.ID) != nil || c.Name != in.Name || c.Type != in.Type || c.URL != in.URL || c.Secret != in.Secret ||
		!maps.Equal(c.Headers, in.Headers) || !c.Enabled || c.RepeatInterval != 4*time.Hour || c.CreatedAt.IsZero() || !c.UpdatedAt.Equal(c.CreatedAt) {
		t.Fatalf("Create = %+v, want %+v with a new id and timestamps", c, in)
	}
	if got, err := pg.channels.Get(ctx, c.ID); err != nil || got.Secret != "s3cret" || got.Name != "ops" || !maps.Equal(got.Headers, in.Headers) {
		t.Errorf("Get = %+v, %v; want the channel with its secret", got, err)
	}
	bare, err := pg.channels.Create(ctx, alert.Channel{Name: "bare", Type: "webhook", URL: "http://e.com"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if bare.Headers == nil || len(bare.Headers) != 0 || bare.Secret != "" || bare.Enabled || bare.RepeatInterval != 0 || bare.GroupBy == nil || len(bare.GroupBy) != 0 || bare.GroupWait != 0 {
		t.Errorf("Create(bare) = %+v, want empty headers, no secret, disabled, no repeat", bare)
	}

	mail, err := pg.channels.Create(ctx, alert.Channel{Name: "mail", Type: alert.ChannelTypeEmail, To: []string{"ops@example.com"}, Enabled: true}, "alice")
	if err != nil || !slices.Equal(mail.To, []string{"ops@example.com"}) || mail.URL != "" {
		t.Fatalf("Create(email) = %+v, %v, want the recipients kept", mail, err)
	}
	if err := pg.channels.Delete(ctx, mail.ID, "alice"); err != nil {
		t.Fatal(err)
	}

	upd := c
	upd.Name = "ops-2"
	upd.URL = "https://hooks.example.com/b"
	upd.Secret = ""
	upd.Headers = nil
	upd.Enabled = false
	upd.RepeatInterval = 90 * time.Minute
	upd.GroupBy, upd.GroupWait = []string{"rule_id", "agent"}, 10*time.Second
	got, err := pg.channels.Update(ctx, upd, "bob")
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	if got.Name != "ops-2" || got.URL != upd.URL || got.Secret != "" || len(got.Headers) != 0 || got.Enabled || got.RepeatInterval != 90*time.Minute ||
		!slices.Equal(got.GroupBy, upd.GroupBy) || got.GroupWait != 10*time.Second ||
		!got.CreatedAt.Equal(c.CreatedAt) || got.UpdatedAt.Before(c.UpdatedAt) {
		t.Errorf("Update = %+v, want %+v with created_at kept", got, upd)
	}
	list, err := pg.channels.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "bare" || list[1].Name != "ops-2" {
		t.Errorf("List = %+v, want [bare ops-2]", list)
	}
	deleteGone(t, pg.channels.Delete, pg.channels.Get, c.ID, "carol")

	var rows []postgres.AuditEntry
	for _, r := range auditRows(t, pg.audit) {
		if r.Target == c.ID {
			rows = append(rows, r)
		}
	}
	want := []struct{ actor, action, name string }{
		{"alice", postgres.ActionChannelCreate, "ops"},
		{"bob", postgres.ActionChannelUpdate, "ops-2"},
		{"carol", postgres.ActionChannelDelete, "ops-2"},
	}
	if len(rows) != len(want) {
		t.Fatalf("channel audit rows = %+v, want %d", rows, len(want))
	}
	for i, w := range want {
		if rows[i].Actor != w.actor || rows[i].Action != w.action || rows[i].Details["name"] != w.name {
			t.Errorf("audit row %d = %+v, want %s %s name %s", i, rows[i], w.actor, w.action, w.name)
		}
		if s := fmt.Sprint(rows[i].Details); strings.Contains(s, "s3cret") || strings.Contains(s, "token-value") {
			t.Errorf("audit row %d details %s hold the secret or a header value", i, s)
		}
	}
	if rows[0].Details["signed"] != true || fmt.Sprint(rows[0].Details["headers"]) != "[Authorization]" {
		t.Errorf("channel.create details = %v, want signed and header names", rows[0].Details)
	}
}

func TestChannelFailedChangesAreNotStoredOrAudited(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	taken := newChannel(t, pg.channels, "taken")
	other := newChannel(t, pg.channels, "other")
	auditBefore := len(auditRows(t, pg.audit))

	checkRefused(t, []refusal{
		{"create invalid url", func() error {
			_, err := pg.channels.Create(ctx, alert.Channel{Name: "x", Type: "webhook", URL: "nope"}, "bob")
			return err
		}, postgres.ErrInvalid, "url"},
		{"create taken name", func() error {
			_, err := pg.channels.Create(ctx, alert.Channel{Name: "taken", Type: "webhook", URL: "https://e.com"}, "bob")
			return err
		}, postgres.ErrConflict, ""},
		{"create without actor", func() error {
			_, err := pg.channels.Create(ctx, alert.Channel{Name: "y", Type: "webhook", URL: "https://e.com"}, "")
			return err
		}, postgres.ErrInvalid, ""},
		{"update missing", func() error {
			_, err := pg.channels.Update(ctx, alert.Channel{ID: uuid.NewString(), Name: "z", Type: "webhook", URL: "https://e.com"}, "bob")
			return err
		}, postgres.ErrNotFound, ""},
		{"update to taken name", updating(ctx, pg.channels.Update, other, func(c *alert.Channel) { c.Name = "taken" }), postgres.ErrConflict, ""},
		{"update invalid type", updating(ctx, pg.channels.Update, other, func(c *alert.Channel) { c.Type = "sms" }), postgres.ErrInvalid, "type"},
		{"delete missing", func() error { return pg.channels.Delete(ctx, uuid.NewString(), "bob") }, postgres.ErrNotFound, ""},
		{"get not a uuid", func() error { _, err := pg.channels.Get(ctx, "ops"); return err }, postgres.ErrNotFound, ""},
	})
	list, err := pg.channels.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != other.ID || list[0].Type != "webhook" || list[1].ID != taken.ID {
		t.Errorf("channels after failed changes = %+v, want the two created unchanged", list)
	}
	checkAuditLen(t, pg.audit, auditBefore)
}
