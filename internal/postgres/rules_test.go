package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

func fp(v float64) *float64 { return &v }

func cpuRule(name string) alert.Rule {
	return alert.Rule{
		Name:        name,
		Kind:        alert.KindThreshold,
		Metric:      "cpu.usage_percent",
		Tags:        map[string]string{"core": "total"},
		Agents:      alert.AgentSelector{Labels: map[string]string{"env": "prod"}},
		Aggregation: alert.AggAvg,
		Window:      alert.Duration(5 * time.Minute),
		Operator:    alert.OpGT,
		Thresholds: alert.Thresholds{
			Warning:  &alert.Threshold{Value: fp(80), Recovery: fp(70)},
			Critical: &alert.Threshold{Value: fp(95)},
		},
		For:     alert.Duration(2 * time.Minute),
		Labels:  map[string]string{"team": "infra"},
		Summary: "{{.Rule}} on {{.Agent}}",
		Enabled: true,
	}
}

func silentRule(name string) alert.Rule {
	return alert.Rule{
		Name: name, Kind: alert.KindAgentSilent, After: alert.Duration(5 * time.Minute),
		Severity: alert.SeverityCritical, Enabled: false,
	}
}

func newChannel(t *testing.T, store *postgres.ChannelStore, name string) alert.Channel {
	t.Helper()
	c, err := store.Create(context.Background(), alert.Channel{
		Name: name, Type: alert.ChannelTypeWebhook, URL: "https://hooks.example.com/" + name, Enabled: true,
	}, "alice")
	if err != nil {
		t.Fatalf("ChannelStore.Create(%s) = %v", name, err)
	}
	return c
}

// sameRule compares rules by their JSON, the form the store keeps and the API exchanges.
func sameRule(t *testing.T, got, want alert.Rule) bool {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	return string(g) == string(w)
}

func TestRuleLifecycle(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	ch := newChannel(t, pg.channels, "ops")

	in := cpuRule("CPU busy")
	in.ID = "ignored"
	in.Channels = []string{strings.ToUpper(ch.ID)}
	created, err := pg.rules.Create(ctx, in, "alice")
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if uuid.Validate(created.ID) != nil || created.ID == in.ID {
		t.Fatalf("Create assigned id %q, want a new uuid", created.ID)
	}
	want := in
	want.ID = created.ID
	want.Channels = []string{ch.ID} // stored in lowercase
	if !sameRule(t, created, want) {
		t.Errorf("Create = %+v, want %+v", created, want)
	}
	got, err := pg.rules.Get(ctx, created.ID)
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	if !sameRule(t, got, want) || !reflect.DeepEqual(got, created) {
		t.Errorf("Get = %+v, want %+v", got, want)
	}

	silent, err := pg.rules.Create(ctx, silentRule("Agent silent"), "alice")
	if err != nil {
		t.Fatalf("Create(agent_silent) = %v", err)
	}
	list, err := pg.rules.List(ctx)
	list = withoutBuiltins(list)
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	if len(list) != 2 || list[0].ID != silent.ID || list[1].ID != created.ID || list[0].Enabled || !list[1].Enabled {
		t.Errorf("List = %+v, want [agent.Agent silent (disabled), CPU busy (enabled)]", list)
	}

	upd := got
	upd.Name = "CPU very busy"
	upd.Thresholds.Critical = &alert.Threshold{Value: fp(98), Recovery: fp(90)}
	upd.Channels = nil
	upd.Enabled = false
	updated, err := pg.rules.Update(ctx, upd, "bob")
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	if !sameRule(t, updated, upd) {
		t.Errorf("Update = %+v, want %+v", updated, upd)
	}
	if got, err := pg.rules.Get(ctx, created.ID); err != nil || !sameRule(t, got, upd) {
		t.Errorf("Get after Update = %+v, %v; want %+v", got, err, upd)
	}
	// The rule no longer names the channel, so the channel can go.
	if err := pg.channels.Delete(ctx, ch.ID, "bob"); err != nil {
		t.Errorf("deleting a channel no rule names = %v, want nil", err)
	}

	deleteGone(t, pg.rules.Delete, pg.rules.Get, created.ID, "carol")

	var ruleRows []postgres.AuditEntry
	for _, r := range auditRows(t, pg.audit) {
		if strings.HasPrefix(r.Action, "rule.") {
			ruleRows = append(ruleRows, r)
		}
	}
	wantAudit := []struct{ actor, action, target, name string }{
		{"alice", postgres.ActionRuleCreate, created.ID, "CPU busy"},
		{"alice", postgres.ActionRuleCreate, silent.ID, "Agent silent"},
		{"bob", postgres.ActionRuleUpdate, created.ID, "CPU very busy"},
		{"carol", postgres.ActionRuleDelete, created.ID, "CPU very busy"},
	}
	if len(ruleRows) != len(wantAudit) {
		t.Fatalf("rule audit rows = %+v, want %d", ruleRows, len(wantAudit))
	}
	for i, w := range wantAudit {
		r := ruleRows[i]
		if r.Actor != w.actor || r.Action != w.action || r.Target != w.target || r.Details["name"] != w.name {
			t.Errorf("audit row %d = %+v, want %s %s %s name %q", i, r, w.actor, w.action, w.target, w.name)
		}
	}
	if spec, ok := ruleRows[2].Details["rule"].(map[string]any); !ok || spec["metric"] != "cpu.usage_percent" || spec["enabled"] != false {
		t.Errorf("rule.update details rule = %v, want the updated rule's JSON", ruleRows[2].Details["rule"])
	}
}

