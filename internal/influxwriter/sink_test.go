package influxwriter_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/influxwriter"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunInflux(m)) }

// provisioned returns a client for a fresh, provisioned database of the shared server.
func provisioned(t testing.TB) *influx.Client {
	t.Helper()
	env := testenv.Influx(t)
	c, err := influx.New(influx.Config{URL: env.URL, Bucket: env.Database, RetentionDays: 30, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("influx.New: %v", err)
	}
	t.Cleanup(c.Close)
	if err := c.Provision(context.Background()); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return c
}

func messages(payloads ...string) []*stream.Message {
	batch := make([]*stream.Message, len(payloads))
	for i, p := range payloads {
		batch[i] = &stream.Message{Stream: "metrics:{0}", ID: fmt.Sprintf("1-%d", i), Deliveries: 1, Msg: message.NewMessage(strconv.Itoa(i), []byte(p))}
	}
	return batch
}

// goodEntry returns an entry of n cpu points of agent, at distinct times from t0.
func goodEntry(agent string, t0 int64, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "cpu,agent=%s,core=%d usage=%d.5,idle=%di %d\n", agent, i%4, i, 100-i, t0+int64(i))
	}
	return b.String()
}

// metricValue sums the counter values, or histogram sample counts, of the family name whose labels
// include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			if h := m.GetHistogram(); h != nil {
				sum += float64(h.GetSampleCount())
			} else {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestHandleWritesEveryEntryOnce(t *testing.T) {
	c := provisioned(t)
	reg := prometheus.NewRegistry()
	sink := influxwriter.NewSink(c, nil, reg)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).UnixNano()
	var payloads []string
	for i := range 20 {
		payloads = append(payloads, goodEntry(fmt.Sprintf("a%d", i%3), t0+int64(i)*1000, 5))
	}
	payloads = append(payloads, "", strings.TrimSuffix(goodEntry("a9", t0, 3), "\n")) // empty; no final newline

	for round := 1; round <= 2; round++ { // a redelivered batch leaves the count unchanged
		batch := messages(payloads...)
		if err := sink.Handle(ctx, batch); err != nil {
			t.Fatalf("round %d: Handle: %v", round, err)
		}
		for i, m := range batch {
			if err := m.Rejected(); err != nil {
				t.Errorf("round %d: entry %d Rejected(%v), want none rejected", round, i, err)
			}
		}
		if n, err := c.CountPoints(ctx, "cpu", ""); err != nil || n != 103 {
			t.Errorf("round %d: CountPoints(cpu) = %d, %v; want 103", round, n, err)
		}
		if got := metricValue(t, reg, "agentmonitor_influxwriter_write_duration_seconds", nil); got != float64(round) {
			t.Errorf("round %d: write requests = %v, want %d (one per batch)", round, got, round)
		}
	}
	if got := metricValue(t, reg, "agentmonitor_influxwriter_points_written_total", nil); got != 206 {
		t.Errorf("points_written_total = %v, want 206", got)
	}
	if got := metricValue(t, reg, "agentmonitor_influxwriter_batch_bytes", nil); got != 2 {
		t.Errorf("batch_bytes observations = %v, want 2", got)
	}
}

