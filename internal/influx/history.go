package influx

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

// QLSeries is one series of an InfluxQL answer: its measurement, its GROUP BY tags, and its rows,
// whose numbers are json.Number and whose times are Unix nanoseconds (json.Number too).
type QLSeries struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// ErrStatement marks a statement InfluxDB answered with an error of its own (a type it cannot
// aggregate, a syntax it does not know), as opposed to a server that did not answer.
var ErrStatement = errors.New("influxdb refused the statement")

// maxQLAnswer bounds an InfluxQL answer read into memory; callers bound their queries far below.
const maxQLAnswer = 64 << 20

// QueryQL runs one or more InfluxQL statements, separated by ";", on a 1.x server (or a 2.x
// server's v1 compatibility endpoint, which needs a DBRP mapping) through POST /query with
// timestamps as Unix nanoseconds, and returns the series of each statement in order. The caller
// builds stmts from validated and quoted parts only. ctx bounds the request; an error of any
// statement fails the whole call.
func (c *Client) QueryQL(ctx context.Context, stmts string) ([][]QLSeries, error) {
	form := url.Values{"q": {stmts}, "epoch": {"ns"}}
	resp, err := c.do(ctx, http.MethodPost, "query", strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
	if err != nil {
		return nil, fmt.Errorf("running influxql query: %w", err)
	}
	defer drain(resp)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxQLAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("reading influxql answer: %w", err)
	}
	if len(body) > maxQLAnswer {
		return nil, fmt.Errorf("reading influxql answer: longer than %d bytes", maxQLAnswer)
	}
	var out struct {
		Error   string `json:"error"`
		Results []struct {
			StatementID int        `json:"statement_id"`
			Error       string     `json:"error"`
			Series      []QLSeries `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // nanosecond times do not fit a float64
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("running influxql query: status %d: %.200s", resp.StatusCode, body)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("running influxql query: status %d: %s", resp.StatusCode, out.Error)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("running influxql query: status %d", resp.StatusCode)
	}
	res := make([][]QLSeries, len(out.Results))
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
