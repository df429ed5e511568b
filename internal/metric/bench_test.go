package metric

import "testing"

// The benchmarks use a typical agent request: 6 points (cpu, mem, disk, diskio, net, system)
// with 30 values in all.

func BenchmarkParseJSON(b *testing.B) {
	lim := DefaultLimits()
	b.ReportAllocs()
	b.SetBytes(int64(len(agentBatchJSON)))
	for b.Loop() {
		if _, err := ParseJSON(agentBatchJSON, testNow, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseLineProtocol(b *testing.B) {
	lim := DefaultLimits()
	b.ReportAllocs()
	b.SetBytes(int64(len(agentBatchLP)))
	for b.Loop() {
		if _, err := ParseLineProtocol(agentBatchLP, "s", testNow, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendLineProtocol(b *testing.B) {
	points, err := ParseJSON(agentBatchJSON, testNow, DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	buf := AppendLineProtocol(nil, points, testAgent)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = AppendLineProtocol(buf[:0], points, testAgent)
	}
}

func BenchmarkDecodeLineProtocol(b *testing.B) {
	points, err := ParseJSON(agentBatchJSON, testNow, DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	payload := AppendLineProtocol(nil, points, testAgent)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := DecodeLineProtocol(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseLineProtocolParallel parses on every core at once, as the gateway does under
// load: the names' intern table is shared.
func BenchmarkParseLineProtocolParallel(b *testing.B) {
	lim := DefaultLimits()
	b.ReportAllocs()
	b.SetBytes(int64(len(agentBatchLP)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ParseLineProtocol(agentBatchLP, "s", testNow, lim); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
