package redisconn_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestModeFromURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
		want    redisconn.Mode
		addrs   int
	}{
		{"redis://127.0.0.1:6379/0", false, redisconn.Single, 1},
		{"redis://127.0.0.1:6379/0", true, redisconn.Cluster, 1},
		{"redis://h:7000?addr=h:7001&addr=h:7002", false, redisconn.Cluster, 3},
		{"redis://s:26379/0?master_name=mymaster", false, redisconn.Sentinel, 1},
		{"redis://s:26379/0?master_name=mymaster&addr=s2:26379", false, redisconn.Sentinel, 2},
	} {
		cfg := redisconn.Config{URL: tc.url, Cluster: tc.cluster}
		got, err := cfg.Mode()
		if err != nil || got != tc.want {
			t.Errorf("Mode(%q, cluster=%v) = %q, %v; want %q", tc.url, tc.cluster, got, err, tc.want)
		}
		opts, err := cfg.Options()
		if err != nil {
			t.Fatalf("Options(%q): %v", tc.url, err)
		}
		if len(opts.Addrs) != tc.addrs {
			t.Errorf("Options(%q).Addrs = %v, want %d addresses", tc.url, opts.Addrs, tc.addrs)
		}
		if tc.want == redisconn.Sentinel && opts.MasterName != "mymaster" {
			t.Errorf("Options(%q).MasterName = %q", tc.url, opts.MasterName)
		}
	}
	if err := (redisconn.Config{URL: "redis://h:1?addr=h:2&bogus=1"}).Validate(); err == nil {
		t.Error("a cluster URL with an unknown parameter validated")
	}
}

func TestOpenCluster(t *testing.T) {
	_, prefix := testenv.RedisCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := redisconn.Open(ctx, redisconn.Config{URL: testenv.RedisClusterURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("Open gave %T, want the cluster client", c)
	}
	// Keys in many slots must all be writable through the one client.
	for i := range 50 {
		if err := c.Set(ctx, fmt.Sprintf("%sk%d", prefix, i), i, time.Minute).Err(); err != nil {
			t.Fatalf("SET on the cluster: %v", err)
		}
	}
}

func TestValidateRefusesHashTagsInThePrefix(t *testing.T) {
	for _, prefix := range []string{"{am}:", "am}", "a{b"} {
		err := redisconn.Config{URL: "redis://127.0.0.1:6379/0", Prefix: prefix}.Validate()
		if err == nil || !strings.Contains(err.Error(), "REDIS_KEY_PREFIX") {
			t.Errorf("Validate(prefix %q) = %v, want an error naming REDIS_KEY_PREFIX", prefix, err)
		}
	}
	if err := (redisconn.Config{URL: "redis://127.0.0.1:6379/0", Prefix: "am:prod:"}).Validate(); err != nil {
		t.Errorf("Validate(prefix am:prod:) = %v", err)
	}
}

// TestClusterPubSub checks what the alert feed relies on: a message PUBLISHed through the cluster
// client reaches a subscriber of the same client, whichever nodes the two commands go to (PUBLISH
// on a cluster is forwarded to every node).
func TestClusterPubSub(t *testing.T) {
	_, prefix := testenv.RedisCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := redisconn.Open(ctx, redisconn.Config{URL: testenv.RedisClusterURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := redisconn.Ping(ctx, c); err != nil {
		t.Fatalf("Ping(every master) = %v", err)
	}
	pub, err := redisconn.Open(ctx, redisconn.Config{URL: testenv.RedisClusterURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	channel := prefix + "alerts"
	sub := c.Subscribe(ctx, channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatalf("subscribing on the cluster: %v", err)
	}
	for i := range 20 {
		want := fmt.Sprintf("event %d", i)
		if err := pub.Publish(ctx, channel, want).Err(); err != nil {
			t.Fatalf("PUBLISH on the cluster: %v", err)
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receiving %q: %v", want, err)
		}
		if msg.Payload != want {
			t.Fatalf("received %q, want %q", msg.Payload, want)
		}
	}
}
