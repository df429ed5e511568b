// Package influx is the InfluxDB adapter: it provisions the raw-points database (1.x) or bucket
// (2.x) with its retention, writes canonical line protocol through the official client's blocking
// write API with failures classified as bad data or transient, and runs Flux queries.
package influx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// Config addresses the InfluxDB server and names where raw points go.
type Config struct {
	URL           string        `env:"INFLUXDB_URL" envDefault:"http://127.0.0.1:8086" help:"InfluxDB base URL (1.8 or 2.x)"`
	Token         string        `env:"INFLUXDB_TOKEN" help:"InfluxDB 2.x API token, or user:password for 1.x; empty without auth"`
	Org           string        `env:"INFLUXDB_ORG" help:"InfluxDB 2.x organization; empty for 1.x"`
	Bucket        string        `env:"INFLUXDB_BUCKET" envDefault:"metrics" help:"bucket for raw points (2.x), or database or database/retention-policy (1.x)"`
	RetentionDays int           `env:"METRICS_RETENTION_DAYS" envDefault:"30" help:"days raw points are kept; 0 keeps them forever"`
	Timeout       time.Duration `env:"INFLUXDB_TIMEOUT" envDefault:"10s" help:"timeout of each request to InfluxDB"`
}

// Validate checks the URL, the bucket name, the retention and the timeout.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("INFLUXDB_URL %q: want http(s)://host:port", c.URL)
	}
	if c.Bucket == "" || strings.IndexFunc(c.Bucket, unicode.IsControl) >= 0 {
		return fmt.Errorf("INFLUXDB_BUCKET %q: want a non-empty name without control characters", c.Bucket)
	}
	if db, rp, ok := strings.Cut(c.Bucket, "/"); ok && (db == "" || rp == "" || strings.Contains(rp, "/")) {
		return fmt.Errorf("INFLUXDB_BUCKET %q: want database/retention-policy with both parts", c.Bucket)
	}
	if c.RetentionDays < 0 {
		return fmt.Errorf("METRICS_RETENTION_DAYS %d: want 0 (forever) or more", c.RetentionDays)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("INFLUXDB_TIMEOUT %s: want a positive duration", c.Timeout)
	}
	return nil
}

// Client talks to one InfluxDB server about one bucket. It is safe for concurrent use; Close
// releases its idle connections.
type Client struct {
	cfg    Config
	base   *url.URL // cfg.URL with a trailing slash
	http   *http.Client
	client influxdb2.Client
	write  api.WriteAPIBlocking
	query  api.QueryAPI
	// writers holds a blocking write API per other bucket WriteBucket wrote to.
	writers sync.Map // string → api.WriteAPIBlocking
}

// New builds a client for cfg without contacting the server.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := url.Parse(cfg.URL) // validated
	if !strings.HasSuffix(base.Path, "/") {
		// The client resolves "api/v2/" against the URL: without the slash a path prefix is lost.
		base.Path += "/"
	}
	hc := &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConns:        100,
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		},
	}
	opts := influxdb2.DefaultOptions().
		SetHTTPClient(hc).
		SetPrecision(time.Nanosecond).
		SetApplicationName("agentmonitor")
	client := influxdb2.NewClientWithOptions(base.String(), cfg.Token, opts)
	return &Client{
		cfg:    cfg,
		base:   base,
		http:   hc,
		client: client,
		// Blocking writes only, without EnableBatching: the non-blocking WriteAPI drops data
		// silently (PITFALLS.md).
		write: client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		query: client.QueryAPI(cfg.Org),
	}, nil
}

// Close releases the client's idle connections. Calls in flight are not interrupted.
func (c *Client) Close() {
	c.client.Close()
	c.http.CloseIdleConnections()
}

// Bucket returns the bucket (2.x) or database[/retention policy] (1.x) the client writes to.
func (c *Client) Bucket() string { return c.cfg.Bucket }

// Ping reports whether InfluxDB answers its ping endpoint (Version without the version): the
// readiness check of the processes that depend on it.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Version(ctx)
	return err
}

// Version returns the server's version from the X-Influxdb-Version header of GET /ping, such as
// "1.8.10" or "v2.7.11". InfluxDB built from source reports "unknown".
func (c *Client) Version(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, "ping", nil, "")
	if err != nil {
		return "", fmt.Errorf("pinging influxdb: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("pinging influxdb: status %d", resp.StatusCode)
	}
	v := resp.Header.Get("X-Influxdb-Version")
	if v == "" {
		return "", errors.New("pinging influxdb: no X-Influxdb-Version header")
	}
	return v, nil
}

// MajorVersion returns 1 for InfluxDB 1.x and 2 for 2.x (or later, which speaks the 2.x API).
// When the version header does not tell (a source build says "unknown"), it asks for
// /api/v2/buckets, which only 2.x serves.
func (c *Client) MajorVersion(ctx context.Context) (int, error) {
	v, err := c.Version(ctx)
	if err != nil {
		return 0, err
	}
	if m := parseMajor(v); m != 0 {
		return m, nil
	}
	return c.probeMajor(ctx)
}

