package main

import (
	"context"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// TestSummarizeFsync: LATENCY HISTORY's per-second maxima become the count of seconds, their
// median and maximum, and the seconds over 10 ms.
func TestSummarizeFsync(t *testing.T) {
	raw := []any{
		[]any{int64(1764500000), int64(3)}, []any{int64(1764500001), int64(14)},
		[]any{int64(1764500002), int64(2)}, []any{int64(1764500004), int64(11)}, []any{int64(1764500005), int64(4)},
	}
	h, err := parseLatencyHistory(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := summarizeFsync(h, 10*time.Second)
	want := fsyncLatency{RunSeconds: 10, Seconds: 5, MedianMax: 4, Max: 14, Over10: 2}
	if got != want {
		t.Errorf("summarizeFsync = %+v, want %+v", got, want)
	}
	if n := infoInt("# Persistence\r\naof_rewrite_in_progress:0\r\naof_rewrites:12\r\n", "aof_rewrites"); n != 12 {
		t.Errorf("infoInt(aof_rewrites) = %d, want 12", n)
	}
	if n := infoInt("aof_rewrites_consecutive_failures:3\r\n", "aof_rewrites"); n != -1 {
		t.Errorf("infoInt found aof_rewrites in another field: %d", n)
	}
	if _, err := parseLatencyHistory([]any{[]any{int64(1), "x"}}); err == nil {
		t.Error("parseLatencyHistory accepted a non-integer")
	}
}

// TestLatencyHistoryFromRedis: the reply of a real Redis to LATENCY HISTORY parses (empty for an
// event that never happened).
func TestLatencyHistoryFromRedis(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	raw, err := rdb.Do(context.Background(), "latency", "history", "an-event-that-never-happened").Slice()
	if err != nil {
		t.Fatal(err)
	}
	if h, err := parseLatencyHistory(raw); err != nil || len(h) != 0 {
		t.Errorf("parseLatencyHistory(%v) = %v, %v; want nothing", raw, h, err)
	}
}
