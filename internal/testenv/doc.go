// Package testenv starts and isolates the real services that tests use: Redis key prefixes,
// PostgreSQL databases and InfluxDB servers.
package testenv
