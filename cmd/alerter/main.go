// Command alerter consumes the metrics streams as consumer group "alerter", evaluates every
// sample and every agent's silence against the alert rules, and emits each alert transition
// once (pub/sub, the alerts stream, history in PostgreSQL and InfluxDB, webhooks), however many
// copies run. See --help for its environment.
package main

import (
	"os"

	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/process"
)

func main() {
	os.Exit(process.Main("alerter", func(c *alerter.Config) logging.Config { return c.Log }, alerter.Run))
}
