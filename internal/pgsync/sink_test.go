package pgsync_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentmonitor/agentmonitor/internal/pgsync"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/postgres/postgrestest"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

var discard = slog.New(slog.DiscardHandler)

// entry builds a stream message as the gateway publishes it; an empty value leaves the key out.
func entry(agent, receivedAt string) *stream.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte("cpu,agent="+agent+" usage=1 1\n"))
	if agent != "" {
		msg.Metadata.Set(stream.MetaAgent, agent)
	}
	if receivedAt != "" {
		msg.Metadata.Set(stream.MetaReceivedAt, receivedAt)
	}
	msg.Metadata.Set(stream.MetaPoints, "1")
	return &stream.Message{Stream: "metrics:{0}", ID: "1-0", Deliveries: 1, Msg: msg}
}

// metric returns the single series of the metric family name gathered from reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather = %v", err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0]
		}
	}
	t.Fatalf("metric %s is not registered", name)
	return nil
}

// histogram returns the sample count and sum of histogram name.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	h := metric(t, reg, name).GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}

func ns(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// createAgent registers an agent and returns its id.
func createAgent(t *testing.T, agents *postgres.AgentStore, name string) string {
	t.Helper()
	return postgrestest.CreateAgent(t, agents, name).ID
}

func TestHandleCoalescesAndRejectsGarbledMetadata(t *testing.T) {
	ctx := context.Background()
	db, dbURL := testenv.Postgres(t)
	agents := postgres.NewAgentStore(db)
	a, b, idle := createAgent(t, agents, "a"), createAgent(t, agents, "b"), createAgent(t, agents, "idle")

	counted, statements := testenv.CountingPostgres(t, dbURL)
	reg := prometheus.NewRegistry()
	sink := pgsync.NewSink(postgres.NewAgentStore(counted), discard, reg)

	base := time.Now().Add(-time.Hour).Truncate(time.Microsecond).UTC()
	t1, t2, t3 := base.Add(time.Second), base.Add(2*time.Second), base.Add(3*time.Second)
	good := []*stream.Message{
		entry(a, ns(t1)),
		entry(a, ns(t3)),
		entry(strings.ToUpper(b), ns(t2)), // same agent, other spelling
		entry(a, ns(t2)),
		entry(b, ns(t1)),
		entry(uuid.NewString(), ns(t3)), // agent deleted while its batch was in flight
	}
	garbled := map[*stream.Message]string{
		entry("", ns(t1)):                  `"agent" is missing`,
		entry("web-1", ns(t1)):             `"agent" = "web-1" is not a UUID`,
		entry(a, ""):                       `"received_at" is missing`,
		entry(a, "yesterday"):              `"received_at" = "yesterday"`,
		entry(a, "-5"):                     `"received_at" = "-5"`,
		entry(a, "1e18"):                   `"received_at" = "1e18"`,
		entry(a, "99999999999999999999"):   `not positive Unix nanoseconds`,
		{Stream: "metrics:{0}", ID: "9-0"}: "no message",
	}
	batch := append([]*stream.Message{}, good...)
	for m := range garbled {
		batch = append(batch, m)
	}

	before := statements.Load()
	if err := sink.Handle(ctx, batch); err != nil {
		t.Fatalf("Handle = %v, want nil", err)
	}
	if n := statements.Load() - before; n != 1 {
		t.Errorf("Handle of %d messages sent %d statements, want 1", len(batch), n)
	}
	for i, m := range good {
		if err := m.Rejected(); err != nil {
			t.Errorf("good message %d rejected: %v", i, err)
		}
	}
	for m, want := range garbled {
		if err := m.Rejected(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("garbled message %v: Rejected() = %v, want a reason containing %q", m.Msg, err, want)
		}
	}
	for _, c := range []struct {
		id   string
		want *time.Time
	}{{a, &t3}, {b, &t2}, {idle, nil}} {
		got := postgrestest.LastSeen(t, agents, c.id)
		if (got == nil) != (c.want == nil) || (got != nil && !got.Equal(*c.want)) {
			t.Errorf("last_seen(%s) = %v, want %v", c.id, got, c.want)
		}
	}

	// The consumer redelivers the same batch: nothing changes, and an older batch moves nothing back.
	if err := sink.Handle(ctx, []*stream.Message{entry(a, ns(t3)), entry(b, ns(t1))}); err != nil {
		t.Fatalf("Handle(redelivery) = %v", err)
	}
	if got := postgrestest.LastSeen(t, agents, a); got == nil || !got.Equal(t3) {
		t.Errorf("after redelivery last_seen(a) = %v, want %v", got, t3)
	}
	if got := postgrestest.LastSeen(t, agents, b); got == nil || !got.Equal(t2) {
		t.Errorf("after an older batch last_seen(b) = %v, want %v", got, t2)
	}

	if got := metric(t, reg, "agentmonitor_pgsync_rejected_total").GetCounter().GetValue(); got != float64(len(garbled)) {
		t.Errorf("rejected_total = %v, want %d", got, len(garbled))
	}
	count, sum := histogram(t, reg, "agentmonitor_pgsync_flush_agents")
	if count != 2 || sum != 3+2 {
		t.Errorf("flush_agents: %d samples summing to %v, want 2 flushes of 3 and 2 agents", count, sum)
	}
	if count, _ := histogram(t, reg, "agentmonitor_pgsync_flush_duration_seconds"); count != 2 {
		t.Errorf("flush_duration_seconds has %d samples, want 2", count)
	}
}

func TestHandleOnlyGarbledSendsNothing(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	counted, statements := testenv.CountingPostgres(t, dbURL)
	sink := pgsync.NewSink(postgres.NewAgentStore(counted), discard, nil)
	batch := []*stream.Message{entry("", "1"), entry("x", "")}
	if err := sink.Handle(context.Background(), batch); err != nil {
		t.Fatalf("Handle = %v, want nil", err)
	}
	for i, m := range batch {
		if m.Rejected() == nil {
			t.Errorf("message %d not rejected", i)
		}
	}
	if n := statements.Load(); n != 0 {
		t.Errorf("Handle of only garbled messages sent %d statements, want 0", n)
	}
}

// A gateway clock running ahead cannot pin last_seen in the future.
func TestHandleClampsFutureTimes(t *testing.T) {
	db, _ := testenv.Postgres(t)
	agents := postgres.NewAgentStore(db)
	a := createAgent(t, agents, "a")
	sink := pgsync.NewSink(agents, discard, nil)
	if err := sink.Handle(context.Background(), []*stream.Message{entry(a, ns(time.Now().Add(time.Hour)))}); err != nil {
		t.Fatal(err)
	}
	got := postgrestest.LastSeen(t, agents, a)
	if got == nil || got.After(time.Now()) || time.Since(*got) > time.Minute {
		t.Errorf("last_seen after a batch stamped an hour ahead = %v, want about now (%v)", got, time.Now())
	}
}

// A database outage is returned to the consumer (which retries the batch) and rejects nothing.
func TestHandleReturnsDatabaseErrors(t *testing.T) {
	down, err := sqlx.Open("postgres", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	reg := prometheus.NewRegistry()
	sink := pgsync.NewSink(postgres.NewAgentStore(down), discard, reg)
	batch := []*stream.Message{entry(uuid.NewString(), ns(time.Now()))}
	if err := sink.Handle(context.Background(), batch); err == nil {
		t.Fatal("Handle with PostgreSQL down = nil, want an error")
	}
	if err := batch[0].Rejected(); err != nil {
		t.Errorf("Handle rejected %v on a database error; it must be retried instead", err)
	}
	if got := metric(t, reg, "agentmonitor_pgsync_flush_errors_total").GetCounter().GetValue(); got != 1 {
		t.Errorf("flush_errors_total = %v, want 1", got)
	}
}

func TestNewSinkTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	pgsync.NewSink(nil, discard, reg)
	pgsync.NewSink(nil, discard, reg) // must not panic
	if got := metric(t, reg, "agentmonitor_pgsync_rejected_total").GetCounter().GetValue(); got != 0 {
		t.Errorf("rejected_total of a new sink = %v, want 0", got)
	}
}
