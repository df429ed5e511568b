package influx

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/influxdata/influxdb-client-go/v2/api/query"
)

// Query runs a Flux query and returns all its records. The caller builds flux from trusted parts
// only: request text goes in through FluxString after validation, never spliced raw
// (QueryWithParams does not work on 1.8, see PITFALLS.md).
func (c *Client) Query(ctx context.Context, flux string) ([]*query.FluxRecord, error) {
	res, err := c.query.Query(ctx, flux)
	if err != nil {
		return nil, fmt.Errorf("querying influxdb: %w", err)
	}
	defer res.Close()
	var records []*query.FluxRecord
	for res.Next() {
		records = append(records, res.Record())
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("reading influxdb query result: %w", err)
	}
	return records, nil
}

// fluxEscaper escapes what the Flux scanner treats specially inside a string literal: the quote,
// the backslash, line breaks, and "$", which would start ${interpolation}. Flux has no "\$"
// escape ("\${" only, and 1.8's scanner mis-reads "$\\"), so "$" goes in as the byte escape \x24.
var fluxEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\x24`, "\n", `\n`, "\r", `\r`, "\t", `\t`)

// FluxString returns s as a Flux string literal, quotes included, that evaluates to exactly s.
func FluxString(s string) string {
	return `"` + fluxEscaper.Replace(s) + `"`
}

// namePattern is what CountPoints accepts as a measurement or agent id: strict on purpose, so that
// nothing but a plain name ever reaches a query.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$`)

// CountPoints returns how many points (distinct series and timestamp, whatever their fields) the
// bucket holds for measurement and agent (the tag "agent"), over all time. An empty measurement
// or agent matches any. Names outside [A-Za-z0-9][A-Za-z0-9_.:-]* are refused.
func (c *Client) CountPoints(ctx context.Context, measurement, agent string) (int, error) {
	var preds []string
	for _, f := range []struct{ column, value string }{{"_measurement", measurement}, {"agent", agent}} {
		if f.value == "" {
			continue
		}
		if !namePattern.MatchString(f.value) {
			return 0, fmt.Errorf("counting points: %s %q: want a name matching %s", f.column, f.value, namePattern)
		}
		preds = append(preds, fmt.Sprintf("r.%s == %s", f.column, FluxString(f.value)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "from(bucket: %s)\n", FluxString(c.cfg.Bucket))
	// The whole nanosecond range InfluxDB can store (stop is exclusive).
	b.WriteString("  |> range(start: 1677-09-21T00:12:43.145224194Z, stop: 2262-04-11T23:47:16.854775807Z)\n")
	if len(preds) > 0 {
		fmt.Fprintf(&b, "  |> filter(fn: (r) => %s)\n", strings.Join(preds, " and "))
	}
	// One row per field value: give every value the same type so that series of different field
	// types can be merged, keep one row per (series, time), and count them.
	b.WriteString(`  |> map(fn: (r) => ({r with _value: 1}))
  |> group(mode: "except", columns: ["_field", "_time", "_value"])
  |> unique(column: "_time")
  |> group()
  |> count()
`)
	records, err := c.Query(ctx, b.String())
	if err != nil {
		return 0, fmt.Errorf("counting points: %w", err)
	}
	if len(records) == 0 {
		return 0, nil // no table at all: nothing matched
	}
	n, ok := records[0].Value().(int64)
	if !ok {
		return 0, fmt.Errorf("counting points: unexpected count %v (%T)", records[0].Value(), records[0].Value())
	}
	return int(n), nil
}
