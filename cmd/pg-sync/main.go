// Command pg-sync consumes the metrics streams as consumer group "pg-sync" and keeps each agent's
// last_seen in PostgreSQL. Run more copies to share the load; see --help for its environment.
package main

import (
	"os"

	"github.com/agentmonitor/agentmonitor/internal/pgsync"
	"github.com/agentmonitor/agentmonitor/internal/service"
)

func main() {
	os.Exit(service.Main("pg-sync", func(c *pgsync.Config) service.LogConfig { return c.Log }, pgsync.Run))
}
