// Package influxql runs InfluxQL statements on an InfluxDB 1.x server over HTTP (POST /query). It
// is the repository's one InfluxQL client: the influx adapter provisions databases and retention
// policies with it, the load tool counts points with it, and the test harness inspects its
// servers with it. Hand-written over net/http because the official client speaks only Flux, and
// counting with InfluxQL is far cheaper for the server than Flux. It imports nothing of this
// module, so that every layer may use it.
package influxql

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// ErrStatement is wrapped by Exec when InfluxDB refused a statement (a bad query, as opposed to
// a server or transport failure).
var ErrStatement = errors.New("influxdb refused the statement")

// MaxAnswer is the largest answer read; a longer one is an error, so that a wide query cannot
// exhaust the caller's memory.
const MaxAnswer = 64 << 20

// Query runs one statement with db and rp as the default database and retention policy (either
// may be empty) and times as Unix nanoseconds, and returns the first statement's series or its
// error. Values are decoded as encoding/json does (numbers as float64).
func (c Client) Query(ctx context.Context, db, rp, stmt string) ([]Series, error) {
	res, err := c.run(ctx, db, rp, stmt, false)
	switch {
	case err != nil:
		return nil, fmt.Errorf("running %s: %w", stmt, err)
	case len(res) == 0:
		return nil, nil
	}
	return res[0], nil
}

// Exec runs statements separated by semicolons in one request and returns the series of each,
// by statement. Numbers are decoded as json.Number, so nanosecond times and large integers keep
// every digit. A refused statement wraps ErrStatement.
func (c Client) Exec(ctx context.Context, db, rp, stmts string) ([][]Series, error) {
	res, err := c.run(ctx, db, rp, stmts, true)
	if err != nil {
		return nil, fmt.Errorf("running influxql query: %w", err)
	}
	return res, nil
}

func (c Client) run(ctx context.Context, db, rp, stmts string, useNumber bool) ([][]Series, error) {
	form := url.Values{"q": {stmts}, "epoch": {"ns"}}
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
		// 1.8 accepts "Token user:password" on every endpoint, 2.x "Token <api token>".
		req.Header.Set("Authorization", "Token "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > MaxAnswer {
		return nil, fmt.Errorf("the answer is longer than %d bytes", MaxAnswer)
	}
	var out struct {
		Error   string `json:"error"`
		Results []struct {
			StatementID int      `json:"statement_id"`
			Error       string   `json:"error"`
			Series      []Series `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if useNumber {
		dec.UseNumber()
	}
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	switch {
	case out.Error != "":
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, out.Error)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	res := make([][]Series, len(out.Results))
	for i, r := range out.Results {
		if r.Error != "" {
			return nil, fmt.Errorf("%w: statement %d: %s", ErrStatement, r.StatementID, r.Error)
		}
		if r.StatementID >= 0 && r.StatementID < len(res) {
			i = r.StatementID
		}
		res[i] = r.Series
	}
	return res, nil
}

// QuoteIdent quotes an identifier. Hand-written (three replacements, as the InfluxQL parser's
// QuoteIdent does) rather than importing the parser for it; the scanner accepts exactly these
// escapes inside double quotes.
func QuoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
