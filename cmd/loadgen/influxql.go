package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// influxQL counts and creates on an InfluxDB 1.x server through internal/influx's InfluxQL
// (internal/influx/influxql, the one InfluxQL client): counting with InfluxQL is far cheaper for the server than Flux, which matters while the
// server is still absorbing the run's writes.
type influxQL struct {
	c  *influx.Client
	db string
}

// newInfluxQL returns a client for the database (or db/rp) bucket at base; close it after use.
func newInfluxQL(base, bucket, token string) (*influxQL, error) {
	c, err := influx.New(influx.Config{URL: base, Bucket: bucket, Token: token, Timeout: time.Minute})
	if err != nil {
		return nil, fmt.Errorf("influxdb client: %w", err)
	}
	db, _, _ := strings.Cut(bucket, "/")
	return &influxQL{c: c, db: db}, nil
}

// close releases the client's connections.
func (q *influxQL) close() { q.c.Close() }

// createDatabase creates the database (idempotent on InfluxDB 1.x).
func (q *influxQL) createDatabase(ctx context.Context) error {
	if _, err := q.c.InfluxQL(ctx, "CREATE DATABASE "+influxql.QuoteIdent(q.db)); err != nil {
		return fmt.Errorf("creating influxdb database %s: %w", q.db, err)
	}
	return nil
}

// createInfluxDatabase creates the --influx-db database when --influx-create asks for it.
func createInfluxDatabase(ctx context.Context, cfg config) error {
	if !cfg.influxCreate {
		return nil
	}
	q, err := newInfluxQL(cfg.influxURL, cfg.influxDB, cfg.influxToken)
	if err != nil {
		return err
	}
	defer q.close()
	return q.createDatabase(ctx)
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
		sources[i] = influxql.QuoteIdent(m)
	}
	// ::tag: InfluxQL resolves a bare name to a field before a tag (PITFALLS.md).
	stmt := fmt.Sprintf("SELECT count(*) FROM %s WHERE time >= %d AND time <= %d GROUP BY %s::tag",
		strings.Join(sources, ","), from, to, influxql.QuoteIdent("agent"))
	series, err := q.c.InfluxQL(ctx, stmt)
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
