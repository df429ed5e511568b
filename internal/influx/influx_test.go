package influx_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunInflux(m)) }

// newClient returns a client for bucket on srvURL, closed in t.Cleanup.
func newClient(t testing.TB, srvURL, bucket string, days int) *influx.Client {
	t.Helper()
	c, err := influx.New(influx.Config{URL: srvURL, Bucket: bucket, RetentionDays: days, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// provisioned returns a client for a fresh, provisioned database of the shared server.
func provisioned(t testing.TB) (*influx.Client, testenv.InfluxDB) {
	t.Helper()
	env := testenv.Influx(t)
	c := newClient(t, env.URL, env.Database, 30)
	if err := c.Provision(context.Background()); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return c, env
}

type retentionPolicy struct {
	Name     string
	Duration string
	Shard    string
	Default  bool
}

func showRetentionPolicies(t *testing.T, srv *testenv.Influxd, db string) []retentionPolicy {
	t.Helper()
	series, err := srv.Query(context.Background(), "", "SHOW RETENTION POLICIES ON "+influxql.QuoteIdent(db))
	if err != nil {
		t.Fatalf("SHOW RETENTION POLICIES: %v", err)
	}
	// Columns: name, duration, shardGroupDuration, replicaN, default.
	var rps []retentionPolicy
	for _, s := range series {
		for _, v := range s.Values {
			rps = append(rps, retentionPolicy{Name: v[0].(string), Duration: v[1].(string), Shard: v[2].(string), Default: v[4].(bool)})
		}
	}
	return rps
}

func TestProvision(t *testing.T) {
	tests := []struct {
		name     string
		rp       string // appended as "db/rp" when set
		suffix   string // appended to the database name, to prove quoting
		days     []int  // provisioned in turn; the last one must hold
		wantRP   string
		wantDur  string
		wantShrd string
	}{
		{name: "default policy", days: []int{30, 30}, wantRP: "autogen", wantDur: "720h0m0s", wantShrd: "24h0m0s"},
		{name: "named policy", rp: "raw", days: []int{30, 30}, wantRP: "raw", wantDur: "720h0m0s", wantShrd: "24h0m0s"},
		{name: "changed retention", rp: "raw", days: []int{30, 1}, wantRP: "raw", wantDur: "24h0m0s", wantShrd: "1h0m0s"},
		{name: "forever", days: []int{7, 0}, wantRP: "autogen", wantDur: "0s", wantShrd: "168h0m0s"},
		{name: "long", days: []int{400}, wantRP: "autogen", wantDur: "9600h0m0s", wantShrd: "168h0m0s"},
		{name: "name needing quotes", rp: `r"p x`, suffix: `"; DROP DATABASE "x`, days: []int{3, 3}, wantRP: `r"p x`, wantDur: "72h0m0s", wantShrd: "24h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.Influx(t)
			db := env.Database + tt.suffix
			if tt.suffix != "" {
				t.Cleanup(func() {
					if _, err := env.Server.Query(context.Background(), "", "DROP DATABASE "+influxql.QuoteIdent(db)); err != nil {
						t.Errorf("dropping %s: %v", db, err)
					}
				})
			}
			bucket := db
			if tt.rp != "" {
				bucket += "/" + tt.rp
			}
			for _, days := range tt.days {
				c := newClient(t, env.URL, bucket, days)
				if err := c.Provision(context.Background()); err != nil {
					t.Fatalf("Provision(%q, %d days): %v", bucket, days, err)
				}
			}
			var got *retentionPolicy
			rps := showRetentionPolicies(t, env.Server, db)
			for i := range rps {
				if rps[i].Name == tt.wantRP {
					got = &rps[i]
				}
			}
			want := retentionPolicy{Name: tt.wantRP, Duration: tt.wantDur, Shard: tt.wantShrd, Default: true}
			if got == nil || *got != want {
				t.Fatalf("retention policies after Provision(%q) = %+v, want one %+v", bucket, rps, want)
			}
			// The database is usable: a point written lands.
			c := newClient(t, env.URL, bucket, tt.days[len(tt.days)-1])
			line := fmt.Sprintf("cpu,agent=a1 v=1 %d\n", time.Now().UnixNano())
			if err := c.Write(context.Background(), []byte(line)); err != nil {
				t.Fatalf("Write after Provision: %v", err)
			}
			if n, err := c.CountPoints(context.Background(), "cpu", "a1"); err != nil || n != 1 {
				t.Fatalf("CountPoints = %d, %v; want 1", n, err)
			}
		})
	}
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return "http://" + ln.Addr().String()
}

func TestProvisionUnreachable(t *testing.T) {
	c := newClient(t, closedURL(t), "metrics", 30)
	if err := c.Provision(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Provision against a closed port = %v, want a connection refused error", err)
	}
}

func TestVersion(t *testing.T) {
	env := testenv.Influx(t)
	c := newClient(t, env.URL, env.Database, 30)
	v, err := c.Version(context.Background())
	if err != nil || v == "" {
		t.Fatalf("Version() = %q, %v; want a version", v, err)
	}
	// influxd built with go install reports "unknown": detection must still say 1.
	m, err := c.MajorVersion(context.Background())
	if err != nil || m != 1 {
		t.Fatalf("MajorVersion() = %d, %v (version %q); want 1", m, err, v)
	}
}

func TestWriteAndCount(t *testing.T) {
	c, _ := provisioned(t)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).UnixNano()
	var b strings.Builder
	// a1: 3 cpu points (two series, one with two fields), 1 mem point; a2: 2 cpu points.
	fmt.Fprintf(&b, "cpu,agent=a1,core=0 usage=1.5 %d\n", t0)
	fmt.Fprintf(&b, "cpu,agent=a1,core=0 usage=2.5 %d\n", t0+1)
	fmt.Fprintf(&b, "cpu,agent=a1,core=1 usage=3,idle=97i %d\n", t0)
	fmt.Fprintf(&b, "mem,agent=a1 used=10i,state=\"ok\" %d\n", t0)
	fmt.Fprintf(&b, "cpu,agent=a2,core=0 usage=4 %d\n", t0)
	fmt.Fprintf(&b, "cpu,agent=a2,core=0 usage=5 %d\n", t0+2)
	body := []byte(b.String())
	counts := []struct {
		measurement, agent string
		want               int
	}{
		{"cpu", "a1", 3},
		{"mem", "a1", 1},
		{"cpu", "a2", 2},
		{"", "a1", 4},
		{"cpu", "", 5},
		{"", "", 6},
		{"disk", "a1", 0},
	}
	for round := 1; round <= 2; round++ { // a redelivered batch overwrites itself
		if err := c.Write(ctx, body); err != nil {
			t.Fatalf("Write (round %d): %v", round, err)
		}
		for _, tc := range counts {
			n, err := c.CountPoints(ctx, tc.measurement, tc.agent)
			if err != nil || n != tc.want {
				t.Errorf("round %d: CountPoints(%q, %q) = %d, %v; want %d", round, tc.measurement, tc.agent, n, err, tc.want)
			}
		}
	}
}

func TestCountPointsRefusesUnsafeNames(t *testing.T) {
	c, _ := provisioned(t)
	for _, name := range []string{`a" or true or "`, "a\nb", "a b", `${x}`, "_internal", strings.Repeat("a", 300)} {
		if n, err := c.CountPoints(context.Background(), "cpu", name); err == nil {
			t.Errorf("CountPoints(cpu, %q) = %d, nil; want an error", name, n)
		}
		if n, err := c.CountPoints(context.Background(), name, "a1"); err == nil {
			t.Errorf("CountPoints(%q, a1) = %d, nil; want an error", name, n)
		}
	}
}

func TestFluxStringRoundTrip(t *testing.T) {
	c, env := provisioned(t)
	ctx := context.Background()
	// Tag values InfluxDB stores verbatim (line-protocol escaping of ',', '=' and ' ' aside).
	values := []string{`plain`, `q"uote`, `back\slash`, `dollar${x}$`, `$\x`, `$$"{`, `both"\"`}
	var b strings.Builder
	now := time.Now().UnixNano()
	for i, v := range values {
		fmt.Fprintf(&b, "fs,agent=a1,v=%s n=%di %d\n", v, i, now)
	}
	if err := c.Write(ctx, []byte(b.String())); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for i, v := range values {
		flux := fmt.Sprintf(`from(bucket: %s) |> range(start: -1h) |> filter(fn: (r) => r._measurement == "fs" and r.v == %s)`,
			influx.FluxString(env.Database), influx.FluxString(v))
		recs, err := c.Query(ctx, flux)
		if err != nil {
			t.Fatalf("Query(%s): %v", flux, err)
		}
		if len(recs) != 1 || recs[0].Value() != int64(i) || recs[0].ValueByKey("v") != v {
			t.Errorf("Query for v=%q = %d records (%v), want the one with n=%d", v, len(recs), recs, i)
		}
	}
	if _, err := c.Query(ctx, `from(bucket: `); err == nil {
		t.Error("Query(invalid flux) = nil error, want one")
	}
}

func TestWriteClassifiesErrors(t *testing.T) {
	c, env := provisioned(t)
	ctx := context.Background()
	now := time.Now().UnixNano()
	if err := c.Write(ctx, fmt.Appendf(nil, "conf,agent=a1 v=1.5 %d\n", now)); err != nil {
		t.Fatalf("seeding write: %v", err)
	}
	tooLarge := strings.Repeat(fmt.Sprintf("big,agent=a1 v=1 %d\n", now), 26_000_000/30) // over 1.8's 25 MB default
	tests := []struct {
		name      string
		client    *influx.Client
		body      string
		want      error // ErrInvalid, ErrTooLarge, or nil for transient
		msgSubstr string
	}{
		{"unparsable", c, "conf,agent=a1 v=\n", influx.ErrInvalid, "unable to parse"},
		{"type conflict", c, fmt.Sprintf("conf,agent=a1 v=\"text\" %d\n", now+1), influx.ErrInvalid, "field type conflict"},
		{"partly bad", c, fmt.Sprintf("conf,agent=a1 v=2 %d\nconf,agent=a1 v=\"x\" %d\n", now+2, now+3), influx.ErrInvalid, "partial write"},
		{"beyond retention", c, "conf,agent=a1 v=1 1000000000\n", influx.ErrInvalid, "retention"},
		{"too large", c, tooLarge, influx.ErrTooLarge, ""},
		{"missing database", newClient(t, env.URL, env.Database+"_missing", 30), fmt.Sprintf("conf,agent=a1 v=1 %d\n", now), nil, "database not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.client.Write(ctx, []byte(tt.body))
			var werr *influx.WriteError
			if !errors.As(err, &werr) {
				t.Fatalf("Write(%.40q) = %v, want a *WriteError", tt.body, err)
			}
			for _, class := range []error{influx.ErrInvalid, influx.ErrTooLarge} {
				if got, want := errors.Is(err, class), errors.Is(class, tt.want); got != want {
					t.Errorf("errors.Is(%v, %v) = %t, want %t", err, class, got, want)
				}
			}
			if got, want := werr.Transient(), tt.want == nil; got != want {
				t.Errorf("Transient() = %t, want %t (err %v)", got, want, err)
			}
			if !strings.Contains(err.Error(), tt.msgSubstr) {
				t.Errorf("Write error %q does not contain %q", err, tt.msgSubstr)
			}
		})
	}
	// The bad writes left the good point, the good half of the partial write, and nothing else.
	if n, err := c.CountPoints(ctx, "conf", "a1"); err != nil || n != 2 {
		t.Errorf("CountPoints(conf, a1) = %d, %v; want 2", n, err)
	}
}

