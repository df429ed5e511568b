// Command alerter consumes the metrics streams as consumer group "alerter", evaluates every
// sample and every agent's silence against the alert rules, and emits each alert transition
// once (pub/sub, the alerts stream, history in PostgreSQL and InfluxDB, webhooks), however many
// copies run. See --help for its environment.
package main

import (
	"os"

	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/service"
)

func main() {
	os.Exit(service.Main("alerter", func(c *alerter.Config) service.LogConfig { return c.Log }, alerter.Run))
}
