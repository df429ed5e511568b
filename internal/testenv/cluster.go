package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisClusterURL is the Redis Cluster tests use when TEST_REDIS_CLUSTER_URL is unset: the
// six local nodes of go tool task cluster:up (which go tool task test starts when they are down).
const DefaultRedisClusterURL = "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002&addr=127.0.0.1:7003&addr=127.0.0.1:7004&addr=127.0.0.1:7005"

// RedisClusterURL returns TEST_REDIS_CLUSTER_URL, or DefaultRedisClusterURL.
func RedisClusterURL() string {
	if u := os.Getenv("TEST_REDIS_CLUSTER_URL"); u != "" {
		return u
	}
	return DefaultRedisClusterURL
}

// RedisCluster connects to the Redis Cluster at RedisClusterURL and returns a cluster client and a
// key prefix unique to this test, like Redis does for the single server. An unreachable cluster
// fails the test (go tool task cluster:up starts one). At cleanup every key under the prefix is
// deleted on every master, and the client is closed.
func RedisCluster(t testing.TB) (client *redis.ClusterClient, prefix string) {
	t.Helper()
	url := RedisClusterURL()
	opts, err := redis.ParseClusterURL(url)
	if err != nil {
		t.Fatalf("parsing TEST_REDIS_CLUSTER_URL %q: %v", url, err)
	}
	client = redis.NewClusterClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		t.Fatalf("Redis Cluster at %s is unreachable (go tool task cluster:up, or set TEST_REDIS_CLUSTER_URL): %v", url, err)
	}
	prefix = newPrefix()
	t.Cleanup(func() {
		client.Close()
		c := redis.NewClusterClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return deleteKeys(node, prefix)
		})
		if err != nil {
			t.Errorf("deleting Redis Cluster keys under %q: %v", prefix, err)
		}
	})
	return client, prefix
}

// OnBothRedis runs f as two subtests, "single" against Redis and "cluster" against RedisCluster,
// each with its own prefix: for code whose keys must also work on a cluster (several keys in one
// script or MULTI must share a slot there).
func OnBothRedis(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient, prefix string)) {
	t.Helper()
	t.Run("single", func(t *testing.T) {
		rdb, prefix := Redis(t)
		f(t, rdb, prefix)
	})
	t.Run("cluster", func(t *testing.T) {
		rdb, prefix := RedisCluster(t)
		f(t, rdb, prefix)
	})
}
