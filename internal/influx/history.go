package influx

import (
	"context"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// QLSeries is one series of an InfluxQL answer.
type QLSeries = influxql.Series

// ErrStatement is wrapped by QueryQL when InfluxDB refused a statement (a bad query, as opposed
// to a server or transport failure).
var ErrStatement = influxql.ErrStatement

// QueryQL runs InfluxQL statements separated by semicolons in one request against the server
// (the statements name their database and retention policy) and returns the series of each,
// by statement; numbers are json.Number, so nanosecond times keep every digit.
func (c *Client) QueryQL(ctx context.Context, stmts string) ([][]QLSeries, error) {
	return c.ql().Exec(ctx, "", "", stmts)
}
