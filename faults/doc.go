// Package faults is the fault suite: it runs the real binaries (internal/stack) against private
// Redis, PostgreSQL and InfluxDB instances, drives sustained agent load while it kills, stops and
// restarts them, and checks with a ledger that every acknowledged point reached InfluxDB exactly
// once, that no refused point did, and what agents were answered meanwhile. The tests are the
// suite: `go test ./faults` is the short CI variant, `go tool task faults` the long one (-long).
package faults
