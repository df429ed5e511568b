package ingestredis_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// BenchmarkRedisSide is the Redis work of one accepted request: the rate charge, the append and
// the hot-cache refresh in one script, against a private redis-server (AOF on, as the bench and
// the dev stack run it). Beside the Go side's ns/op and allocs/op it reports what the request
// cost Redis, which wall-clock time on a shared machine cannot tell: redis-us/op, the server's
// CPU time (INFO cpu, user + sys) per request, and cmds/op, the commands it ran (INFO
// commandstats). "6x5" is the load tool's request (six measurements, tag host, five fields
// each: 30 values); "6x30" has 30 fields per point (180 values).
func BenchmarkRedisSide(b *testing.B) {
	for _, shape := range []struct {
		name   string
		fields int
	}{{"6x5", 5}, {"6x30", 30}} {
		b.Run(shape.name, func(b *testing.B) {
			client := privateRedis(b)
			a, _ := newAppender(b, client, "p:", func(c *ingestredis.Config) { c.Rate, c.Burst = 1_000_000, 1_000_000 })
			pts := agentRequest(shape.fields)
			ctx := context.Background()
			appendOne := func() {
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
			appendOne() // loads the script, creates the keys
			cpu0, cmds0 := serverCPU(b, client), commands(b, client)
			b.ReportAllocs()
			for b.Loop() {
				appendOne()
			}
			cpu1, cmds1 := serverCPU(b, client), commands(b, client)
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "redis-us/op")
			b.ReportMetric(float64(cmds1-cmds0-2)/float64(b.N), "cmds/op") // less two INFOs
		})
	}
}

// agentRequest returns the points of one agent request: six measurements (cpu, mem, disk, net,
// load, procs) with the tag host=h1 and fields float fields each.
func agentRequest(fields int) []metric.Point {
	pts := make([]metric.Point, 6)
	for i, m := range []string{"cpu", "mem", "disk", "net", "load", "procs"} {
		fs := make([]metric.Field, fields)
		for j := range fs {
			fs[j] = metric.Field{Key: fieldKey(j, fields), Value: metric.Value{Kind: metric.KindFloat, F: float64(i*fields+j) + 0.25}}
		}
		pts[i] = metric.Point{Measurement: m, Tags: []metric.Tag{{Key: "host", Value: "h1"}}, Fields: fs}
	}
	return pts
}

// fieldKey returns the key of field j of n, sorted as the parsers sort them: a, b, c... for up
// to 26 fields, f00, f01... for more.
func fieldKey(j, n int) string {
	if n <= 26 {
		return string(rune('a' + j))
	}
	return fmt.Sprintf("f%02d", j)
}

// serverCPU returns the CPU time redis-server has used, user and system, in microseconds.
func serverCPU(b *testing.B, client *redis.Client) int64 {
	b.Helper()
	info, err := client.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var us int64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_user" && k != "used_cpu_sys") {
			continue
		}
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("INFO cpu %s: %v", line, err)
		}
		us += int64(secs * 1e6)
	}
	return us
}

// BenchmarkGroupCommit is the Redis side of many agents sending at once: 32 goroutines, each
// appending the load tool's request (6x5) of its own agent, against a private redis-server,
// with one script call per batch (group=1) or group commit (group=64, the default). Beside
// redis-us/op (Redis's CPU per request) it reports req/s, the wall-clock throughput (this
// process and redis-server share the machine's cores, so Go CPU spent per request counts too),
// and batches/call, the batches per script call.
//
// On the 2-core dev machine (2026-11-30, shared with other work; median of 3 interleaved runs of
// 3 s): group=1 12,727 req/s, 52.4 redis-us/op; group=64 14,694 req/s (x1.15), 45.4
// redis-us/op (x0.87), 2.6 batches per call (32 appenders over 4 shards, 2 calls in flight per
// shard: about 8 / 3 queue behind each call).
func BenchmarkGroupCommit(b *testing.B) {
	const appenders = 32
	for _, group := range []int{1, 64} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			client := privateRedis(b)
			a, _ := newAppender(b, client, "p:", func(c *ingestredis.Config) {
				c.Rate, c.Burst = 1_000_000, 1_000_000
				c.Group.MaxGroup = group
			})
			ctx := context.Background()
			var agents atomic.Int64
			appendOne := func(agent string, pts []metric.Point) {
				now := time.Now()
				for i := range pts {
					pts[i].Time = now.UnixNano()
				}
				payload := metric.AppendLineProtocol(nil, pts, agent)
				res, err := a.Append(ctx, agent, pts, payload, now)
				if err != nil || !res.Allowed || res.CacheErr != nil {
					b.Errorf("Append = %+v, %v", res, err)
				}
			}
			for i := range appenders { // loads the script, creates the keys
				appendOne(fmt.Sprintf("agent-%d", i), agentRequest(5))
			}
			cpu0, calls0 := serverCPU(b, client), commandCalls(b, client, "evalsha")
			b.SetParallelism((appenders + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				agent := fmt.Sprintf("agent-%d", agents.Add(1)-1)
				pts := agentRequest(5)
				for pb.Next() {
					appendOne(agent, pts)
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			cpu1, calls1 := serverCPU(b, client), commandCalls(b, client, "evalsha")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "redis-us/op")
			b.ReportMetric(float64(b.N)/float64(calls1-calls0), "batches/call")
		})
	}
}