func TestHandleRejectsOnlyRefusedEntries(t *testing.T) {
	now := time.Now().Add(-time.Hour).UnixNano()
	const good = "good" // placeholder for a valid entry
	tests := []struct {
		name    string
		entries []string // good, or a bad payload
		reason  string   // in every rejected entry's reason
	}{
		{"unparsable in the middle", []string{good, good, good, "cpu,agent=bad usage=\n", good, good}, "unable to parse"},
		{"type conflict with an earlier entry", []string{
			good, fmt.Sprintf("tc,agent=x v=1.5 %d\n", now), good, good, good,
			fmt.Sprintf("tc,agent=x v=\"text\" %d\n", now+1), good}, "field type conflict"},
		{"first and last", []string{"cpu,agent=bad usage=\n", good, good, good, good, "cpu,agent=bad usage=t=\n"}, "unable to parse"},
		{"beyond retention", []string{good, good, "cpu,agent=old usage=1 1000000000\n", good}, "retention"},
		{"every entry bad", []string{"x,agent=bad a=\n", "y,agent=bad b=\n", "z,agent=bad c=\n"}, "unable to parse"},
		{"single bad entry", []string{"x,agent=bad a=\n"}, "unable to parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := provisioned(t)
			reg := prometheus.NewRegistry()
			sink := influxwriter.NewSink(c, nil, reg)
			payloads := make([]string, len(tt.entries))
			wantRejected := map[int]bool{}
			goodPoints := 0
			for i, e := range tt.entries {
				if e == good {
					payloads[i] = goodEntry("ok", now+int64(i)*100, 7)
					goodPoints += 7
				} else {
					payloads[i] = e
					if !strings.Contains(e, "v=1.5") { // the float that wins the type conflict is valid
						wantRejected[i] = true
					}
				}
			}
			batch := messages(payloads...)
			if err := sink.Handle(context.Background(), batch); err != nil {
				t.Fatalf("Handle = %v, want nil (bad entries rejected, not retried)", err)
			}
			for i, m := range batch {
				err := m.Rejected()
				if got := err != nil; got != wantRejected[i] {
					t.Errorf("entry %d (%.30q): Rejected() = %v, want rejected=%t", i, payloads[i], err, wantRejected[i])
					continue
				}
				if err != nil && !strings.Contains(err.Error(), tt.reason) {
					t.Errorf("entry %d: reason %q does not contain InfluxDB's %q", i, err, tt.reason)
				}
			}
			if n, err := c.CountPoints(context.Background(), "cpu", "ok"); err != nil || n != goodPoints {
				t.Errorf("CountPoints(cpu, ok) = %d, %v; want %d (every good entry's points)", n, err, goodPoints)
			}
			if got := metricValue(t, reg, "agentmonitor_influxwriter_entries_rejected_total", nil); got != float64(len(wantRejected)) {
				t.Errorf("entries_rejected_total = %v, want %d", got, len(wantRejected))
			}
			if got := metricValue(t, reg, "agentmonitor_influxwriter_write_errors_total", map[string]string{"class": "invalid"}); got == 0 {
				t.Errorf(`write_errors_total{class="invalid"} = 0, want > 0`)
			}
			wantWritten := 0
			for i, p := range payloads {
				if !wantRejected[i] {
					wantWritten += strings.Count(p, "\n")
				}
			}
			if got := metricValue(t, reg, "agentmonitor_influxwriter_points_written_total", nil); got != float64(wantWritten) {
				t.Errorf("points_written_total = %v, want %d", got, wantWritten)
			}
		})
	}
}

// TestHandleBisectsFewRequests: one bad entry among 64 costs a logarithmic number of writes, not one
// write per entry.
func TestHandleBisectsFewRequests(t *testing.T) {
	c := provisioned(t)
	reg := prometheus.NewRegistry()
	sink := influxwriter.NewSink(c, nil, reg)
	t0 := time.Now().Add(-time.Hour).UnixNano()
	payloads := make([]string, 64)
	for i := range payloads {
		payloads[i] = goodEntry("ok", t0+int64(i)*10, 2)
	}
	payloads[37] = "cpu,agent=bad usage=\n"
	batch := messages(payloads...)
	if err := sink.Handle(context.Background(), batch); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	for i, m := range batch {
		if (m.Rejected() != nil) != (i == 37) {
			t.Errorf("entry %d: Rejected() = %v, want rejected only for entry 37", i, m.Rejected())
		}
	}
	// 1 + 2 per level below the root (log2 64 = 6): at most 13.
	if got := metricValue(t, reg, "agentmonitor_influxwriter_write_duration_seconds", nil); got > 13 {
		t.Errorf("write requests = %v, want at most 13", got)
	}
	if n, err := c.CountPoints(context.Background(), "cpu", "ok"); err != nil || n != 126 {
		t.Errorf("CountPoints(cpu, ok) = %d, %v; want 126", n, err)
	}
}

// sizeLimited forwards to the real InfluxDB but refuses bodies over max bytes the way InfluxDB
// answers 413, so that the too-large path runs without sending 25 MB batches in a unit test
// (influx.TestWriteClassifiesErrors shows the real 413 maps to influx.ErrTooLarge).
type sizeLimited struct {
	w   influxwriter.Writer
	max int
}

