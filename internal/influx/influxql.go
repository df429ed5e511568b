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

// Series is one series of an InfluxQL answer.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// InfluxQL runs one InfluxQL statement on a 1.x server (POST /query) with the client's database
// and retention policy as defaults (db and rp of the bucket "db/rp") and times as Unix
// nanoseconds, and returns the first statement's series. Hand-written over net/http because the
// official client speaks only Flux; provisioning needs InfluxQL, and counting with it is far
// cheaper for the server than Flux.
func (c *Client) InfluxQL(ctx context.Context, stmt string) ([]Series, error) {
	db, rp, _ := strings.Cut(c.cfg.Bucket, "/")
	form := url.Values{"q": {stmt}, "db": {db}, "epoch": {"ns"}}
	if rp != "" {
		form.Set("rp", rp)
	}
	resp, err := c.do(ctx, http.MethodPost, "query", strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", stmt, err)
	}
	defer drain(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading answer to %s: %w", stmt, err)
	}
	var out struct {
		Error   string `json:"error"`
		Results []struct {
			Error  string   `json:"error"`
			Series []Series `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
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

// QuoteIdent quotes an InfluxQL identifier. Hand-written (three replacements, as
// influxql.QuoteIdent does) rather than importing the InfluxQL parser for it; the scanner
// accepts exactly these escapes inside double quotes.
func QuoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
