package pgsync

import (
	"context"
	"errors"
	"log/slog"

	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/worker"
)

// Group is the consumer group every pg-sync copy joins.
const Group = "pg-sync"

// Config is the pg-sync binary's configuration.
type Config struct {
	worker.Config
	Postgres postgres.Config
}

// Prepare fills the worker settings the binary chooses: its group, ops address and consumer name.
func (c *Config) Prepare() error { return c.Config.Prepare(Group, ":9102") }

// Validate checks every setting.
func (c Config) Validate() error {
	return errors.Join(c.Config.Validate(), c.Postgres.Validate())
}

// Run consumes the metrics streams into agents.last_seen until ctx is done, then drains.
func Run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	db, err := postgres.OpenMigrated(ctx, cfg.Postgres.URL)
	if err != nil {
		return err
	}
	defer db.Close()
	rdb, err := redisconn.Open(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	reg := ops.NewRegistry()
	return worker.Run(ctx, rdb, worker.Worker{
		Config:   &cfg.Config,
		Handler:  NewSink(postgres.NewAgentStore(db), logger, reg).Handle,
		Registry: reg,
		Checks:   map[string]ops.Check{"postgres": db.PingContext},
	}, logger)
}
