package stream

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchPayload is a typical small agent batch: 6 points, canonical line protocol.
var benchPayload = []byte(strings.Repeat("cpu,agent=a1,core=0 usage_idle=98.5,usage_user=1.2,usage_system=0.3,usage_iowait=0,usage_steal=0 1764093600000000000\n", 6))

func BenchmarkPublish(b *testing.B) {
	e := newEnv(b)
	p := e.publisher()
	meta := map[string]string{MetaReceivedAt: "1764093600000000000", MetaPoints: "6"}
	agents := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPayload)))
	b.SetParallelism(8) // the gateway publishes from many requests at once
	b.ResetTimer()
	var i atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := i.Add(1)
			if err := p.Publish(context.Background(), agents[n%int64(len(agents))], benchPayload, meta); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConsumeAndAck measures read, decode, hand over and ack, with a handler that does
// nothing: the consumer's own overhead per entry.
func BenchmarkConsumeAndAck(b *testing.B) {
	e := newEnv(b)
	p := e.publisher()
	agents := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"}
	meta := map[string]string{MetaPoints: "6"}
	for i := range b.N {
		if err := p.Publish(context.Background(), agents[i%len(agents)], benchPayload, meta); err != nil {
			b.Fatal(err)
		}
	}
	var handled atomic.Int64
	done := make(chan struct{})
	cfg := e.consumerConfig("bench", "c")
	cfg.BatchSize = 500
	b.ReportAllocs()
	b.ResetTimer()
	s := e.start(cfg, func(_ context.Context, batch []*Message) error {
		if handled.Add(int64(len(batch))) == int64(b.N) {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("handled %d of %d entries", handled.Load(), b.N)
	}
	// Count the acks in: wait until nothing is pending.
	for len(e.pending("bench")) > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	s.stop()
}
