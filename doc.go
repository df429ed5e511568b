// Package agentmonitor is the root of Agent Monitor: agents push metrics over HTTP to a gateway that
// appends them to Redis Streams, from which worker binaries write history to InfluxDB, last_seen to
// PostgreSQL, and alerts. The binaries are under cmd/, their packages under internal/; this package
// holds only repository-level tests, such as the check of compose.yaml.
package agentmonitor
