package alerter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// provisionedInflux returns a client on a fresh, provisioned database of the shared server.
func provisionedInflux(t *testing.T) *influx.Client {
	t.Helper()
	db := testenv.Influx(t)
	client, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Database, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	if err := client.Provision(t.Context()); err != nil {
		t.Fatalf("Provision = %v", err)
	}
	return client
}

// historyEnv is what the history tests share: agent web-1 with the CPU rule (critical above 80,
// recovered below 70), a replica evaluating its batches, the alert event store and a provisioned
// InfluxDB.
type historyEnv struct {
	*env
	influx *influx.Client
	events *postgres.AlertEventStore
	agent  agent.Agent
	rep    *replica
}

func newHistoryEnv(t *testing.T) historyEnv {
	t.Helper()
	e := newEnv(t)
	h := historyEnv{env: e, influx: provisionedInflux(t), events: postgres.NewAlertEventStore(e.db)}
	h.agent = e.createAgent(t, "web-1", nil)
	e.createRule(t, cpuRule(0))
	h.rep = e.replica(t)
	return h
}

// history returns the agent's rows of alert_events.
func (h historyEnv) history(t *testing.T) []postgres.AlertEvent {
	t.Helper()
	evs, total, err := h.events.History(t.Context(), postgres.HistoryFilter{AgentID: h.agent.ID, Limit: 100})
	if err != nil {
		t.Fatalf("History = %v", err)
	}
	if total != len(evs) {
		t.Fatalf("History total %d, page %d", total, len(evs))
	}
	return evs
}

func TestHistoryRecordsEachEventOnce(t *testing.T) {
	e := newHistoryEnv(t)
	handle(t, e.rep, entry(e.agent.ID, cpu{"0", 85, at(0)}, cpu{"1", 85, at(0)})) // two series fire at the same instant
	handle(t, e.rep, entry(e.agent.ID, cpu{"0", 65, at(1)}))                      // one resolves
	events := e.streamEvents(t)
	if len(events) != 3 {
		t.Fatalf("transitions %v, want 3", transitions(events))
	}
	// Every entry appended a second time, as a redelivery would hand it over again.
	key := alertredis.StreamKey(e.prefix, alertredis.Shard(e.agent.ID, testShards))
	entries, err := e.rdb.XRange(t.Context(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range entries {
		if err := e.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: key, Values: m.Values}).Err(); err != nil {
			t.Fatal(err)
		}
	}

	cfg := stream.ConsumerConfig{Streams: alertredis.StreamKeys(e.prefix, testShards), DeadLetter: e.prefix + "alerts:dead", Group: alerter.HistoryGroup,
		Consumer: "test-1", MaxWait: 10 * time.Millisecond, Block: 50 * time.Millisecond}
	consumer, err := stream.NewConsumer(e.rdb, cfg, alerter.NewHistory(e.events, e.influx, nil, discard, nil).Handle, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- consumer.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer.Run() after cancel = %v, want nil", err)
		}
	}()

	testenv.Eventually(t, 10*time.Second, func() string {
		groups, err := e.rdb.XInfoGroups(t.Context(), key).Result()
		if err != nil || len(groups) != 1 {
			return fmt.Sprintf("XINFO GROUPS = %v, %v", groups, err)
		}
		if g := groups[0]; g.EntriesRead != 6 || g.Pending != 0 {
			return fmt.Sprintf("group read %d entries with %d pending, want 6 and 0", g.EntriesRead, g.Pending)
		}
		return ""
	})
	rows := e.history(t)
	if len(rows) != 3 {
		t.Fatalf("alert_events holds %d rows for 6 entries of 3 events, want 3", len(rows))
	}
	byID := map[string]postgres.AlertEvent{}
	for _, row := range rows {
		byID[row.ID] = row
	}
	for _, ev := range events {
		row, ok := byID[ev.ID]
		if !ok || row.AlertID != ev.AlertID || row.To != string(ev.To) || !row.At.Equal(ev.At) || row.Summary != ev.Summary {
			t.Errorf("alert_events row %+v, want event %+v", row, ev)
		}
		if ev.To == "resolved" && (row.RecoveryValue == nil || *row.RecoveryValue != 65) {
			t.Errorf("resolved row recovery value %v, want 65", row.RecoveryValue)
		}
	}
	if n, err := e.influx.CountPoints(t.Context(), alerter.Measurement, e.agent.ID); err != nil || n != 3 {
		t.Errorf("InfluxDB %s points = %d (%v), want 3 (the series firing together are two points)", alerter.Measurement, n, err)
	}
	recs, err := e.influx.Query(t.Context(), fmt.Sprintf(`from(bucket: %s)
  |> range(start: 2026-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "alerts" and r.status == "resolved" and r._field == "recovery_value")`,
		influx.FluxString(e.influx.Bucket())))
	if err != nil || len(recs) != 1 || recs[0].Value() != 65.0 || recs[0].ValueByKey("rule_id") != events[0].RuleID ||
		recs[0].ValueByKey("severity") != "critical" {
		t.Errorf("InfluxDB resolved recovery_value records = %v (%v), want one of 65 tagged with rule and severity", recs, err)
	}
}

