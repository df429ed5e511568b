package alerter_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// BenchmarkHandle measures one batch of 500 entries (100 agents, 5 entries each of 4 series)
// against an averaged rule that matches every sample: decoding, 400 states read, stepped and
// written in one transaction. Reported per batch.
func BenchmarkHandle(b *testing.B) {
	e := newEnv(b)
	rule := cpuRule(time.Minute)
	rule.Aggregation, rule.Window = alert.AggAvg, alert.Duration(5*time.Minute)
	e.createRule(b, rule)
	var agents []string
	for i := range 100 {
		agents = append(agents, e.createAgent(b, fmt.Sprintf("agent-%d", i), nil).ID)
	}
	r := e.replica(b)
	batch := func(round int) []*stream.Message {
		var out []*stream.Message
		for j := range 5 {
			ts := t0.Add(time.Duration(round*5+j) * time.Second)
			for _, a := range agents {
				out = append(out, entry(a, cpu{"0", 50, ts}, cpu{"1", 60, ts}, cpu{"2", 70, ts}, cpu{"3", 75, ts}))
			}
		}
		return out
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		msgs := batch(i)
		b.StartTimer()
		if err := r.eval.Handle(b.Context(), msgs); err != nil {
			b.Fatal(err)
		}
	}
}
