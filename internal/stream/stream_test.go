package stream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	envparse "github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"
)

func TestStreamKeys(t *testing.T) {
	tests := []struct {
		prefix string
		shards int
		want   []string
	}{
		{"", 1, []string{"metrics:{0}"}},
		{"p:", 3, []string{"p:metrics:{0}", "p:metrics:{1}", "p:metrics:{2}"}},
		{"p:", 0, []string{"p:metrics:{0}"}},
	}
	for _, tt := range tests {
		if got := StreamKeys(tt.prefix, tt.shards); !slices.Equal(got, tt.want) {
			t.Errorf("StreamKeys(%q, %d) = %q, want %q", tt.prefix, tt.shards, got, tt.want)
		}
	}
	if got, want := DeadLetterKey("p:"), "p:metrics:dead"; got != want {
		t.Errorf("DeadLetterKey(%q) = %q, want %q", "p:", got, want)
	}
}

// fnv1a is FNV-1a 32 written out from its definition, to check ShardFor against.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestShardFor(t *testing.T) {
	counts := make([]int, 8)
	for i := range 1000 {
		id := fmt.Sprintf("agent-%d", i)
		got := ShardFor(id, 8)
		if want := int(fnv1a(id) % 8); got != want {
			t.Fatalf("ShardFor(%q, 8) = %d, want %d", id, got, want)
		}
		counts[got]++
	}
	for shard, n := range counts {
		if n < 60 { // 125 expected
			t.Errorf("shard %d got %d of 1000 agents: distribution is badly skewed (%v)", shard, n, counts)
		}
	}
	for _, shards := range []int{-1, 0, 1} {
		if got := ShardFor("x", shards); got != 0 {
			t.Errorf("ShardFor(%q, %d) = %d, want 0", "x", shards, got)
		}
	}
}