func TestHistoryKeepsBatchUntilInfluxIsReadyAndRejectsGarbage(t *testing.T) {
	e := newHistoryEnv(t)
	handle(t, e.rep, entry(e.agent.ID, cpu{"0", 85, at(0)}))
	ev := e.streamEvents(t)[0]

	good := eventMessage(t, ev)
	garbage := &stream.Message{Stream: "alerts", ID: "2-0", Msg: message.NewMessage(watermill.NewUUID(), []byte(`{"id":`))}
	noID := eventMessage(t, alert.Event{AlertID: "x"})
	noAgent := ev
	noAgent.ID, noAgent.AgentID = "other-id", ""
	invalid := eventMessage(t, noAgent)

	ready := make(chan struct{})
	h := alerter.NewHistory(e.events, e.influx, ready, discard, nil)
	batch := []*stream.Message{good, garbage, noID, invalid}
	err := h.Handle(t.Context(), batch)
	if err == nil || !strings.Contains(err.Error(), "not provisioned") {
		t.Fatalf("Handle before InfluxDB is ready = %v, want a transient error", err)
	}
	if rows := e.history(t); len(rows) != 1 {
		t.Errorf("alert_events rows while InfluxDB is not ready = %d, want 1: PostgreSQL need not wait", len(rows))
	}
	close(ready)
	if err := h.Handle(t.Context(), batch); err != nil {
		t.Fatalf("Handle once ready = %v", err)
	}
	for m, want := range map[*stream.Message]string{garbage: "decoding", noID: "missing id", invalid: "agent_id is required"} {
		if err := m.Rejected(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("entry %s: Rejected() = %v, want an error containing %q", m.ID, err, want)
		}
	}
	if err := good.Rejected(); err != nil {
		t.Errorf("good entry rejected: %v", err)
	}
	if rows := e.history(t); len(rows) != 1 {
		t.Errorf("alert_events rows after the retry = %d, want still 1", len(rows))
	}
	if n, err := e.influx.CountPoints(t.Context(), alerter.Measurement, e.agent.ID); err != nil || n != 1 {
		t.Errorf("InfluxDB points = %d (%v), want 1", n, err)
	}

	// A database error is transient: returned, nothing rejected.
	e.db.Close()
	if err := h.Handle(t.Context(), []*stream.Message{eventMessage(t, ev)}); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Handle with PostgreSQL closed = %v, want an error", err)
	}
}

// eventMessage wraps ev as the history consumer receives it.
func eventMessage(t *testing.T, ev alert.Event) *stream.Message {
	t.Helper()
	msg, err := alertredis.Message(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &stream.Message{Stream: "alerts", ID: "1-0", Deliveries: 1, Msg: msg}
}
