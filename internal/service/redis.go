package service

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig addresses the Redis server every binary uses.
type RedisConfig struct {
	URL      string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" help:"Redis URL (redis:// or rediss://)"`
	Password string `env:"REDIS_PASSWORD" help:"Redis password, if not in REDIS_URL"`
	Prefix   string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
}

// Validate checks that the URL parses.
func (c RedisConfig) Validate() error {
	if _, err := redis.ParseURL(c.URL); err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	return nil
}

// OpenRedis connects to Redis and pings it within ctx. The caller closes the client.
func OpenRedis(ctx context.Context, cfg RedisConfig) (*redis.Client, error) {
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
	return client, nil
}