func (s sizeLimited) Write(ctx context.Context, body []byte) error {
	if len(body) > s.max {
		return fmt.Errorf("influxdb answered 413: %w", influx.ErrTooLarge)
	}
	return s.w.Write(ctx, body)
}

func TestHandleSplitsTooLargeBatches(t *testing.T) {
	c := provisioned(t)
	sink := influxwriter.NewSink(sizeLimited{w: c, max: 3000}, nil, nil)
	t0 := time.Now().Add(-time.Hour).UnixNano()
	var payloads []string
	want := 0
	for i := range 12 {
		payloads = append(payloads, goodEntry("ok", t0+int64(i)*100, 20)) // ~1 KB each
		want += 20
	}
	payloads = append(payloads, goodEntry("huge", t0, 100)) // over the limit on its own
	batch := messages(payloads...)
	if err := sink.Handle(context.Background(), batch); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	for i, m := range batch {
		err := m.Rejected()
		if (err != nil) != (i == len(batch)-1) {
			t.Errorf("entry %d: Rejected() = %v, want only the last (oversized) entry rejected", i, err)
		}
		if err != nil && !errors.Is(err, influx.ErrTooLarge) {
			t.Errorf("entry %d: reason %v, want influx.ErrTooLarge", i, err)
		}
	}
	if n, err := c.CountPoints(context.Background(), "cpu", "ok"); err != nil || n != want {
		t.Errorf("CountPoints(cpu, ok) = %d, %v; want %d", n, err, want)
	}
}

func TestHandleReturnsTransientErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // nothing listens there now: connection refused
	c, err := influx.New(influx.Config{URL: "http://" + ln.Addr().String(), Bucket: "metrics", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewRegistry()
	sink := influxwriter.NewSink(c, nil, reg)
	batch := messages(goodEntry("ok", time.Now().UnixNano(), 3), "cpu,agent=bad usage=\n")
	err = sink.Handle(context.Background(), batch)
	if err == nil || errors.Is(err, influx.ErrInvalid) || errors.Is(err, influx.ErrTooLarge) {
		t.Fatalf("Handle with influxdb down = %v, want a transient error", err)
	}
	var ra stream.RetryAfterError
	if !errors.As(err, &ra) {
		t.Errorf("Handle error %v does not unwrap to stream.RetryAfterError", err)
	}
	for i, m := range batch {
		if m.Rejected() != nil {
			t.Errorf("entry %d Rejected(%v) on a transient error, want nothing rejected", i, m.Rejected())
		}
	}
	if got := metricValue(t, reg, "agentmonitor_influxwriter_write_errors_total", map[string]string{"class": "transient"}); got != 1 {
		t.Errorf(`write_errors_total{class="transient"} = %v, want 1 (no bisection on transient errors)`, got)
	}
}

func TestNewSinkTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := provisioned(t)
	a := influxwriter.NewSink(c, nil, reg)
	b := influxwriter.NewSink(c, nil, reg)
	now := time.Now().UnixNano()
	for i, s := range []*influxwriter.Sink{a, b} {
		if err := s.Handle(context.Background(), messages(goodEntry("ok", now+int64(i)*10, 2))); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(t, reg, "agentmonitor_influxwriter_points_written_total", nil); got != 4 {
		t.Errorf("points_written_total = %v, want 4 (both sinks share the instruments)", got)
	}
}

// BenchmarkHandle hands the sink batches of 10 entries of 500 points: 5000 points per write.
func BenchmarkHandle(b *testing.B) {
	c := provisioned(b)
	sink := influxwriter.NewSink(c, nil, nil)
	t0 := time.Now().Add(-time.Hour).UnixNano()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		payloads := make([]string, 10)
		for e := range payloads {
			payloads[e] = goodEntry(fmt.Sprintf("bench%d", e), t0+int64(i*5000+e*500), 500)
		}
		batch := messages(payloads...)
		b.StartTimer()
		if err := sink.Handle(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*5000)/b.Elapsed().Seconds(), "points/s")
}
