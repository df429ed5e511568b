package redisconn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Settings are the Redis server settings that decide whether acknowledged points can be lost:
// an eviction policy other than noeviction may drop stream entries when memory is full; without
// the append-only file a restart loses everything written since the last snapshot; and with
// appendfsync everysec (or no) Redis answers a write before it is on disk, so a crash of Redis
// can lose the last second or two of acknowledged writes (Redis postpones the write of its AOF
// buffer for up to 2 s while a background fsync is slow, and answers clients meanwhile).
type Settings struct {
	// Known is false when the server refused CONFIG GET (managed services often rename or
	// forbid it); the other members are then empty and Why says why.
	Known bool
	Why   string
	// MaxmemoryPolicy is CONFIG GET maxmemory-policy ("noeviction", "allkeys-lru", ...).
	MaxmemoryPolicy string
	// AppendOnly is CONFIG GET appendonly == "yes".
	AppendOnly bool
	// AppendFsync is CONFIG GET appendfsync: "always", "everysec" or "no".
	AppendFsync string
}

// ReadSettings asks the server for maxmemory-policy, appendonly and appendfsync. A server that refuses CONFIG
// (an ACL, a renamed command) gives Settings{Known: false} and no error; a connection failure is
// an error.
func ReadSettings(ctx context.Context, rdb redis.UniversalClient) (Settings, error) {
	m, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil {
		var aof, fsync map[string]string
		if aof, err = rdb.ConfigGet(ctx, "appendonly").Result(); err == nil {
			if fsync, err = rdb.ConfigGet(ctx, "appendfsync").Result(); err == nil {
				return Settings{Known: true, MaxmemoryPolicy: m["maxmemory-policy"],
					AppendOnly: aof["appendonly"] == "yes", AppendFsync: fsync["appendfsync"]}, nil
			}
		}
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return Settings{Why: "CONFIG GET refused: " + rerr.Error()}, nil
	}
	return Settings{}, fmt.Errorf("reading redis settings (CONFIG GET): %w", err)
}

// Refusal returns the error a binary refuses to start with when the eviction policy can drop
// stream entries, unless allowEviction (REDIS_ALLOW_EVICTION) accepts the risk; nil otherwise.
func (s Settings) Refusal(allowEviction bool) error {
	if !s.Known || s.MaxmemoryPolicy == "noeviction" || allowEviction {
		return nil
	}
	return fmt.Errorf("maxmemory-policy is %q, which can evict stream entries and lose acknowledged points: "+
		"set maxmemory-policy noeviction, or REDIS_ALLOW_EVICTION=1 to run anyway", s.MaxmemoryPolicy)
}

// Warnings lists what an operator should know about s (empty when all is well): the append-only
// file off or not fsynced before Redis answers, an eviction policy accepted by
// REDIS_ALLOW_EVICTION, settings that could not be read.
func (s Settings) Warnings() []string {
	if !s.Known {
		return []string{"redis: cannot check persistence and eviction settings (" + s.Why + ")"}
	}
	var w []string
	if !s.AppendOnly {
		w = append(w, "redis: appendonly is off: a Redis restart loses the points written since its last snapshot (set appendonly yes)")
	} else if s.AppendFsync != "always" {
		w = append(w, "redis: appendfsync is "+s.AppendFsync+": Redis acknowledges writes before they are on disk, so a crash of Redis "+
			"can lose up to about 2 s of acknowledged points (set appendfsync always, or have replicas confirm each batch with REDIS_WAIT_REPLICAS)")
	}
	if s.MaxmemoryPolicy != "noeviction" {
		w = append(w, fmt.Sprintf("redis: maxmemory-policy %s can evict stream entries (allowed by REDIS_ALLOW_EVICTION)", s.MaxmemoryPolicy))
	}
	return w
}

// Warnings reads the server's settings and returns their warnings; nil when the server does not
// answer (the readiness check reports that). On a cluster every master is asked (CONFIG GET
// reaches one node only), and a warning names the master it is about.
func Warnings(ctx context.Context, rdb redis.UniversalClient) []string {
	_, cluster := rdb.(*redis.ClusterClient)
	var (
		mu  sync.Mutex
		out []string
	)
	_ = ForEachServer(ctx, rdb, func(ctx context.Context, node redis.UniversalClient) error {
		s, err := ReadSettings(ctx, node)
		if err != nil {
			return nil // an unreachable master fails the readiness check, not this list
		}
		w := s.Warnings()
		if cluster {
			addr := ""
			if c, ok := node.(*redis.Client); ok {
				addr = c.Options().Addr
			}
			for i := range w {
				w[i] = strings.Replace(w[i], "redis: ", "redis "+addr+": ", 1)
			}
		}
		mu.Lock()
		out = append(out, w...)
		mu.Unlock()
		return nil
	})
	slices.Sort(out) // ForEachMaster runs concurrently: keep the list stable
	return out
}

// IsOOM reports whether err is Redis refusing a write because maxmemory is reached (with
// noeviction): the write did not happen and can be retried later, so clients get a 503.
func IsOOM(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "OOM ")
}

// transientPrefixes are Redis error replies that mean "not now" rather than "never": out of
// memory (maxmemory with noeviction), loading the dataset after a restart (the AOF replays),
// a busy script, a failover in progress, a replica not yet writable.
var transientPrefixes = []string{"OOM ", "LOADING ", "BUSY ", "TRYAGAIN ", "MASTERDOWN ", "READONLY ", "CLUSTERDOWN "}

// IsTransient reports whether err is Redis refusing a command for now (IsOOM, loading, busy,
// failing over) or the client finding no connection in time: nothing was written, the request
// can be retried, so clients get a 503 with Retry-After rather than a 500.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return true
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, p := range transientPrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
