package influxwriter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/worker"
)

// Group is the consumer group every influx-writer copy joins.
const Group = "influx-writer"

// Config is the influx-writer binary's configuration.
type Config struct {
	worker.Config
	Influx influx.Config
}

// Prepare fills the worker settings the binary chooses: its group, ops address and consumer name.
func (c *Config) Prepare() error { return c.Config.Prepare(Group, ":9101") }

// Validate checks every setting.
func (c Config) Validate() error {
	return errors.Join(c.Config.Validate(), c.Influx.Validate())
}

// Run consumes the metrics streams into InfluxDB until ctx is done, then drains. InfluxDB need not
// be up at start: the bucket is provisioned as soon as it answers, and until then writes fail
// transiently, so entries wait in the stream.
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
	provisioned := make(chan struct{})
	sink := NewSink(client, logger, reg)
	return worker.Run(ctx, rdb, worker.Worker{
		Config: &cfg.Config,
		Handler: func(ctx context.Context, batch []*stream.Message) error {
			select {
			case <-provisioned:
			default:
				return errNotProvisioned
			}
			return sink.Handle(ctx, batch)
		},
		Registry: reg,
		Checks:   map[string]ops.Check{"influxdb": client.Ping},
		Background: []func(context.Context) error{func(ctx context.Context) error {
			client.ProvisionUntilDone(ctx, provisioned, logger)
			return nil
		}},
	}, logger)
}

var errNotProvisioned = errors.New("influxdb bucket not provisioned yet")
