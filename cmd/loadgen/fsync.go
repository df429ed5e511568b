package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fsyncEvent is the latency-monitor event of Redis's AOF fsync with appendfsync always: the
// fsync the event loop makes before it answers the commands of an iteration that wrote.
const fsyncEvent = "aof-fsync-always"

// fsyncLatency is what Redis's latency monitor recorded of its AOF fsyncs during a run (LATENCY
// HISTORY: the largest event of each second in which one took 1 ms or more).
type fsyncLatency struct {
	RunSeconds float64 `json:"run_s"`
	// Seconds is how many seconds had an fsync of 1 ms or more.
	Seconds   int     `json:"seconds_over_1ms"`
	MedianMax float64 `json:"median_per_second_max_ms"` // over those seconds
	Max       float64 `json:"max_ms"`
	Over10    int     `json:"seconds_over_10ms"`
	// Rewrites is how many AOF rewrites Redis began (INFO persistence aof_rewrites; -1: unknown).
	Rewrites int64 `json:"aof_rewrites"`
}

// summarizeFsync summarizes LATENCY HISTORY's [timestamp, milliseconds] pairs.
func summarizeFsync(history [][2]int64, run time.Duration) fsyncLatency {
	f := fsyncLatency{RunSeconds: run.Seconds(), Seconds: len(history)}
	ms := make([]float64, len(history))
	for i, h := range history {
		ms[i] = float64(h[1])
		if h[1] > 10 {
			f.Over10++
		}
	}
	slices.Sort(ms)
	if len(ms) > 0 {
		f.MedianMax, f.Max = ms[len(ms)/2], ms[len(ms)-1]
	}
	return f
}

// watchFsync resets the latency monitor of the bench's Redis with a threshold of 1 ms, and
// returns a function reading what it recorded since (nil when appendfsync is not always, whose
// fsyncs happen in the background, or when Redis refuses).
func (b *bench) watchFsync(ctx context.Context) func() *fsyncLatency {
	if b.cfg.appendfsync != "always" {
		return func() *fsyncLatency { return nil }
	}
	if err := b.rdb.ConfigSet(ctx, "latency-monitor-threshold", "1").Err(); err != nil {
		fmt.Fprintln(b.out, "warning: CONFIG SET latency-monitor-threshold:", err)
		return func() *fsyncLatency { return nil }
	}
	if err := b.rdb.Do(ctx, "latency", "reset").Err(); err != nil {
		fmt.Fprintln(b.out, "warning: LATENCY RESET:", err)
	}
	start := time.Now()
	rewrites := b.aofRewrites(ctx)
	return func() *fsyncLatency {
		raw, err := b.rdb.Do(ctx, "latency", "history", fsyncEvent).Slice()
		if err != nil {
			fmt.Fprintln(b.out, "warning: LATENCY HISTORY:", err)
			return nil
		}
		history, err := parseLatencyHistory(raw)
		if err != nil {
			fmt.Fprintln(b.out, "warning: LATENCY HISTORY:", err)
			return nil
		}
		f := summarizeFsync(history, time.Since(start))
		f.Rewrites = -1
		if now := b.aofRewrites(ctx); now >= 0 && rewrites >= 0 {
			f.Rewrites = now - rewrites
		}
		return &f
	}
}

// aofRewrites returns INFO persistence's aof_rewrites of the bench's Redis (-1 when unknown).
func (b *bench) aofRewrites(ctx context.Context) int64 {
	info, err := b.rdb.Info(ctx, "persistence").Result()
	if err != nil {
		return -1
	}
	return infoInt(info, "aof_rewrites")
}

// infoInt returns the integer field name of an INFO reply (-1 when it has none).
func infoInt(info, name string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// parseLatencyHistory reads LATENCY HISTORY's reply: an array of [unix time, milliseconds].
func parseLatencyHistory(raw []any) ([][2]int64, error) {
	out := make([][2]int64, 0, len(raw))
	for _, r := range raw {
		pair, ok := r.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("unexpected entry %v", r)
		}
		var p [2]int64
		for i, v := range pair {
			n, ok := v.(int64)
			if !ok {
				return nil, fmt.Errorf("unexpected entry %v", r)
			}
			p[i] = n
		}
		out = append(out, p)
	}
	return out, nil
}

func (f *fsyncLatency) String() string {
	return fmt.Sprintf("an fsync of 1 ms or more in %d s of a %.1f s window; the largest of each such second: median %.0f ms, max %.0f ms; %d s had one over 10 ms; %d AOF rewrites began",
		f.Seconds, f.RunSeconds, f.MedianMax, f.Max, f.Over10, f.Rewrites)
}
