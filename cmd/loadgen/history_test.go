package main

import (
	"testing"
	"time"
)

// TestWindowLine checks the rollup point the history bench writes: the contract's fields, the
// window's start as timestamp.
func TestWindowLine(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	w := windowAcc{start: start, min: 3, max: 3}
	for _, v := range []float64{3, 1, 8} {
		w.add(v)
	}
	got := string(w.appendLine(nil, "bench-agent-001", 2))
	want := "bench,agent=bench-agent-001 f2_min=1,f2_max=8,f2_mean=4,f2_sum=12,f2_last=8,f2_count=3i 1796032800000000000"
	if got != want {
		t.Errorf("appendLine = %q, want %q", got, want)
	}
	if a := historyAlign(start.Add(7*time.Minute+3*time.Second), 5*time.Minute); !a.Equal(start.Add(5 * time.Minute)) {
		t.Errorf("historyAlign(10:07:03, 5m) = %s, want 10:05", a)
	}
}
