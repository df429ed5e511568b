// Package rollup is the rollup worker: it computes the 1m, 5m, 1h and 1d rollups of the raw
// points (min, max, mean, count, sum and last per series and field) and keeps them correct when
// points arrive late.
//
// As consumer group "rollup" on the metrics streams it marks each touched (measurement, 1m
// window) dirty in Redis, acking only after the mark. A scheduler loop in every copy claims dirty
// windows once they are closed (end plus ROLLUP_GRACE) under a lease, recomputes each from the
// tier below (1m from raw points, 5m from 1m, 1h from 5m, 1d from 1h), overwrites the window's
// points (same timestamp and tags), marks the parent window dirty and releases the lease. A
// window marked again while in flight is computed again afterwards; a lease whose worker died
// expires and the window goes back to dirty. So a late point corrects every tier, a crash loses
// no window, and two copies compute a window once each time it changes, never at once.
package rollup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/worker"
)

// Group is the consumer group every rollup copy joins.
const Group = "rollup"

// Config is the rollup binary's configuration.
type Config struct {
	worker.Config
	Influx influx.Config
	Tiers  influx.TierConfig

	AfterGroup  string        `env:"ROLLUP_AFTER_GROUP" envDefault:"influx-writer" help:"consumer group that writes raw points to InfluxDB; a batch is marked only once that group has acked it (empty: do not wait)"`
	Grace       time.Duration `env:"ROLLUP_GRACE" envDefault:"1m" help:"how long after a window ends it is first computed (points still on their way); every tier"`
	Interval    time.Duration `env:"ROLLUP_INTERVAL" envDefault:"5s" help:"how often to look for ready windows when none was ready"`
	Lease       time.Duration `env:"ROLLUP_LEASE" envDefault:"2m" help:"how long a copy holds a window it computes before another copy may take it over"`
	Concurrency int           `env:"ROLLUP_CONCURRENCY" envDefault:"4" help:"windows one copy computes at once"`
	RetryDelay  time.Duration `env:"ROLLUP_RETRY_DELAY" envDefault:"10s" help:"wait before computing a window again after a failure"`
}

// Prepare fills the worker settings the binary chooses: its group, ops address and consumer name.
func (c *Config) Prepare() error { return c.Config.Prepare(Group, ":9104") }

// Validate checks every setting.
func (c Config) Validate() error {
	var p config.Problems
	p.Add(c.Config.Validate())
	p.Add(c.Influx.Validate())
	p.Want(c.Grace >= 0, "ROLLUP_GRACE=%s: want 0 or more", c.Grace)
	p.Want(c.Interval > 0, "ROLLUP_INTERVAL=%s: want > 0", c.Interval)
	p.Want(c.Lease >= time.Second, "ROLLUP_LEASE=%s: want >= 1s", c.Lease)
	p.Want(c.Concurrency > 0 && c.Concurrency <= 256, "ROLLUP_CONCURRENCY=%d: want 1 to 256", c.Concurrency)
	p.Want(c.RetryDelay > 0, "ROLLUP_RETRY_DELAY=%s: want > 0", c.RetryDelay)
	p.Add(c.Tiers.Validate())
	return p.Err()
}

// RollerConfig returns the scheduler settings of c.
func (c Config) RollerConfig() RollerConfig {
	return RollerConfig{Grace: c.Grace, Interval: c.Interval, Lease: c.Lease, Concurrency: c.Concurrency, RetryDelay: c.RetryDelay}
}

// Run marks dirty windows from the metrics streams and computes them until ctx is done, then
// drains. InfluxDB need not be up at start: the raw database and the tiers' retention policies
// are provisioned as soon as it answers, and only then does the scheduler start; marking does not
// need InfluxDB.
func Run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	client, err := influx.New(cfg.Influx)
	if err != nil {
		return fmt.Errorf("building influxdb client: %w", err)
	}
	defer client.Close()
	rdb, err := redisconn.Open(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	reg := ops.NewRegistry()
	store := NewStore(rdb, cfg.Redis.Prefix)
	metrics := NewMetrics(store, logger)
	if err := metrics.Register(reg); err != nil {
		return fmt.Errorf("registering rollup metrics: %w", err)
	}
	marker := NewMarker(store, cfg.AfterGroup, cfg.Grace, metrics)
	roller := NewRoller(cfg.RollerConfig(), store, client, metrics, logger)
	return worker.Run(ctx, rdb, worker.Worker{
		Config:   &cfg.Config,
		Handler:  stream.Handler(marker.Handle),
		Registry: reg,
		Checks:   map[string]ops.Check{"influxdb": client.Ping},
		Background: []func(context.Context) error{func(ctx context.Context) error {
			if !client.ProvisionAllUntilDone(ctx, cfg.Tiers, logger) {
				return nil
			}
			return roller.Run(ctx)
		}},
	}, logger)
}