// A failed change stores nothing and writes no audit row.
func TestRuleFailedChangesAreNotStoredOrAudited(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	existing, err := pg.rules.Create(ctx, cpuRule("taken"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pg.rules.Create(ctx, cpuRule("other"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	auditBefore := len(auditRows(t, pg.audit))

	noThresholds := cpuRule("x")
	noThresholds.Thresholds = alert.Thresholds{}
	badRecovery := cpuRule("x")
	badRecovery.Thresholds.Warning.Recovery = fp(85)
	notUUID := cpuRule("x")
	notUUID.Channels = []string{"not-a-uuid"}
	unknownChannel := cpuRule("x")
	unknownChannel.Channels = []string{uuid.NewString()}
	sameChannelTwice := cpuRule("x")
	id := uuid.NewString()
	sameChannelTwice.Channels = []string{id, strings.ToUpper(id)}
	missing := cpuRule("x")
	missing.ID = uuid.NewString()
	renameToTaken := other
	renameToTaken.Name = "taken"

	checkRefused(t, []refusal{
		{"create invalid", func() error { _, err := pg.rules.Create(ctx, noThresholds, "bob"); return err }, postgres.ErrInvalid, "thresholds"},
		{"create bad recovery", func() error { _, err := pg.rules.Create(ctx, badRecovery, "bob"); return err }, postgres.ErrInvalid, "thresholds.warning.recovery"},
		{"create channel not a uuid", func() error { _, err := pg.rules.Create(ctx, notUUID, "bob"); return err }, postgres.ErrInvalid, "channels"},
		{"create unknown channel", func() error { _, err := pg.rules.Create(ctx, unknownChannel, "bob"); return err }, postgres.ErrInvalid, "channels"},
		{"create same channel twice", func() error { _, err := pg.rules.Create(ctx, sameChannelTwice, "bob"); return err }, postgres.ErrInvalid, "channels"},
		{"create taken name", func() error { _, err := pg.rules.Create(ctx, cpuRule("taken"), "bob"); return err }, postgres.ErrConflict, ""},
		{"create without actor", func() error { _, err := pg.rules.Create(ctx, cpuRule("y"), ""); return err }, postgres.ErrInvalid, ""},
		{"update missing", func() error { _, err := pg.rules.Update(ctx, missing, "bob"); return err }, postgres.ErrNotFound, ""},
		{"update id not a uuid", updating(ctx, pg.rules.Update, existing, func(r *alert.Rule) { r.ID = "nope" }), postgres.ErrNotFound, ""},
		{"update invalid", updating(ctx, pg.rules.Update, existing, func(r *alert.Rule) { r.Metric = "nodot" }), postgres.ErrInvalid, "metric"},
		{"update unknown channel", updating(ctx, pg.rules.Update, existing, func(r *alert.Rule) { r.Channels = []string{uuid.NewString()} }), postgres.ErrInvalid, "channels"},
		{"update to taken name", func() error { _, err := pg.rules.Update(ctx, renameToTaken, "bob"); return err }, postgres.ErrConflict, ""},
		{"delete missing", func() error { return pg.rules.Delete(ctx, uuid.NewString(), "bob") }, postgres.ErrNotFound, ""},
		{"delete not a uuid", func() error { return pg.rules.Delete(ctx, "x", "bob") }, postgres.ErrNotFound, ""},
		{"get missing", func() error { _, err := pg.rules.Get(ctx, uuid.NewString()); return err }, postgres.ErrNotFound, ""},
	})

	list, err := pg.rules.List(ctx)
	list = withoutBuiltins(list)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !sameRule(t, list[1], existing) || !sameRule(t, list[0], other) {
		t.Errorf("rules after failed changes = %+v, want only the two created unchanged", list)
	}
	checkAuditLen(t, pg.audit, auditBefore)
	var links int
	if err := pg.db.GetContext(ctx, &links, `SELECT count(*) FROM alert_rule_channels`); err != nil {
		t.Fatal(err)
	}
	if links != 0 {
		t.Errorf("alert_rule_channels has %d rows after failed changes, want 0", links)
	}
}

// A channel that a rule names cannot be deleted; deleting the rule frees it, and the rule's
// events stay in the history.
func TestRuleChannelReferences(t *testing.T) {
	ctx := context.Background()
	pg := newStores(t)
	ch := newChannel(t, pg.channels, "ops")
	r := cpuRule("uses ops")
	r.Channels = []string{ch.ID}
	r, err := pg.rules.Create(ctx, r, "alice")
	if err != nil {
		t.Fatal(err)
	}
	err = pg.channels.Delete(ctx, ch.ID, "bob")
	if !errors.Is(err, postgres.ErrConflict) || !strings.Contains(err.Error(), "uses ops") {
		t.Fatalf("Delete(channel in use) = %v, want ErrConflict naming the rule", err)
	}
	if _, err := pg.channels.Get(ctx, ch.ID); err != nil {
		t.Fatalf("channel gone after refused delete: %v", err)
	}

	ev := sampleEvent("ev-1", time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	ev.RuleID = r.ID
	if err := pg.events.Insert(ctx, []postgres.AlertEvent{ev}); err != nil {
		t.Fatal(err)
	}
	if err := pg.rules.Delete(ctx, r.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := pg.channels.Delete(ctx, ch.ID, "bob"); err != nil {
		t.Errorf("Delete(channel no longer in use) = %v, want nil", err)
	}
	got, total, err := pg.events.History(ctx, postgres.HistoryFilter{RuleID: r.ID, Limit: 10})
	if err != nil || total != 1 || len(got) != 1 || got[0].ID != "ev-1" {
		t.Errorf("History(deleted rule) = %+v, %d, %v; want its event kept", got, total, err)
	}
}