func TestConfigDefaultsFromEnvironment(t *testing.T) {
	var cc ConsumerConfig
	if err := envparse.ParseWithOptions(&cc, envparse.Options{Environment: map[string]string{"CONSUMER_NAME": "host-1"}}); err != nil {
		t.Fatalf("parsing ConsumerConfig: %v", err)
	}
	cc.Group = "g"
	want := ConsumerConfig{Shards: 4, Group: "g", Consumer: "host-1", BatchSize: 500, MaxWait: 200 * time.Millisecond,
		Block: time.Second, ClaimMinIdle: 30 * time.Second, ClaimInterval: 5 * time.Second, MaxDeliveries: 5,
		RetryMin: 100 * time.Millisecond, RetryMax: 30 * time.Second, DrainTimeout: 10 * time.Second}
	if !reflect.DeepEqual(cc, want) {
		t.Errorf("ConsumerConfig from empty environment = %+v, want %+v", cc, want)
	}
	// The same defaults apply when the struct is built in code with zero fields.
	zero := ConsumerConfig{Group: "g", Consumer: "host-1"}
	if err := zero.setDefaults(); err != nil {
		t.Fatalf("ConsumerConfig.setDefaults() = %v", err)
	}
	if !reflect.DeepEqual(zero, want) {
		t.Errorf("ConsumerConfig.setDefaults() = %+v, want %+v", zero, want)
	}
	if err := want.Validate(); err != nil {
		t.Errorf("default ConsumerConfig.Validate() = %v, want nil", err)
	}

	var tc TrimmerConfig
	if err := envparse.ParseWithOptions(&tc, envparse.Options{Environment: map[string]string{"REDIS_KEY_PREFIX": "x:"}}); err != nil {
		t.Fatalf("parsing TrimmerConfig: %v", err)
	}
	if tc.Prefix != "x:" || !slices.Equal(tc.Groups, []string{"influx-writer", "pg-sync"}) || tc.Interval != 5*time.Second || tc.Shards != 4 {
		t.Errorf("TrimmerConfig from environment = %+v, want prefix x:, groups influx-writer,pg-sync, 5s, 4 shards", tc)
	}

	var bc BacklogConfig
	if err := envparse.ParseWithOptions(&bc, envparse.Options{Environment: map[string]string{"STREAM_MAX_BACKLOG": "10"}}); err != nil {
		t.Fatalf("parsing BacklogConfig: %v", err)
	}
	if bc.Max != 10 || bc.Interval != 500*time.Millisecond {
		t.Errorf("BacklogConfig from environment = %+v, want Max 10, Interval 500ms", bc)
	}
	var pc PublisherConfig
	if err := envparse.ParseWithOptions(&pc, envparse.Options{Environment: map[string]string{}}); err != nil || pc.Shards != 4 {
		t.Errorf("PublisherConfig from empty environment = %+v, %v; want 4 shards", pc, err)
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	valid := ConsumerConfig{Group: "g", Consumer: "c"}
	if err := valid.setDefaults(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		modify func(*ConsumerConfig)
		want   string
	}{
		{"no group", func(c *ConsumerConfig) { c.Group = "" }, "consumer group is empty"},
		{"no name", func(c *ConsumerConfig) { c.Consumer = "" }, "CONSUMER_NAME"},
		{"negative batch", func(c *ConsumerConfig) { c.BatchSize = -1 }, "STREAM_BATCH_SIZE"},
		{"sub-ms block", func(c *ConsumerConfig) { c.Block = time.Microsecond }, "STREAM_BLOCK"},
		{"claim idle below max wait", func(c *ConsumerConfig) { c.ClaimMinIdle = c.MaxWait }, "STREAM_CLAIM_MIN_IDLE"},
		{"retry max below min", func(c *ConsumerConfig) { c.RetryMax = c.RetryMin / 2 }, "STREAM_RETRY_MAX"},
		{"too many shards", func(c *ConsumerConfig) { c.Shards = 5000 }, "STREAM_SHARDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.modify(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
	if _, err := NewConsumer(redis.NewClient(&redis.Options{}), ConsumerConfig{Group: "g"}, func(context.Context, []*Message) error { return nil }, nil); err == nil {
		t.Errorf("NewConsumer without a consumer name = nil error, want one")
	}
	if _, err := NewTrimmer(redis.NewClient(&redis.Options{}), TrimmerConfig{Groups: []string{"a", ""}}, nil); err == nil {
		t.Errorf("NewTrimmer with an empty group name = nil error, want one")
	}
	if _, err := NewBacklog(redis.NewClient(&redis.Options{}), BacklogConfig{Max: -1}, nil); err == nil {
		t.Errorf("NewBacklog with Max -1 = nil error, want one")
	}
}

func TestStreamIDNext(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0-0", "0-1"},
		{"1700000000000-5", "1700000000000-6"},
		{"5-18446744073709551615", "6-0"},
	}
	for _, tt := range tests {
		id, err := ParseID(tt.in)
		if err != nil {
			t.Fatalf("ParseID(%q): %v", tt.in, err)
		}
		if got := id.Next().String(); got != tt.want {
			t.Errorf("ParseID(%q).Next() = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "12", "a-1", "1-b", "-1"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) = nil error, want one", bad)
		}
	}
}

// TestPublishShardsAndOrder publishes batches for several agents and reads the streams back raw:
// each agent's entries are on its shard only, in publishing order, in Watermill's format.
func TestPublishShardsAndOrder(t *testing.T) {
	e := newEnv(t)
	p := e.publisher()
	agents := []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"}
	const perAgent = 5
	e.publish(p, agents, perAgent)

	byAgent := map[string][]string{}
	total := 0
	for shard, key := range e.keys() {
		msgs, err := e.client.XRange(context.Background(), key, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", key, err)
		}
		for _, m := range msgs {
			total++
			wm, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(m.Values)
			if err != nil {
				t.Fatalf("entry %s on %s does not decode: %v", m.ID, key, err)
			}
			agent := wm.Metadata.Get(MetaAgent)
			if got := ShardFor(agent, testShards); got != shard {
				t.Errorf("entry of agent %q is on shard %d, want shard %d", agent, shard, got)
			}
			if wm.Metadata.Get(MetaPoints) != "1" || wm.UUID == "" {
				t.Errorf("entry %s: uuid %q, metadata %v; want a uuid and points=1", m.ID, wm.UUID, wm.Metadata)
			}
			byAgent[agent] = append(byAgent[agent], string(wm.Payload))
		}
	}
	if total != len(agents)*perAgent {
		t.Fatalf("streams hold %d entries, want %d", total, len(agents)*perAgent)
	}
	for _, a := range agents {
		var want []string
		for i := range perAgent {
			want = append(want, fmt.Sprintf("%s %d", a, i))
		}
		if !slices.Equal(byAgent[a], want) {
			t.Errorf("entries of %s in stream order = %q, want %q", a, byAgent[a], want)
		}
	}
}

func TestPublishKeepsMetaAndFailsClearly(t *testing.T) {
	e := newEnv(t)
	p := e.publisher()
	meta := map[string]string{MetaReceivedAt: "123", MetaAgent: "spoofed"}
	orig := maps.Clone(meta)
	if err := p.Publish(context.Background(), "agent-x", []byte("m f=1 1"), meta); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if !maps.Equal(meta, orig) {
		t.Errorf("Publish modified the caller's metadata: %v, want %v", meta, orig)
	}
	key := e.keys()[ShardFor("agent-x", e.shards)]
	msgs, _ := e.client.XRange(context.Background(), key, "-", "+").Result()
	if len(msgs) != 1 {
		t.Fatalf("stream %s holds %d entries, want 1", key, len(msgs))
	}
	wm, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(msgs[0].Values)
	if err != nil {
		t.Fatal(err)
	}
	if got := wm.Metadata.Get(MetaAgent); got != "agent-x" {
		t.Errorf("metadata %s = %q, want the publishing agent %q", MetaAgent, got, "agent-x")
	}
	if got := wm.Metadata.Get(MetaReceivedAt); got != "123" {
		t.Errorf("metadata %s = %q, want %q", MetaReceivedAt, got, "123")
	}

	if err := p.Publish(context.Background(), "", []byte("x"), nil); err == nil {
		t.Errorf("Publish with an empty agent id = nil error, want one")
	}
	if err := p.Publish(context.Background(), "a", []byte("x"), map[string]string{redisstream.UUIDHeaderKey: "u"}); err == nil {
		t.Errorf("Publish with reserved metadata %q = nil error, want one", redisstream.UUIDHeaderKey)
	}

	// An unreachable Redis is an error the gateway can turn into 503, and nothing is stored.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer dead.Close()
	dp, err := NewPublisher(dead, PublisherConfig{Prefix: e.prefix, Shards: e.shards}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = dp.Publish(context.Background(), "agent-x", []byte("x"), nil)
	if err == nil || !strings.Contains(err.Error(), "agent-x") {
		t.Errorf("Publish to an unreachable Redis = %v, want an error naming the agent", err)
	}
	var opErr interface{ Timeout() bool }
	if !errors.As(err, &opErr) && !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Publish error %v does not carry the network error", err)
	}
}

// TestPublishInteropWithWatermillSubscriber reads what Publish wrote with Watermill's own
// redisstream Subscriber: any Watermill consumer can read the stream.
func TestPublishInteropWithWatermillSubscriber(t *testing.T) {
	e := newEnv(t)
	p := e.publisher()
	const agent = "interop-agent"
	sent := e.publish(p, []string{agent}, 3)

	// The Subscriber closes the client it is given: give it its own.
	subClient := redis.NewClient(e.client.(*redis.Client).Options())
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client: subClient, ConsumerGroup: "wm", Consumer: "wm-1", DisableIndefiniteInitialBlock: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, e.keys()[ShardFor(agent, e.shards)])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range sent {
		select {
		case m := <-ch:
			if m.Metadata.Get(MetaAgent) != agent {
				t.Errorf("Watermill message metadata %v, want %s=%s", m.Metadata, MetaAgent, agent)
			}
			got = append(got, string(m.Payload))
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("Watermill subscriber received %q, want %q", got, sent)
		}
	}
	if !slices.Equal(got, sent) {
		t.Errorf("Watermill subscriber received %q, want %q", got, sent)
	}
}
