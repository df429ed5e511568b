// Command rollup computes the 1m, 5m, 1h and 1d rollups of the raw points and keeps them correct
// when points arrive late: it consumes the metrics streams as consumer group "rollup" to mark
// touched windows, and recomputes them once closed. Run more copies to share the load; see --help
// for its environment.
package main

import (
	"os"

	"github.com/agentmonitor/agentmonitor/internal/rollup"
	"github.com/agentmonitor/agentmonitor/internal/service"
)

func main() {
	os.Exit(service.Main("rollup", func(c *rollup.Config) service.LogConfig { return c.Log }, rollup.Run))
}
