package alert

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// BenchmarkEvaluate is the alerter's per-sample domain work for a 5m avg rule: decode the
// stored window, evaluate, encode it back; with a sample every 10s (30 in the window) and every
// second (300: the window is at MaxSamples and merges on every sample).
func BenchmarkEvaluate(b *testing.B) {
	for _, every := range []int{10, 1} {
		b.Run(fmt.Sprintf("every%ds", every), func(b *testing.B) {
			rule := thresholdRule()
			w := &Window{}
			for i := range 300 / every {
				w.Add(sec(float64(i*every)), 50, time.Duration(rule.Window))
			}
			enc := w.Encode()
			s := NewState(testKey)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				w, err := DecodeWindow(enc)
				if err != nil {
					b.Fatal(err)
				}
				s, _ = Evaluate(s, w, rule, float64(i%100), sec(float64(300+i*every)))
				enc = w.Encode()
			}
		})
	}
}

func BenchmarkIndexMatch(b *testing.B) {
	rules := make([]Rule, 1000)
	for i := range rules {
		rules[i] = thresholdRule()
		rules[i].ID = fmt.Sprint("r", i)
		rules[i].Metric = fmt.Sprintf("m%d.f%d", i%100, i%7)
	}
	x := NewIndex(rules)
	p := &metric.Point{Measurement: "m3", Tags: []metric.Tag{{Key: "agent", Value: "a1"}, {Key: "core", Value: "total"}}}
	labels := map[string]string{"env": "prod"}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range x.For(p.Measurement, "f3") {
			if !r.Matches("a1", labels, p, "f3") {
				b.Fatal("no match")
			}
		}
	}
}
