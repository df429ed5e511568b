// Command rollup computes the 1m, 5m, 1h and 1d rollups of the raw points and keeps them correct
// when points arrive late: it consumes the metrics streams as consumer group "rollup" to mark
// touched windows, and recomputes them once closed. Run more copies to share the load; see --help
// for its environment.
package main

import (
	"os"

	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/process"
	"github.com/agentmonitor/agentmonitor/internal/rollup"
)

func main() {
	os.Exit(process.Main("rollup", func(c *rollup.Config) logging.Config { return c.Log }, rollup.Run))
}
