package influx

import (
	"context"
	"strings"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// InfluxQL runs one InfluxQL statement on a 1.x server with the client's database and retention
// policy (the bucket "db/rp") as defaults, times as Unix nanoseconds, through the client's
// connections and token, and returns the first statement's series.
func (c *Client) InfluxQL(ctx context.Context, stmt string) ([]influxql.Series, error) {
	db, rp, _ := strings.Cut(c.cfg.Bucket, "/")
	return c.InfluxQLIn(ctx, db, rp, stmt)
}

// InfluxQLIn runs one InfluxQL statement with db and rp as the default database and retention
// policy (either may be empty). 2.x serves the same endpoint for buckets with a DBRP mapping.
func (c *Client) InfluxQLIn(ctx context.Context, db, rp, stmt string) ([]influxql.Series, error) {
	return c.ql().Query(ctx, db, rp, stmt)
}

// ql returns the InfluxQL client of this server.
func (c *Client) ql() influxql.Client {
	return influxql.Client{HTTP: c.http, URL: c.base.String(), Token: c.cfg.Token}
}
