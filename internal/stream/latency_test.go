package stream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// BenchmarkIdleLatency measures, against a private redis-server with its default settings
// (hz 10), the time from the start of a Publish to the handler's call while the consumer is idle
// (blocked waiting for new entries), with the alerter's short MaxWait (4ms); then the same on the
// shared test cluster (hz 10 too). It reports the median, p90 and maximum in milliseconds and
// asserts nothing about them. Run it with a fixed count, for example:
//
//	go test -run '^$' -bench IdleLatency -benchtime 60x ./internal/stream/
//
// A consumer that gathers its batch with a short server-side BLOCK waits for Redis's event loop to
// time that BLOCK out (up to 1/hz = 100 ms); one that waits on the client side does not.
func BenchmarkIdleLatency(b *testing.B) {
	r, err := stack.StartRedis(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Stop() })
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	b.Cleanup(func() { client.Close() })
	if hz, err := client.ConfigGet(context.Background(), "hz").Result(); err != nil || hz["hz"] != "10" {
		b.Fatalf("CONFIG GET hz = %v, %v: want the default 10", hz, err)
	}
	cluster, clusterPrefix := testenv.RedisCluster(b)
	runs := []struct {
		name   string
		client redis.UniversalClient
		prefix string
		shards int
	}{
		{"redis/shards=1", client, "lat1:", 1},
		{"redis/shards=4", client, "lat4:", 4},
		// The shared test cluster (hz 10 as well): one blocking reader per shard.
		{"cluster/shards=8", cluster, clusterPrefix, 8},
	}
	for _, run := range runs {
		b.Run(run.name, func(b *testing.B) {
			client, prefix, shards := run.client, run.prefix, run.shards
			called := make(chan time.Time, 1)
			cfg := ConsumerConfig{Prefix: prefix, Shards: shards, Group: "g", Consumer: "c", MaxWait: 4 * time.Millisecond,
				BatchSize: 500, Block: time.Second}
			c, err := NewConsumer(client, cfg, func(_ context.Context, batch []*Message) error {
				called <- time.Now()
				return nil
			}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Errorf("Run() = %v, want nil", err)
				}
			}()
			p, err := NewPublisher(client, PublisherConfig{Prefix: prefix, Shards: shards}, nil)
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				// Idle again (the batch before is acked, the reads wait), at a random phase of the server's
				// 100 ms clock.
				time.Sleep(10*time.Millisecond + rand.N(100*time.Millisecond))
				b.StartTimer()
				start := time.Now()
				if err := p.Publish(context.Background(), fmt.Sprintf("agent-%d", i), []byte("x"), nil); err != nil {
					b.Fatal(err)
				}
				select {
				case at := <-called:
					lat = append(lat, at.Sub(start))
				case <-time.After(10 * time.Second):
					b.Fatal("handler not called within 10s of the publish")
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*9/10]), "p90-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		})
	}
}