func TestWriteDuringOutage(t *testing.T) {
	srv := testenv.PrivateInfluxd(t, testenv.WithoutFlux()) // restarts are cheap without Flux
	c := newClient(t, srv.URL(), "outage", 30)
	ctx := context.Background()
	if err := c.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	line := fmt.Appendf(nil, "up,agent=a1 v=1 %d\n", time.Now().UnixNano())
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	err := c.Write(ctx, line)
	var werr *influx.WriteError
	if !errors.As(err, &werr) || !werr.Transient() || errors.Is(err, influx.ErrInvalid) || errors.Is(err, influx.ErrTooLarge) {
		t.Fatalf("Write with influxd down = %v, want a transient *WriteError", err)
	}
	if werr.StatusCode != 0 {
		t.Errorf("StatusCode = %d, want 0 (no answer)", werr.StatusCode)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := c.Write(ctx, line); err != nil {
		t.Fatalf("Write after restart: %v", err)
	}
	series, err := srv.Query(ctx, "", `SELECT count("v") FROM "outage"."autogen"."up" WHERE "agent"::tag = 'a1'`)
	if err != nil {
		t.Fatalf("counting after restart: %v", err)
	}
	// One series, one row: [time, count].
	if len(series) != 1 || len(series[0].Values) != 1 || series[0].Values[0][1] != 1.0 {
		t.Fatalf("count after restart = %+v, want one row counting 1", series)
	}
}

func TestWriteHonoursContext(t *testing.T) {
	c, _ := provisioned(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.Write(ctx, fmt.Appendf(nil, "ctx,agent=a1 v=1 %d\n", time.Now().UnixNano()))
	if !errors.Is(err, context.Canceled) || errors.Is(err, influx.ErrInvalid) {
		t.Fatalf("Write(cancelled ctx) = %v, want a transient error wrapping context.Canceled", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := influx.Config{URL: "http://127.0.0.1:8086", Bucket: "metrics", RetentionDays: 30, Timeout: time.Second}
	tests := []struct {
		name   string
		change func(*influx.Config)
		ok     bool
	}{
		{"defaults", func(*influx.Config) {}, true},
		{"db/rp", func(c *influx.Config) { c.Bucket = "metrics/raw" }, true},
		{"forever", func(c *influx.Config) { c.RetentionDays = 0 }, true},
		{"no scheme", func(c *influx.Config) { c.URL = "127.0.0.1:8086" }, false},
		{"ftp", func(c *influx.Config) { c.URL = "ftp://h" }, false},
		{"empty bucket", func(c *influx.Config) { c.Bucket = "" }, false},
		{"newline bucket", func(c *influx.Config) { c.Bucket = "a\nb" }, false},
		{"empty rp", func(c *influx.Config) { c.Bucket = "metrics/" }, false},
		{"empty db", func(c *influx.Config) { c.Bucket = "/raw" }, false},
		{"two slashes", func(c *influx.Config) { c.Bucket = "a/b/c" }, false},
		{"negative retention", func(c *influx.Config) { c.RetentionDays = -1 }, false},
		{"zero timeout", func(c *influx.Config) { c.Timeout = 0 }, false},
	}
	for _, tt := range tests {
		cfg := good
		tt.change(&cfg)
		err := cfg.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate(%+v) = %v, want ok=%t", tt.name, cfg, err, tt.ok)
		}
		if _, nerr := influx.New(cfg); (nerr == nil) != tt.ok {
			t.Errorf("%s: New(%+v) error = %v, want ok=%t", tt.name, cfg, nerr, tt.ok)
		}
	}
}

// BenchmarkWrite writes 5000-point batches, each new points, as the influx-writer does.
func BenchmarkWrite(b *testing.B) {
	c, _ := provisioned(b)
	ctx := context.Background()
	const points = 5000
	t0 := time.Now().Add(-time.Hour).UnixNano()
	var body []byte
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		body = body[:0]
		for p := range points {
			body = fmt.Appendf(body, "cpu,agent=bench%d,core=%d usage=%d.5,idle=%di %d\n", p%100, p%8, p, i, t0+int64(i*points+p))
		}
		b.SetBytes(int64(len(body)))
		b.StartTimer()
		if err := c.Write(ctx, body); err != nil {
			b.Fatalf("Write: %v", err)
		}
	}
	b.ReportMetric(float64(b.N*points)/b.Elapsed().Seconds(), "points/s")
}
