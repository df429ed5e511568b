package hotcache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// BenchmarkUpdate refreshes the cache with a small agent batch (6 points, 30 values) against the
// real Redis.
func BenchmarkUpdate(b *testing.B) {
	client, prefix := testenv.Redis(b)
	c, err := hotcache.New(client, prefix, shards, hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 2000, MaxSamples: 10000})
	if err != nil {
		b.Fatal(err)
	}
	pts := make([]metric.Point, 6)
	for i := range pts {
		pts[i] = metric.Point{Measurement: "cpu", Tags: []metric.Tag{tag("core", fmt.Sprint(i))},
			Fields: []metric.Field{float("a", 1), float("b", 2), float("c", 3), float("d", 4), float("e", 5)}}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		for i := range pts {
			pts[i].Time = now.UnixNano()
		}
		if err := c.Update(ctx, "3f0c1f9e-8a51-4c1b-9d4e-6a2f1b0c7d11", pts, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReads reads the latest values and one metric's recent samples of an agent that sent
// a 30-value batch every second for the whole window (300 batches, 9000 samples).
func BenchmarkReads(b *testing.B) {
	client, prefix := testenv.Redis(b)
	c, err := hotcache.New(client, prefix, shards, hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 2000, MaxSamples: 10000})
	if err != nil {
		b.Fatal(err)
	}
	const id = "3f0c1f9e-8a51-4c1b-9d4e-6a2f1b0c7d11"
	ctx := context.Background()
	now := time.Now()
	for s := 300; s > 0; s-- {
		at := now.Add(-time.Duration(s) * time.Second)
		pts := make([]metric.Point, 6)
		for i := range pts {
			pts[i] = metric.Point{Measurement: "cpu", Tags: []metric.Tag{tag("core", fmt.Sprint(i))},
				Fields: []metric.Field{float("a", 1), float("b", 2), float("c", 3), float("d", 4), float("e", 5)}, Time: at.UnixNano()}
		}
		if err := c.Update(ctx, id, pts, at); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("latest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if vs, err := c.Latest(ctx, id); err != nil || len(vs) != 30 {
				b.Fatalf("Latest = %d, %v", len(vs), err)
			}
		}
	})
	b.Run("recent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if vs, err := c.Recent(ctx, id, "cpu.a", now); err != nil || len(vs) < 1500 {
				b.Fatalf("Recent = %d, %v", len(vs), err)
			}
		}
	})
}

// BenchmarkEncode is the gateway's CPU for the hot-cache part of one accepted request (6 points,
// 30 values): encoding the refresh and appending its script arguments, without Redis.
// BenchmarkEncode encodes an agent's request of 6 points (30 values) and, as Telegraf sends,
// of 1000 points (5000 values: 6 measurements, 167 hosts).
func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{6, 1000} {
		b.Run(fmt.Sprintf("points=%d", n), func(b *testing.B) { benchmarkEncode(b, n) })
	}
}

func benchmarkEncode(b *testing.B, n int) {
	c, err := hotcache.New(nil, "p:", shards, hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 2000, MaxSamples: 10000})
	if err != nil {
		b.Fatal(err)
	}
	pts := make([]metric.Point, n)
	measurements := []string{"cpu", "mem", "disk", "net", "load", "procs"}
	for i := range pts {
		pts[i] = metric.Point{Measurement: measurements[i%6], Tags: []metric.Tag{tag("host", fmt.Sprintf("h%d", i/6))},
			Fields: []metric.Field{float("a", 1.5+float64(i)), float("b", 2.5), float("c", 3.25), float("d", 4.5e-3*float64(i)), float("e", 5.5)}}
	}
	args := make([]any, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		for i := range pts {
			pts[i].Time = now.UnixNano()
		}
		hb := c.Encode(pts, now)
		args = hb.AppendArgs(args[:0], "3f0c1f9e-8a51-4c1b-9d4e-6a2f1b0c7d11")
		hb.Release()
	}
}
