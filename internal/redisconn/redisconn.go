// Package redisconn opens the Redis connection every binary uses, from REDIS_URL and
// REDIS_PASSWORD; REDIS_KEY_PREFIX namespaces every key of a deployment. One URL selects one of
// go-redis's three clients (a single server, Redis Cluster, or Redis Sentinel), all behind
// redis.UniversalClient.
package redisconn

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config addresses the Redis server every binary uses.
type Config struct {
	URL      string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" help:"Redis URL: redis://host:port/db for one server; several addr parameters (redis://h:7000?addr=h:7001&addr=h:7002) for Redis Cluster; master_name=... for Sentinel (the host is then a sentinel)"`
	Password string `env:"REDIS_PASSWORD" help:"Redis password, if not in REDIS_URL"`
	Prefix   string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
	// Cluster forces the cluster client for a URL with a single seed address.
	Cluster bool `env:"REDIS_CLUSTER" help:"use the Redis Cluster client even when REDIS_URL names one seed address"`
	// AllowEviction lets a binary start against a Redis whose maxmemory-policy may evict keys,
	// which can silently drop acknowledged points from the streams.
	AllowEviction bool `env:"REDIS_ALLOW_EVICTION" help:"start even when Redis maxmemory-policy is not noeviction (evicted stream entries are lost points)"`
}

// Mode is the kind of Redis deployment a URL addresses.
type Mode string

// The modes of Parse.
const (
	Single   Mode = "single"
	Cluster  Mode = "cluster"
	Sentinel Mode = "sentinel"
)

// Validate checks that the URL parses in the form it selects and that the key prefix holds no
// hash tag: on Redis Cluster a '{' or '}' in REDIS_KEY_PREFIX would put the prefix's braces, not
// the keys' own "{shard}" tags, in charge of which slot each key lands in (every key of the
// deployment in one slot, or keys that must share a slot in different ones).
func (c Config) Validate() error {
	if _, err := c.Options(); err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("REDIS_KEY_PREFIX %q: must not contain '{' or '}' (Redis Cluster hash tags; the keys carry their own)", c.Prefix)
	}
	return nil
}

// Options turns the URL into go-redis's universal options:
//   - a master_name query parameter selects Sentinel (go-redis's failover URL form; the URL's
//     host and any addr parameters are sentinels);
//   - addr query parameters (more seed addresses), or Cluster (REDIS_CLUSTER=1), select the cluster
//     client (go-redis's cluster URL form);
//   - otherwise one server, as redis.ParseURL reads it.
//
// Password, when set, replaces the URL's.
func (c Config) Options() (*redis.UniversalOptions, error) {
	mode, err := c.Mode()
	if err != nil {
		return nil, err
	}
	var opts *redis.UniversalOptions
	switch mode {
	case Sentinel:
		o, err := redis.ParseFailoverURL(c.URL)
		if err != nil {
			return nil, err
		}
		opts = &redis.UniversalOptions{
			Addrs: o.SentinelAddrs, MasterName: o.MasterName, DB: o.DB,
			Username: o.Username, Password: o.Password,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
			TLSConfig: o.TLSConfig, ClientName: o.ClientName,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, MinIdleConns: o.MinIdleConns, MaxRetries: o.MaxRetries,
		}
	case Cluster:
		o, err := redis.ParseClusterURL(c.URL)
		if err != nil {
			return nil, err
		}
		opts = &redis.UniversalOptions{
			Addrs: o.Addrs, IsClusterMode: true,
			Username: o.Username, Password: o.Password,
			TLSConfig: o.TLSConfig, ClientName: o.ClientName,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, MinIdleConns: o.MinIdleConns, MaxRetries: o.MaxRetries,
			MaxRedirects: o.MaxRedirects, ReadOnly: o.ReadOnly, RouteByLatency: o.RouteByLatency, RouteRandomly: o.RouteRandomly,
		}
	default:
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, err
		}
		opts = &redis.UniversalOptions{
			Addrs: []string{o.Addr}, DB: o.DB,
			Username: o.Username, Password: o.Password,
			TLSConfig: o.TLSConfig, ClientName: o.ClientName,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, MinIdleConns: o.MinIdleConns, MaxRetries: o.MaxRetries,
		}
	}
	if c.Password != "" {
		opts.Password = c.Password
	}
	return opts, nil
}

// Mode reports which client the URL selects (see Options).
func (c Config) Mode() (Mode, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		return Sentinel, nil
	case len(q["addr"]) > 0 || c.Cluster:
		return Cluster, nil
	}
	return Single, nil
}

// NewClient returns the client the URL selects, without connecting. The caller closes it.
func (c Config) NewClient() (redis.UniversalClient, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, fmt.Errorf("parsing REDIS_URL: %w", err)
	}
	mode, _ := c.Mode()
	switch mode {
	case Cluster:
		return redis.NewClusterClient(opts.Cluster()), nil
	case Sentinel:
		return redis.NewFailoverClient(opts.Failover()), nil
	}
	return redis.NewClient(opts.Simple()), nil
}

// Open connects to Redis and pings it within ctx, refusing a server whose eviction policy can
// drop stream entries (see Settings.Refusal; on a cluster every master is asked). The caller
// closes the client.
func Open(ctx context.Context, cfg Config) (redis.UniversalClient, error) {
	client, err := cfg.NewClient()
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	where := cfg.redacted()
	if err := client.Ping(pingCtx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %w", where, err)
	}
	err = ForEachServer(pingCtx, client, func(ctx context.Context, node redis.UniversalClient) error {
		s, err := ReadSettings(ctx, node)
		if err != nil {
			return err
		}
		return s.Refusal(cfg.AllowEviction)
	})
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("redis at %s: %w", where, err)
	}
	return client, nil
}

// Ping checks that Redis answers: on a cluster every master (a client whose commands reach only
// some masters is not ready), otherwise the one server.
func Ping(ctx context.Context, client redis.UniversalClient) error {
	return ForEachServer(ctx, client, func(ctx context.Context, node redis.UniversalClient) error {
		return node.Ping(ctx).Err()
	})
}

// ForEachServer calls fn with every master of a cluster client, or with the client itself.
func ForEachServer(ctx context.Context, client redis.UniversalClient, fn func(ctx context.Context, node redis.UniversalClient) error) error {
	if cc, ok := client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return fn(ctx, node) })
	}
	return fn(ctx, client)
}

// redacted is the URL without its password, for messages.
func (c Config) redacted() string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "(unparsable REDIS_URL)"
	}
	return u.Redacted()
}
