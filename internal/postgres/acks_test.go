package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

func TestAckRecordAndList(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	if err := pg.acks.Record(ctx, "alert-1", "bob", "looking", t0.Add(time.Minute)); err != nil {
		t.Fatalf("Record = %v", err)
	}
	if err := pg.acks.Record(ctx, "alert-1", "alice", "", t0); err != nil {
		t.Fatalf("Record = %v", err)
	}
	if err := pg.acks.Record(ctx, "alert-2", "carol", "other alert", t0); err != nil {
		t.Fatalf("Record = %v", err)
	}
	got, err := pg.acks.List(ctx, "alert-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []postgres.AlertAck{
		{AlertID: "alert-1", By: "alice", Comment: "", At: t0},
		{AlertID: "alert-1", By: "bob", Comment: "looking", At: t0.Add(time.Minute)},
	}
	if len(got) != len(want) {
		t.Fatalf("List(alert-1) = %+v, want %+v", got, want)
	}
	for i := range want {
		g := got[i]
		if g.ID == 0 || g.AlertID != want[i].AlertID || g.By != want[i].By || g.Comment != want[i].Comment || !g.At.Equal(want[i].At) || g.At.Location() != time.UTC {
			t.Errorf("List(alert-1)[%d] = %+v, want %+v (oldest first, UTC)", i, g, want[i])
		}
	}
	if none, err := pg.acks.List(ctx, "never-acked"); err != nil || none == nil || len(none) != 0 {
		t.Errorf("List(never-acked) = %#v, %v; want an empty slice", none, err)
	}

	rows := auditRows(t, pg.audit)
	if len(rows) != 3 {
		t.Fatalf("audit rows = %+v, want 3", rows)
	}
	if r := rows[0]; r.Actor != "bob" || r.Action != postgres.ActionAlertAck || r.Target != "alert-1" || r.Details["comment"] != "looking" {
		t.Errorf("audit row = %+v, want bob's alert.ack of alert-1 with its comment", r)
	}
}

func TestAckRecordRefusesInvalid(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name                 string
		alertID, by, comment string
		at                   time.Time
	}{
		{"no alert id", "", "bob", "", at},
		{"no user", "a1", "", "", at},
		{"no time", "a1", "bob", "", time.Time{}},
		{"long comment", "a1", "bob", strings.Repeat("c", postgres.MaxAckCommentLen+1), at},
		{"NUL in comment", "a1", "bob", "a\x00", at},
	}
	for _, tt := range tests {
		if err := pg.acks.Record(ctx, tt.alertID, tt.by, tt.comment, tt.at); !errors.Is(err, postgres.ErrInvalid) {
			t.Errorf("%s: Record(%q, %q, %q, %v) = %v, want ErrInvalid", tt.name, tt.alertID, tt.by, tt.comment, tt.at, err)
		}
	}
	if got, err := pg.acks.List(ctx, "a1"); err != nil || len(got) != 0 {
		t.Errorf("List after refused records = %+v, %v; want none", got, err)
	}
	if n := len(auditRows(t, pg.audit)); n != 0 {
		t.Errorf("audit log has %d rows, want 0", n)
	}
}
