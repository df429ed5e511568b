package rollup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Marker is the rollup's stream.Handler: it marks the 1m window of every point in a batch dirty,
// ready at the window's end plus the grace.
type Marker struct {
	// WriterPatience is how long Handle waits for the writer group before handing the batch back
	// for a retry; NewMarker sets it to 5s.
	WriterPatience time.Duration

	store   *Store
	rdb     redis.UniversalClient
	after   string
	grace   time.Duration
	metrics *Metrics
}

// NewMarker returns a Marker recording into store. When after names a consumer group (the
// influx-writer's), a batch is marked only once that group has handled (written and acked) all
// of it, so that no window is computed before its points are in InfluxDB. m may be nil.
func NewMarker(store *Store, after string, grace time.Duration, m *Metrics) *Marker {
	return &Marker{WriterPatience: writerPatience, store: store, rdb: store.rdb, after: after, grace: grace, metrics: m}
}

// The writer normally stores a batch within milliseconds of the rollup reading it: Handle asks
// every writerPoll for up to writerPatience before giving the batch back to the consumer (which
// logs and retries it after writerWait), so that an ordinary race is not logged as a failure.
// Each ask is a transaction per stream of the batch; the marks are used only once a window has
// closed plus ROLLUP_GRACE, so asking every 100ms rather than 25ms delays nothing that matters
// (it cut the rollup's CPU per entry by a quarter at 2000 entries/s).
const (
	writerPoll     = 100 * time.Millisecond
	writerPatience = 5 * time.Second
	writerWait     = time.Second
)

// awaitWriter returns nil once the writer group has handled every message of batch.
func (m *Marker) awaitWriter(ctx context.Context, batch []*stream.Message) error {
	deadline := time.Now().Add(m.WriterPatience)
	for {
		err := waitForWriter(ctx, m.rdb, m.after, batch, writerWait)
		var notWritten *errNotWritten
		if !errors.As(err, &notWritten) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(writerPoll):
		}
	}
}

// Handle waits (by returning a RetryAfterError) until the writer group has handled the batch, then
// reads the measurement and time of each point of each entry's canonical line protocol (windows)
// and marks the (measurement, 1m window) pairs it touches, all in one pipelined round trip. It
// returns nil only once the marks are in Redis, so the consumer acks nothing whose windows are not
// recorded; a Redis error is returned (transient: the batch is retried). An entry whose line
// protocol cannot be read is Rejected.
func (m *Marker) Handle(ctx context.Context, batch []*stream.Message) error {
	if m.after != "" {
		if err := m.awaitWriter(ctx, batch); err != nil {
			return err
		}
	}
	ready := map[Window]time.Time{}
	var found []Window
	for _, msg := range batch {
		if msg.Msg == nil {
			msg.Reject(errors.New("entry has no message"))
			continue
		}
		var err error
		if found, err = windows(found[:0], msg.Msg.Payload); err != nil {
			msg.Reject(fmt.Errorf("rollup: %w", err))
			continue
		}
		for _, w := range found {
			if _, ok := ready[w]; !ok {
				ready[w] = w.End().Add(m.grace)
			}
		}
	}
	if err := m.store.Mark(ctx, ready); err != nil {
		if m.metrics != nil {
			m.metrics.errors.WithLabelValues("1m", "mark").Inc()
		}
		return err
	}
	if m.metrics != nil {
		m.metrics.marked.Add(float64(len(ready)))
	}
	return nil
}

// windows appends the 1m window of every point of payload to dst. It reads only each line's
// measurement and timestamp and skips the tags and fields without decoding them: that is all the
// marker needs, where decoding whole points (metric.DecodeLineProtocol) was most of its CPU per
// entry. The syntax is still checked up to the timestamp; field values are not parsed, which the
// marker does not need: the influx-writer dead-letters what InfluxDB refuses, and a window marked
// for a point InfluxDB refused is only computed once more. Measurement names are interned
// (metric.InternName), so that a point costs no allocation.
func windows(dst []Window, payload []byte) ([]Window, error) {
	dec := lineprotocol.NewDecoderWithBytes(payload)
	for point := 1; dec.Next(); point++ {
		raw, err := dec.Measurement()
		if err != nil {
			return dst, fmt.Errorf("decoding line protocol: %w", err)
		}
		ns, err := metric.EntryTime(dec)
		if err != nil {
			return dst, fmt.Errorf("decoding line protocol: point %d: %w", point, err)
		}
		dst = append(dst, WindowAt(0, metric.InternName(raw), time.Unix(0, ns)))
	}
	return dst, nil
}
