package influx

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// QuoteIdent returns s as a double-quoted InfluxQL identifier (database, retention policy,
// measurement, field or tag key) that the parser reads back as exactly s, whatever s holds.
func QuoteIdent(s string) string { return quoteIdent(s) }

// QLSeries is one series of an InfluxQL answer: its measurement, its tags (with GROUP BY), the
// column names and the rows. Numbers come as json.Number, so that integers keep every digit, and
// times as such numbers too: Unix nanoseconds.
type QLSeries struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// InfluxQL runs one read-only InfluxQL statement (GET /query: 1.x, or 2.x's 1.x-compatible
// endpoint) and returns the series of its first result. The caller builds stmt from trusted
// parts: every identifier through QuoteIdent, never raw request text.
func (c *Client) InfluxQL(ctx context.Context, stmt string) ([]QLSeries, error) {
	q := url.Values{"q": {stmt}, "epoch": {"ns"}}
	resp, err := c.do(ctx, http.MethodGet, "query?"+q.Encode(), nil, "")
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", stmt, err)
	}
	defer drain(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("reading answer to %s: %w", stmt, err)
	}
	var out struct {
		Error   string `json:"error"`
		Results []struct {
			Error  string     `json:"error"`
			Series []QLSeries `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("running %s: status %d: %.200s", stmt, resp.StatusCode, body)
	}
	switch {
	case out.Error != "":
		return nil, fmt.Errorf("running %s: status %d: %s", stmt, resp.StatusCode, out.Error)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("running %s: status %d", stmt, resp.StatusCode)
	case len(out.Results) == 0:
		return nil, nil
	case out.Results[0].Error != "":
		return nil, fmt.Errorf("running %s: %s", stmt, out.Results[0].Error)
	}
	return out.Results[0].Series, nil
}

// RawSource returns the fully qualified, quoted InfluxQL source of measurement in the raw bucket:
// on 1.x "db"."rp"."m", or "db".."m" (the default policy) when INFLUXDB_BUCKET names no policy; on
// 2.x "bucket"."autogen"."m", through the virtual DBRP mapping 2.x keeps for every bucket (2.4+).
func (c *Client) RawSource(measurement string) string {
	if !c.isV1Config() {
		return quoteIdent(c.cfg.Bucket) + `."autogen".` + quoteIdent(measurement)
	}
	db, rp, _ := strings.Cut(c.cfg.Bucket, "/")
	if rp == "" {
		return quoteIdent(db) + ".." + quoteIdent(measurement)
	}
	return quoteIdent(db) + "." + quoteIdent(rp) + "." + quoteIdent(measurement)
}

// TierSource returns the fully qualified, quoted InfluxQL source of measurement in tier t:
// "db"."rollup_1m"."m" on 1.x, "<bucket>_1m"."autogen"."m" on 2.x (virtual DBRP mapping).
func (c *Client) TierSource(t Tier, measurement string) string {
	if !c.isV1Config() {
		return quoteIdent(c.TierBucket(t)) + `."autogen".` + quoteIdent(measurement)
	}
	return quoteIdent(c.database()) + "." + quoteIdent(tierRP(t)) + "." + quoteIdent(measurement)
}
