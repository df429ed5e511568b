package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// TestShardsSpreadOverClusterNodes: with STREAM_SHARDS raised to 16 on the cluster, the shard
// streams sit on every master, and one consumer handles every entry once, in each agent's order.
func TestShardsSpreadOverClusterNodes(t *testing.T) {
	e := newClusterEnv(t)
	e.shards = 16
	cc := e.client.(*redis.ClusterClient)
	ctx := context.Background()
	nodes := map[string]int{}
	for _, k := range e.keys() {
		m, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatalf("MasterForKey(%s): %v", k, err)
		}
		nodes[m.Options().Addr]++
	}
	var masters atomic.Int32 // ForEachMaster calls fn concurrently
	if err := cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { masters.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if masters := int(masters.Load()); len(nodes) != masters {
		t.Errorf("16 shard streams sit on %d masters (%v), want all %d", len(nodes), nodes, masters)
	}

	var agents []string
	for i := range 40 {
		agents = append(agents, fmt.Sprintf("agent-%d", i))
	}
	sent := e.publish(e.publisher(), agents, 10)
	rec := newRecorder()
	cfg := e.consumerConfig("g", "c")
	cfg.BatchSize = 50
	e.start(cfg, rec.handle)
	got := rec.waitFor(t, len(sent), 20*time.Second)
	perAgent := map[string][]string{}
	for _, h := range got {
		perAgent[h.meta[MetaAgent]] = append(perAgent[h.meta[MetaAgent]], h.payload)
	}
	for agent, ps := range perAgent {
		for i, p := range ps {
			if want := fmt.Sprintf("%s %d", agent, i); p != want {
				t.Fatalf("agent %s: handled %q at position %d, want %q (order lost)", agent, p, i, want)
			}
		}
	}
	testenv.WaitDrained(t, e.client, "g", e.keys()...)
	if len(rec.all()) != len(sent) {
		t.Errorf("handled %d entries, want %d (duplicates)", len(rec.all()), len(sent))
	}
}

// TestConsumerRefusesShardsBeyondItsCount: a consumer configured with fewer shards than the
// streams were written with refuses to start, naming the streams it would never read; once a
// consumer with the old count has drained them, it starts.
func TestConsumerRefusesShardsBeyondItsCount(t *testing.T) {
	onRedisAndCluster(t, testConsumerRefusesShardsBeyondItsCount)
}

func testConsumerRefusesShardsBeyondItsCount(t *testing.T, e *env) {
	small := e.shards
	e.shards = 2 * small // the deployment used to run with twice the shards
	var agents []string
	for i := range 20 {
		agents = append(agents, fmt.Sprintf("agent-%d", i))
	}
	sent := e.publish(e.publisher(), agents, 2)
	wide := e.keys()

	run := func(shards int) error {
		cfg := e.consumerConfig("g", "c")
		cfg.Shards = shards
		c, err := NewConsumer(e.client, cfg, newRecorder().handle, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return c.Run(ctx)
	}
	err := run(small)
	var beyond *ShardsBeyondError
	if !errors.As(err, &beyond) || beyond.Shards != small {
		t.Fatalf("Run with STREAM_SHARDS=%d over %d written shards = %v, want a ShardsBeyondError", small, 2*small, err)
	}
	for _, k := range wide[small:] {
		if n, _ := e.client.XLen(context.Background(), k).Result(); n > 0 && !strings.Contains(err.Error(), k+" (") {
			t.Errorf("error %q does not name %s, which holds %d entries", err, k, n)
		}
	}
	for _, k := range wide[:small] {
		if strings.Contains(err.Error(), k+" (") {
			t.Errorf("error %q names %s, which the consumer reads", err, k)
		}
	}

	// Drain with the old count, then the new count starts.
	rec := newRecorder()
	s := e.start(e.consumerConfig("g", "c"), rec.handle)
	rec.waitFor(t, len(sent), 10*time.Second)
	testenv.WaitDrained(t, e.client, "g", wide...)
	s.stop()
	if err := run(small); err != nil {
		t.Errorf("Run with STREAM_SHARDS=%d after every group drained the other shards = %v, want nil", small, err)
	}
	unhandled, handled, err := ShardsBeyond(context.Background(), e.client, e.prefix, small)
	if err != nil || len(unhandled) != 0 || len(handled) == 0 {
		t.Errorf("ShardsBeyond after the drain = %v, %v, %v; want no unhandled, some handled", unhandled, handled, err)
	}
}
