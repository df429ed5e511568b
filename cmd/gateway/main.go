// Command gateway is Agent Monitor's HTTP front: agents push metrics to it, operators and
// dashboards use its API. It appends accepted batches to the Redis metrics streams. Run more
// copies behind a load balancer to scale; see --help for its environment.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/agentmonitor/agentmonitor/internal/gateway"
	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/process"
)

func main() {
	os.Exit(process.Main("gateway", func(c *gateway.Config) logging.Config { return c.Log }, run))
}

func run(ctx context.Context, cfg *gateway.Config, logger *slog.Logger) error {
	g, err := gateway.New(ctx, *cfg, logger)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}