// probeMajor tells 1.x from 2.x by asking for /api/v2/buckets, which 1.x does not serve.
func (c *Client) probeMajor(ctx context.Context) (int, error) {
	resp, err := c.do(ctx, http.MethodGet, "api/v2/buckets?limit=1", nil, "")
	if err != nil {
		return 0, fmt.Errorf("probing influxdb version: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusNotFound {
		return 1, nil
	}
	return 2, nil
}

// parseMajor reads the major version from "1.8.10", "v2.7.11" and the like; 0 if it cannot.
func parseMajor(v string) int {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil || n < 1 {
		return 0
	}
	if n >= 2 {
		return 2
	}
	return 1
}

// Provision makes sure the bucket exists with the configured retention. On 1.x it creates the
// database and sets the retention policy (the one named in "db/rp", else the database's default)
// to METRICS_RETENTION_DAYS and makes it the default; on 2.x it finds the organization and creates
// the bucket with that retention, or corrects the retention of an existing bucket. It is
// idempotent and safe to run from several processes at once.
func (c *Client) Provision(ctx context.Context) error {
	major, err := c.MajorVersion(ctx)
	if err != nil {
		return err
	}
	if major == 1 {
		err = c.provisionV1(ctx)
	} else {
		err = c.provisionV2(ctx)
	}
	if err != nil {
		return fmt.Errorf("provisioning influxdb bucket %q: %w", c.cfg.Bucket, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.cfg.Token != "" {
		// 1.8 accepts "Token user:password" on every endpoint, 2.x "Token <api token>".
		req.Header.Set("Authorization", "Token "+c.cfg.Token)
	}
	return c.http.Do(req)
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// retentionV1 returns the InfluxQL duration and shard group duration for days of retention. The
// shard duration follows InfluxDB's own defaults for such a duration; it is set explicitly because
// ALTER refuses a retention shorter than the current shard duration (autogen has 7d shards).
func retentionV1(days int) (duration, shard string) {
	switch {
	case days == 0:
		return "INF", "7d"
	case days < 2:
		return strconv.Itoa(days) + "d", "1h"
	case days < 180:
		return strconv.Itoa(days) + "d", "1d"
	default:
		return strconv.Itoa(days) + "d", "7d"
	}
}

func (c *Client) provisionV1(ctx context.Context) error {
	db, rp, _ := strings.Cut(c.cfg.Bucket, "/")
	if _, err := c.InfluxQL(ctx, "CREATE DATABASE "+influxql.QuoteIdent(db)); err != nil {
		return err
	}
	series, err := c.InfluxQL(ctx, "SHOW RETENTION POLICIES ON "+influxql.QuoteIdent(db))
	if err != nil {
		return err
	}
	exists, defaultRP := false, ""
	for _, s := range series {
		name, def := colIndex(s.Columns, "name"), colIndex(s.Columns, "default")
		if name < 0 || def < 0 {
			continue
		}
		for _, row := range s.Values {
			n, _ := row[name].(string)
			if isDefault, _ := row[def].(bool); isDefault {
				defaultRP = n
			}
			if rp != "" && n == rp {
				exists = true
			}
		}
	}
	if rp == "" {
		rp, exists = defaultRP, defaultRP != ""
		if rp == "" {
			rp = "autogen" // the server runs with retention-autocreate off
		}
	}
	dur, shard := retentionV1(c.cfg.RetentionDays)
	target := influxql.QuoteIdent(rp) + " ON " + influxql.QuoteIdent(db)
	alter := fmt.Sprintf("ALTER RETENTION POLICY %s DURATION %s SHARD DURATION %s DEFAULT", target, dur, shard)
	if exists {
		_, err = c.InfluxQL(ctx, alter)
		return err
	}
	_, err = c.InfluxQL(ctx, fmt.Sprintf("CREATE RETENTION POLICY %s DURATION %s REPLICATION 1 SHARD DURATION %s DEFAULT", target, dur, shard))
	if err != nil && strings.Contains(err.Error(), "already exists") {
		// Another process created it, differently, between our SHOW and CREATE.
		_, err = c.InfluxQL(ctx, alter)
	}
	return err
}

func colIndex(cols []string, name string) int {
	for i, c := range cols {
		if c == name {
			return i
		}
	}
	return -1
}

// ProvisionUntilDone calls Provision with exponential backoff (500ms up to 30s) until it succeeds,
// then closes done; it returns early, leaving done open, when ctx is done. Binaries run it in the
// background so they start while InfluxDB is still down.
func (c *Client) ProvisionUntilDone(ctx context.Context, done chan<- struct{}, logger *slog.Logger) {
	wait := 500 * time.Millisecond
	for {
		err := c.Provision(ctx)
		if err == nil {
			logger.Info("influxdb provisioned", "bucket", c.Bucket())
			close(done)
			return
		}
		logger.Warn("provisioning influxdb; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
