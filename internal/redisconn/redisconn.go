// Package redisconn opens the Redis connection every binary uses, from REDIS_URL and
// REDIS_PASSWORD; REDIS_KEY_PREFIX namespaces every key of a deployment.
package redisconn

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config addresses the Redis server every binary uses.
type Config struct {
	URL      string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" help:"Redis URL (redis:// or rediss://)"`
	Password string `env:"REDIS_PASSWORD" help:"Redis password, if not in REDIS_URL"`
	Prefix   string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
	// AllowEviction lets a binary start against a Redis whose maxmemory-policy may evict keys,
	// which can silently drop acknowledged points from the streams.
	AllowEviction bool `env:"REDIS_ALLOW_EVICTION" help:"start even when Redis maxmemory-policy is not noeviction (evicted stream entries are lost points)"`
}

// Validate checks that the URL parses.
func (c Config) Validate() error {
	if _, err := redis.ParseURL(c.URL); err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	return nil
}

// Open connects to Redis and pings it within ctx. The caller closes the client.
func Open(ctx context.Context, cfg Config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing REDIS_URL: %w", err)
	}
	if cfg.Password != "" {
		opts.Password = cfg.Password
	}
	client := redis.NewClient(opts)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %w", opts.Addr, err)
	}
	s, err := ReadSettings(pingCtx, client)
	if err != nil {
		client.Close()
		return nil, err
	}
	if err := s.Refusal(cfg.AllowEviction); err != nil {
		client.Close()
		return nil, fmt.Errorf("redis at %s: %w", opts.Addr, err)
	}
	return client, nil
}
