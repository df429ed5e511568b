package redisconn_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stack"
)

func TestOpenRefusesAnEvictingRedis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		args          []string
		allow         bool
		wantErr       string // "" : Open succeeds
		wantWarnings  []string
		wantNoWarning bool
	}{
		{"noeviction with AOF always", nil, false, "", nil, true},
		{"AOF everysec", []string{"--appendfsync", "everysec"}, false, "", []string{"appendfsync is everysec", "REDIS_WAIT_REPLICAS"}, false},
		{"AOF off", []string{"--appendonly", "no"}, false, "", []string{"appendonly is off"}, false},
		{"allkeys-lru", []string{"--maxmemory-policy", "allkeys-lru"}, false, `maxmemory-policy is "allkeys-lru"`, nil, false},
		{"allkeys-lru allowed", []string{"--maxmemory-policy", "allkeys-lru"}, true, "", []string{"allkeys-lru can evict", "REDIS_ALLOW_EVICTION"}, false},
		{"CONFIG renamed away", []string{"--rename-command", "CONFIG", ""}, false, "", []string{"cannot check persistence"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := stack.StartRedis(t.TempDir(), tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Stop() })
			ctx := context.Background()
			c, err := redisconn.Open(ctx, redisconn.Config{URL: r.URL(), AllowEviction: tc.allow})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "REDIS_ALLOW_EVICTION=1") {
					t.Fatalf("Open = %v, want an error containing %q and naming REDIS_ALLOW_EVICTION=1", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open = %v, want nil", err)
			}
			defer c.Close()
			w := redisconn.Warnings(ctx, c)
			if tc.wantNoWarning && len(w) != 0 {
				t.Errorf("Warnings = %q, want none", w)
			}
			for _, want := range tc.wantWarnings {
				if !strings.Contains(strings.Join(w, "\n"), want) {
					t.Errorf("Warnings = %q, want one containing %q", w, want)
				}
			}
		})
	}
}

func TestIsOOMAndTransient(t *testing.T) {
	t.Parallel()
	r, err := stack.StartRedis(t.TempDir(), "--maxmemory", "1mb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	ctx := context.Background()
	big := strings.Repeat("x", 64<<10)
	var oomErr error
	for i := 0; i < 200 && oomErr == nil; i++ {
		oomErr = c.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []string{"v", big}}).Err()
	}
	if !redisconn.IsOOM(oomErr) || !redisconn.IsTransient(oomErr) {
		t.Fatalf("XADD past maxmemory = %v: IsOOM %t, IsTransient %t; want both", oomErr, redisconn.IsOOM(oomErr), redisconn.IsTransient(oomErr))
	}
	if err := c.Get(ctx, "missing").Err(); redisconn.IsTransient(err) {
		t.Errorf("IsTransient(%v) = true, want false", err)
	}
	if err := c.Do(ctx, "NOSUCHCOMMAND").Err(); redisconn.IsTransient(err) {
		t.Errorf("IsTransient(%v) = true, want false", err)
	}
}
