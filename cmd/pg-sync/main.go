// Command pg-sync consumes the metrics streams as consumer group "pg-sync" and keeps each agent's
// last_seen in PostgreSQL. Run more copies to share the load; see --help for its environment.
package main

import (
	"os"

	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/pgsync"
	"github.com/agentmonitor/agentmonitor/internal/process"
)

func main() {
	os.Exit(process.Main("pg-sync", func(c *pgsync.Config) logging.Config { return c.Log }, pgsync.Run))
}
