package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// influxQL runs InfluxQL statements on an InfluxDB 1.x server (POST /query). Hand-written over
// net/http because influxdb-client-go speaks only Flux, and counting with InfluxQL is far cheaper
// for the server than Flux, which matters while the server is still absorbing the run's writes.
type influxQL struct {
	hc    *http.Client
	url   string // base URL
	db    string
	rp    string
	token string
}

func newInfluxQL(hc *http.Client, base, bucket, token string) *influxQL {
	db, rp, _ := strings.Cut(bucket, "/")
	return &influxQL{hc: hc, url: strings.TrimSuffix(base, "/"), db: db, rp: rp, token: token}
}

// qlSeries is one series of an InfluxQL answer.
type qlSeries struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// query runs stmt in the database and returns the first statement's series.
func (q *influxQL) query(ctx context.Context, stmt string) ([]qlSeries, error) {
	form := url.Values{"q": {stmt}, "epoch": {"ns"}}
	if q.db != "" {
		form.Set("db", q.db)
	}
	if q.rp != "" {
		form.Set("rp", q.rp)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.url+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if q.token != "" {
		req.Header.Set("Authorization", "Token "+q.token)
	}
	resp, err := q.hc.Do(req)
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
			Error  string     `json:"error"`
			Series []qlSeries `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("running %s: status %d: %.200s", stmt, resp.StatusCode, body)
	}
	switch {
	case out.Error != "":
		return nil, fmt.Errorf("running %s: %s", stmt, out.Error)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("running %s: status %d", stmt, resp.StatusCode)
	case len(out.Results) == 0:
		return nil, nil
	case out.Results[0].Error != "":
		return nil, fmt.Errorf("running %s: %s", stmt, out.Results[0].Error)
	}
	return out.Results[0].Series, nil
}

// createDatabase creates the database (idempotent on InfluxDB 1.x).
func (q *influxQL) createDatabase(ctx context.Context) error {
	if _, err := q.query(ctx, "CREATE DATABASE "+quoteIdent(q.db)); err != nil {
		return fmt.Errorf("creating influxdb database %s: %w", q.db, err)
	}
	return nil
}

// stored is what InfluxDB holds for one agent.
type stored struct {
	points int64 // per measurement, the largest field count (every point has every field)
	values int64 // every field count summed
}

// counts returns, per agent tag, the points and values InfluxDB holds in the run's measurements
// with a time in [from, to] (Unix ns). count(*) counts each field separately: a point is
// valuesPerPoint values.
func (q *influxQL) counts(ctx context.Context, from, to int64) (map[string]stored, error) {
	sources := make([]string, len(measurements))
	for i, m := range measurements {
		sources[i] = quoteIdent(m)
	}
	// ::tag: InfluxQL resolves a bare name to a field before a tag (PITFALLS.md).
	stmt := fmt.Sprintf("SELECT count(*) FROM %s WHERE time >= %d AND time <= %d GROUP BY %s::tag",
		strings.Join(sources, ","), from, to, quoteIdent("agent"))
	series, err := q.query(ctx, stmt)
	if err != nil {
		return nil, err
	}
	got := map[string]stored{}
	for _, s := range series {
		agent := s.Tags["agent"]
		st := got[agent]
		for _, row := range s.Values {
			var most int64
			for i, col := range s.Columns {
				if !strings.HasPrefix(col, "count_") || i >= len(row) {
					continue
				}
				f, ok := row[i].(float64)
				if !ok {
					continue // null: no value of that field in this measurement
				}
				st.values += int64(f)
				most = max(most, int64(f))
			}
			st.points += most
		}
		got[agent] = st
	}
	return got, nil
}

// quoteIdent quotes an InfluxQL identifier (the escapes InfluxQL's scanner accepts in double
// quotes).
func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
