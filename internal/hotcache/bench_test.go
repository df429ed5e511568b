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
