// Package influxql runs InfluxQL statements on an InfluxDB 1.x server over HTTP (POST /query). It
// is the repository's one InfluxQL client: the influx adapter provisions databases and retention
// policies with it, the load tool counts points with it, and the test harness inspects its
// servers with it. Hand-written over net/http because the official client speaks only Flux, and
// counting with InfluxQL is far cheaper for the server than Flux. It imports nothing of this
// module, so that every layer may use it.
package influxql

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

// Client addresses one server.
type Client struct {
	HTTP  *http.Client // nil: http.DefaultClient
	URL   string       // base URL, like http://127.0.0.1:8086
	Token string       // sent as "Authorization: Token <token>" (user:password on 1.x); empty: none
}

// Query runs one statement with db and rp as the default database and retention policy (either
// may be empty) and times as Unix nanoseconds, and returns the first statement's series or its
// error.
func (c Client) Query(ctx context.Context, db, rp, stmt string) ([]Series, error) {
	form := url.Values{"q": {stmt}, "epoch": {"ns"}}
	if db != "" {
		form.Set("db", db)
	}
	if rp != "" {
		form.Set("rp", rp)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("building query request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.Token != "" {
		req.Header.Set("Authorization", "Token "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", stmt, err)
	}
	defer resp.Body.Close()
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

// QuoteIdent quotes an identifier. Hand-written (three replacements, as the InfluxQL parser's
// QuoteIdent does) rather than importing the parser for it; the scanner accepts exactly these
// escapes inside double quotes.
func QuoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
