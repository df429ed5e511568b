package redisconn_test

import (
	"context"
	"fmt"
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
