// Command influx-writer consumes the metrics streams as consumer group "influx-writer" and writes
// them to InfluxDB in batches. Run more copies to share the load; see --help for its environment.
package main

import (
	"os"

	"github.com/agentmonitor/agentmonitor/internal/influxwriter"
	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/process"
)

func main() {
	os.Exit(process.Main("influx-writer", func(c *influxwriter.Config) logging.Config { return c.Log }, influxwriter.Run))
}
