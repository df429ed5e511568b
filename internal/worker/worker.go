// Package worker runs a stream-consuming binary: its consumer group on the metrics streams, its
// ops server, and its background loops, stopped in order on shutdown.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Config is what every stream-consuming binary reads besides its own sink's settings.
type Config struct {
	Log     logging.Config
	Redis   redisconn.Config
	Stream  stream.ConsumerConfig
	OpsAddr string `env:"OPS_ADDR" help:"listen address of /healthz, /readyz and /metrics (default per binary)"`
	// Pprof mounts net/http/pprof under /debug/pprof/ on the ops server.
	Pprof bool `env:"OPS_PPROF" help:"serve Go runtime profiles under /debug/pprof/ on OPS_ADDR (operators only: keep OPS_ADDR private)"`
}

// Prepare fills the binary's consumer group, its default ops address and, when CONSUMER_NAME is
// unset, a consumer name that is stable across restarts and distinct per copy on one host: the
// host name and the ops port (two copies on one host cannot share a port). It fails when no such
// name can be derived. Validate checks the result.
func (c *Config) Prepare(group, defaultOpsAddr string) error {
	c.Stream.Group = group
	c.Stream.Prefix = c.Redis.Prefix
	if c.OpsAddr == "" {
		c.OpsAddr = defaultOpsAddr
	}
	if c.Stream.Consumer == "" {
		_, port, err := net.SplitHostPort(c.OpsAddr)
		if err != nil {
			return fmt.Errorf("OPS_ADDR %q: %w", c.OpsAddr, err)
		}
		if port == "0" {
			return fmt.Errorf("CONSUMER_NAME must be set when OPS_ADDR has port 0: the name must be stable across restarts")
		}
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("CONSUMER_NAME unset and no host name: %w", err)
		}
		c.Stream.Consumer = host + "-" + port
	}
	return nil
}

// Validate checks the logger, Redis and consumer settings, naming the variable at fault.
func (c Config) Validate() error {
	if err := c.Log.Validate(); err != nil {
		return err
	}
	if err := c.Redis.Validate(); err != nil {
		return err
	}
	return c.Stream.Validate()
}

// Worker is one running stream-consuming binary: its consumer, the ops server and any background
// loops of its own.
type Worker struct {
	Config   *Config
	Handler  stream.Handler
	Registry *prometheus.Registry
	// Checks are the binary's dependencies for /readyz besides Redis.
	Checks map[string]ops.Check
	// Background loops that run beside the consumer and stop with it (e.g. provisioning, purging).
	Background []func(ctx context.Context) error
}

// Run runs w until ctx is done: the consumer stops reading and finishes the batch in hand,
// then the ops server and the background loops stop, and the Redis client is closed last.
func Run(ctx context.Context, rdb redis.UniversalClient, w Worker, logger *slog.Logger) error {
	cfg := w.Config
	cfg.Stream.Registerer = w.Registry
	consumer, err := stream.NewConsumer(rdb, cfg.Stream, w.Handler, logger)
	if err != nil {
		return fmt.Errorf("building consumer: %w", err)
	}
	collector, err := stream.NewCollector(rdb, stream.CollectorConfig{Prefix: cfg.Redis.Prefix, Shards: cfg.Stream.Shards}, logger)
	if err != nil {
		return fmt.Errorf("building stream collector: %w", err)
	}
	if err := w.Registry.Register(collector); err != nil {
		return fmt.Errorf("registering stream collector: %w", err)
	}
	checks := map[string]ops.Check{"redis": func(ctx context.Context) error { return redisconn.Ping(ctx, rdb) }}
	for name, c := range w.Checks {
		checks[name] = c
	}
	for _, warning := range redisconn.Warnings(ctx, rdb) {
		logger.Warn(warning)
	}
	opsServer := ops.NewServerReady(cfg.OpsAddr, w.Registry, ops.Readiness{
		Checks:   checks,
		Warnings: func(ctx context.Context) []string { return redisconn.Warnings(ctx, rdb) },
	}, logger)
	if cfg.Pprof {
		opsServer.EnablePprof()
	}

	logger.Info("worker running", "group", cfg.Stream.Group, "consumer", cfg.Stream.Consumer, "ops", cfg.OpsAddr)
	stopping := make(chan time.Time, 1)
	go func() { <-ctx.Done(); stopping <- time.Now() }()
	consumerDone := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(consumerDone)
		return consumer.Run(gctx)
	})
	// The ops server and the loops outlive the consumer's drain, so /readyz and /metrics answer
	// while the last batch is flushed.
	auxCtx, stopAux := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAux()
	g.Go(func() error {
		go func() {
			select {
			case <-consumerDone:
			case <-gctx.Done():
				<-consumerDone
			}
			stopAux()
		}()
		return opsServer.Run(auxCtx)
	})
	for _, loop := range w.Background {
		g.Go(func() error { return loop(auxCtx) })
	}
	err = g.Wait()
	select {
	case t := <-stopping:
		logger.Info("worker drained", "took", time.Since(t).Round(time.Millisecond))
	default:
	}
	if cerr := rdb.Close(); cerr != nil {
		logger.Warn("closing redis", "err", cerr)
	}
	return err
}
