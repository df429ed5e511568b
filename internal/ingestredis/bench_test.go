package ingestredis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// BenchmarkRedisSide is the Redis work of one accepted request (6 points, 30 values): the rate
// charge, the append and the hot-cache refresh in one script, against the real Redis.
func BenchmarkRedisSide(b *testing.B) {
	client, prefix := testenv.Redis(b)
	a, _ := newAppender(b, client, prefix, func(c *ingestredis.Config) { c.Rate, c.Burst = 1<<30, 1<<30 })
	pts := make([]metric.Point, 6)
	for i := range pts {
		pts[i] = metric.Point{Measurement: "cpu", Tags: []metric.Tag{{Key: "core", Value: fmt.Sprint(i)}}, Fields: []metric.Field{
			{Key: "a", Value: metric.Value{Kind: metric.KindFloat, F: 1}}, {Key: "b", Value: metric.Value{Kind: metric.KindFloat, F: 2}},
			{Key: "c", Value: metric.Value{Kind: metric.KindFloat, F: 3}}, {Key: "d", Value: metric.Value{Kind: metric.KindFloat, F: 4}},
			{Key: "e", Value: metric.Value{Kind: metric.KindFloat, F: 5}}}}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		for i := range pts {
			pts[i].Time = now.UnixNano()
		}
		payload := metric.AppendLineProtocol(nil, pts, agentID)
		res, err := a.Append(ctx, agentID, pts, payload, now)
		if err != nil || !res.Allowed || res.CacheErr != nil {
			b.Fatalf("Append = %+v, %v", res, err)
		}
	}
}
