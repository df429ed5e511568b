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

// QueryOne runs one read-only InfluxQL statement and returns its series with numbers as
// json.Number (integers and nanosecond times keep every digit). The caller builds stmt from
// trusted parts: every identifier through influxql.QuoteIdent, never raw request text.
func (c *Client) QueryOne(ctx context.Context, stmt string) ([]QLSeries, error) {
	res, err := c.QueryQL(ctx, stmt)
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return res[0], nil
}

// RawSource returns the fully qualified, quoted InfluxQL source of measurement in the raw bucket:
// on 1.x "db"."rp"."m", or "db".."m" (the default policy) when INFLUXDB_BUCKET names no policy; on
// 2.x "bucket"."autogen"."m", through the virtual DBRP mapping 2.x keeps for every bucket (2.4+).
func (c *Client) RawSource(measurement string) string {
	if !c.isV1Config() {
		return influxql.QuoteIdent(c.cfg.Bucket) + `."autogen".` + influxql.QuoteIdent(measurement)
	}
	db, rp, _ := strings.Cut(c.cfg.Bucket, "/")
	if rp == "" {
		return influxql.QuoteIdent(db) + ".." + influxql.QuoteIdent(measurement)
	}
	return influxql.QuoteIdent(db) + "." + influxql.QuoteIdent(rp) + "." + influxql.QuoteIdent(measurement)
}

// TierSource returns the fully qualified, quoted InfluxQL source of measurement in tier t:
// "db"."rollup_1m"."m" on 1.x, "<bucket>_1m"."autogen"."m" on 2.x (virtual DBRP mapping).
func (c *Client) TierSource(t Tier, measurement string) string {
	if !c.isV1Config() {
		return influxql.QuoteIdent(c.TierBucket(t)) + `."autogen".` + influxql.QuoteIdent(measurement)
	}
	return influxql.QuoteIdent(c.database()) + "." + influxql.QuoteIdent(tierRP(t)) + "." + influxql.QuoteIdent(measurement)
}
