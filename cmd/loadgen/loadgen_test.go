package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

var testNow = time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)

// The gateway's own parsers accept both bodies: n points with five float values each, cycling
// through the six measurements, the point i one nanosecond after point i-6.
func TestBatchesParse(t *testing.T) {
	ts := testNow.Add(1234 * time.Microsecond)
	for _, n := range []int{pointsPerBatch, 13} {
		js := appendJSONBatch(nil, ts, 2.5, n)
		lp := appendLineBatch(nil, "agent-1", ts, 2.5, n)
		fromJSON, err := metric.ParseJSON(js, testNow, metric.DefaultLimits())
		if err != nil {
			t.Fatalf("ParseJSON(%s) = %v", js, err)
		}
		fromLine, err := metric.ParseLineProtocol(lp, "ns", testNow, metric.DefaultLimits())
		if err != nil {
			t.Fatalf("ParseLineProtocol(%q) = %v", lp, err)
		}
		for name, pts := range map[string][]metric.Point{"json": fromJSON, "line protocol": fromLine} {
			if len(pts) != n {
				t.Fatalf("%s of %d points: got %d points", name, n, len(pts))
			}
			for i, p := range pts {
				wantTime := ts.UnixNano() + int64(i/pointsPerBatch)
				if p.Measurement != measurements[i%pointsPerBatch] || p.Time != wantTime || len(p.Fields) != valuesPerPoint {
					t.Errorf("%s point %d = %s at %d with %d fields, want %s at %d with %d", name, i,
						p.Measurement, p.Time, len(p.Fields), measurements[i%pointsPerBatch], wantTime, valuesPerPoint)
				}
				for j, f := range p.Fields {
					if f.Value.Kind != metric.KindFloat || f.Value.F != 2.5+float64(j) {
						t.Errorf("%s point %d field %s = %+v, want float %g", name, i, f.Key, f.Value, 2.5+float64(j))
					}
				}
			}
		}
		// What the gateway would store is what loadgen sends InfluxDB directly.
		if got := string(metric.AppendLineProtocol(nil, fromJSON, "agent-1")); got != string(lp) {
			t.Errorf("gateway's line protocol of the JSON batch =\n%s\nwant the direct batch\n%s", got, lp)
		}
	}
}

func TestLoopbackURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://localhost:8086", true},
		{"http://[::1]:8086", true},
		{"http://127.0.0.2:1", true},
		{"http://10.0.0.1:8080", false},
		{"http://example.com", false},
		{"https://127.0.0.1:8080", false},
		{"127.0.0.1:8080", false},
	} {
		if err := loopbackURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("loopbackURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--gateway", "http://192.0.2.1:8080"}, "loopback"},
		{[]string{"--target", "influx"}, "--influx-db is required"},
		{[]string{"--mode", "ceiling", "--influx-db", "x", "--influx-url", "http://198.51.100.1:8086"}, "loopback"},
		{[]string{"--mode", "ceiling", "--influx-db", "x", "--verify"}, "--verify applies"},
		{[]string{"--duration", "2h"}, "--duration"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		{[]string{"--mode", "flood"}, "--mode"},
		{[]string{"stray"}, "unexpected arguments"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(lat)
	want := latencyMS{P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Errorf("percentiles(1..100 ms) = %+v, want %+v", got, want)
	}
	if got := percentiles(nil); got != (latencyMS{}) {
		t.Errorf("percentiles(nil) = %+v, want zeros", got)
	}
}

// verify finds every acknowledged point that InfluxDB holds, and counts as lost exactly those it
// does not, for the default batch and for a larger one whose points spread past the batch's time.
func TestVerify(t *testing.T) {
	srv := testenv.PrivateInfluxd(t, testenv.WithoutFlux())
	ctx := context.Background()
	hc := newHTTPClient(4, 10*time.Second)
	logger := slog.New(slog.DiscardHandler)
	for _, points := range []int{pointsPerBatch, 20} {
		db := fmt.Sprintf("lg%d", points)
		q, err := newInfluxQL(srv.URL(), db, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(q.close)
		if err := q.createDatabase(ctx); err != nil {
			t.Fatal(err)
		}
		ids := []string{"a0", "a1", "a2"}
		base := time.Now().Truncate(time.Millisecond)
		build := influxRequester(srv.URL(), db, "", ids, base, points)
		res := drive(ctx, hc, plan{agents: len(ids), concurrency: 2, duration: time.Minute, maxRequests: 30}, build)
		ledger := mergeLedger(res.workers)
		if len(ledger) != 30 {
			t.Fatalf("drive acknowledged %d of 30 requests: %+v", len(ledger), res.workers[0].statuses)
		}
		want := int64(30 * points)

		v, err := verify(ctx, q, ids, ledger, points, base, res, 10*time.Second, logger)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Complete || v.LostPoints != 0 || v.PersistedPoints != want || v.PersistedValues != want*valuesPerPoint || v.ExtraPoints != 0 {
			t.Errorf("%d points a batch: verify after writing every batch = %+v, want complete, %d points, none lost", points, v, want)
		}

		// Two batches acknowledged (as the ledger says) but never written: seq 10 of agent 1 and
		// seq 12 of agent 2.
		missing := append(ledger[:len(ledger):len(ledger)], 1<<40|10, 2<<40|12)
		v, err = verify(ctx, q, ids, missing, points, base, res, 500*time.Millisecond, logger)
		if err != nil {
			t.Fatal(err)
		}
		if v.Complete || v.LostPoints != int64(2*points) || v.PersistedPoints != want || v.AckedPoints != want+int64(2*points) {
			t.Errorf("%d points a batch: verify with two batches never written = %+v, want incomplete, %d lost of %d",
				points, v, 2*points, want+int64(2*points))
		}
	}
}

// The load stops by itself at --max-requests and answers non-2xx are tallied by status.
func TestDriveCapsAndTallies(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bad") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	ln := testListener(t)
	go func() { _ = srv.Serve(ln) }() // returns ErrServerClosed at cleanup
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String()
	build := func(ctx context.Context, a int, seq int64) (*http.Request, error) {
		path := "/ok"
		if a == 1 {
			path = "/bad"
		}
		return http.NewRequestWithContext(ctx, http.MethodPost, base+path, nil)
	}
	hc := newHTTPClient(3, 5*time.Second)
	res := drive(context.Background(), hc, plan{agents: 2, concurrency: 3, duration: time.Minute, maxRequests: 40}, build)
	rep := newReport(config{mode: "load", target: "gateway", label: "t", duration: time.Minute}, res, pointsPerBatch)
	if rep.Requests != 40 || rep.OK != 20 || rep.Non2xx["400"] != 20 || rep.PointsAcked != 120 {
		t.Errorf("drive(40 requests, every other one 400) = %d sent, %d ok, %v non-2xx, %d points; want 40, 20, 400×20, 120",
			rep.Requests, rep.OK, rep.Non2xx, rep.PointsAcked)
	}
	if got := len(mergeLedger(res.workers)); got != 20 {
		t.Errorf("ledger holds %d requests, want the 20 answered 2xx", got)
	}
}

func testListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// The summary takes medians per kind of run and per-round ratios, and fails on a lost point.
func TestSummary(t *testing.T) {
	rep := func(label string, round int, rps, p99 float64, v *verifyReport) *report {
		return &report{Label: label, Round: round, RequestsPerS: rps, ValuesPerS: rps * 30, OK: 1,
			PointsPerReq: pointsPerBatch, LatencyMS: latencyMS{P99: p99}, Verify: v}
	}
	write := func(dir string, reps ...*report) {
		for _, r := range reps {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("r%d-%s.json", r.Round, r.Label)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	e2e := func(vps float64, lost int64) *verifyReport {
		return &verifyReport{Complete: lost == 0, ValuesPerS: vps, LostPoints: lost}
	}
	dir := t.TempDir()
	write(dir,
		rep("direct", 1, 1000, 30, nil), rep("gateway", 1, 6000, 4, nil), rep("e2e", 1, 5000, 5, e2e(90, 0)), rep("ceiling", 1, 4, 300, nil),
		rep("direct", 2, 2000, 30, nil), rep("gateway", 2, 8000, 20, nil), rep("e2e", 2, 5000, 5, e2e(60, 0)), rep("ceiling", 2, 3, 300, nil),
		rep("direct", 3, 1000, 30, nil), rep("gateway", 3, 3000, 6, nil), rep("e2e", 3, 5000, 5, e2e(99, 0)), rep("ceiling", 3, 5, 300, nil),
	)
	var out strings.Builder
	code, err := runSummary(dir, true, &out)
	if err != nil || code != 4 {
		t.Fatalf("runSummary(strict) = %d, %v, want 4 (the e2e budget is missed)\n%s", code, err, out.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	// Per round: gateway/direct 6, 4, 3; p99 4, 20, 6; e2e/ceiling values/s 90/120, 60/90, 99/150.
	want := map[string]float64{"gateway req/s": 4, "gateway p99": 6, "end-to-end": 60.0 / 90}
	for _, r := range s.Ratios {
		for prefix, w := range want {
			if strings.HasPrefix(r.Name, prefix) && fmt.Sprintf("%.3f", r.Median) != fmt.Sprintf("%.3f", w) {
				t.Errorf("ratio %q = %v (rounds %v), want median %v", r.Name, r.Median, r.PerRound, w)
			}
		}
	}
	if len(s.Ratios) != 3 || s.Runs["gateway"].RequestsPerS != 6000 || s.Runs["gateway"].Runs != 3 {
		t.Errorf("summary = %+v, want 3 ratios and the gateway's median 6000 req/s over 3 runs", s)
	}

	write(dir, rep("e2e", 2, 5000, 5, e2e(0, 6)))
	if code, err := runSummary(dir, false, io.Discard); err != nil || code != 3 {
		t.Errorf("runSummary with a lost point = %d, %v, want 3", code, err)
	}
}

// A paced run counts latency from when each request was due: a server slower than the pace shows
// as growing latency, not as fewer requests hiding the wait.
func TestDrivePacedLatencyFromDue(t *testing.T) {
	const serve = 20 * time.Millisecond
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(serve)
		w.WriteHeader(http.StatusNoContent)
	})}
	ln := testListener(t)
	go func() { _ = srv.Serve(ln) }() // returns ErrServerClosed at cleanup
	t.Cleanup(func() { srv.Close() })
	build := func(ctx context.Context, a int, seq int64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String(), nil)
	}
	hc := newHTTPClient(1, 5*time.Second)
	for _, rate := range []float64{0, 1000} { // unpaced: only the count is checked (no timing asserts)
		res := drive(context.Background(), hc, plan{agents: 1, concurrency: 1, duration: time.Minute, maxRequests: 10, rate: rate}, build)
		lat := percentiles(res.workers[0].latencies)
		// One sender, 20 ms per answer: the 10th request, due 9 ms after the start when paced,
		// is sent after 9 answers, at least 180 ms after the start.
		if rate > 0 && lat.Max < ms(9*serve) {
			t.Errorf("paced at %g/s: max latency %.1f ms, want at least %.1f ms (from when due)", rate, lat.Max, ms(9*serve))
		}
		if len(res.workers[0].latencies) != 10 {
			t.Errorf("rate %g: %d latencies, want 10", rate, len(res.workers[0].latencies))
		}
	}
}
