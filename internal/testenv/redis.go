package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is the Redis tests use when TEST_REDIS_URL is unset.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Redis connects to the Redis at TEST_REDIS_URL (default DefaultRedisURL) and returns a client and
// a key prefix unique to this test, "t:<random hex>:". The test must put every key it creates under
// the prefix (pass it as REDIS_KEY_PREFIX). An unreachable Redis fails the test: these tests must
// run, in CI too. At cleanup every key under the prefix is deleted (SCAN MATCH, UNLINK) with a fresh
// connection, so the test may close the returned client itself; otherwise cleanup closes it.
func Redis(t testing.TB) (client *redis.Client, prefix string) {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		url = DefaultRedisURL
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parsing TEST_REDIS_URL %q: %v", url, err)
	}
	client = redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		t.Fatalf("Redis at %s is unreachable (start it, or set TEST_REDIS_URL): %v", opts.Addr, err)
	}
	prefix = newPrefix()

	t.Cleanup(func() {
		client.Close() // a second Close after the test's own returns an error, which is fine
		c := redis.NewClient(opts)
		defer c.Close()
		if err := deleteKeys(c, prefix); err != nil {
			t.Errorf("deleting Redis keys under %q: %v", prefix, err)
		}
	})
	return client, prefix
}

// newPrefix returns a key prefix unique to one test: "t:<random hex>:".
func newPrefix() string {
	var b [8]byte
	rand.Read(b[:])
	return "t:" + hex.EncodeToString(b[:]) + ":"
}

// deleteKeys deletes every key starting with prefix.
func deleteKeys(c *redis.Client, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pattern := globEscape(prefix) + "*"
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			// One UNLINK per key: on a cluster node a multi-key UNLINK must stay in one slot.
			pipe := c.Pipeline()
			for _, k := range keys {
				pipe.Unlink(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// globEscape escapes the characters SCAN MATCH treats as pattern syntax.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
