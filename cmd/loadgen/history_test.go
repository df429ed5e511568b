package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// TestWindowLine checks the rollup point the history bench writes: the contract's fields, the
// window's start as timestamp.
func TestWindowLine(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	w := windowAcc{start: start, min: 3, max: 3}
	for _, v := range []float64{3, 1, 8} {
		w.add(v)
	}
	got := string(w.appendLine(nil, "bench-agent-001", 2))
	want := "bench,agent=bench-agent-001 f2_min=1,f2_max=8,f2_mean=4,f2_sum=12,f2_last=8,f2_count=3i 1796032800000000000"
	if got != want {
		t.Errorf("appendLine = %q, want %q", got, want)
	}
	if a := historyAlign(start.Add(7*time.Minute+3*time.Second), 5*time.Minute); !a.Equal(start.Add(5 * time.Minute)) {
		t.Errorf("historyAlign(10:07:03, 5m) = %s, want 10:05", a)
	}
}

// TestHistoryViaPipeline runs "loadgen history --via pipeline" at a tiny size (2 agents, 1 series,
// 1 day) against a private deployment, so that the mode go tool task bench:history runs cannot
// rot: every posted point must reach InfluxDB, the rollup worker must have computed every closed
// 1m window, and the queries must answer from the tiers the planner picks.
func TestHistoryViaPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a private deployment")
	}
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = testenv.DefaultRedisURL
	}
	dbURL := os.Getenv("TEST_DATABASE_URL")
	if dbURL == "" {
		dbURL = testenv.DefaultPostgresURL
	}
	const agents, days = 2, 1
	var stdout, stderr bytes.Buffer
	args := []string{"--via", "pipeline", "--agents", strconv.Itoa(agents), "--series", "1", "--days", strconv.Itoa(days),
		"--queries", "3", "--batch", "1000", "--redis-url", redisURL, "--database-url", dbURL, "--catchup-timeout", "2m"}
	if code := runHistory(args, &stdout, &stderr); code != 0 {
		t.Fatalf("runHistory(%q) = %d, want 0; stderr:\n%s", args, code, stderr.String())
	}
	var rep historyReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decoding the report: %v\n%s", err, stdout.String())
	}
	want := int64(agents * days * 1440)
	if rep.Via != "pipeline" || rep.RawPoints != want || rep.RawPointsStored != want {
		t.Errorf("report via %q, raw points %d posted, %d stored; want pipeline, %d, %d", rep.Via, rep.RawPoints, rep.RawPointsStored, want, want)
	}
	if rep.Requests != int64(agents*2) { // 1440 points in requests of 1000
		t.Errorf("requests = %d, want %d", rep.Requests, agents*2)
	}
	if got := rep.RollupWindows["1m"]; got != want {
		t.Errorf("1m rollup rows = %d, want %d (every closed window of every agent)", got, want)
	}
	for _, tier := range []string{"5m", "1h", "1d"} {
		if rep.RollupWindows[tier] == 0 {
			t.Errorf("%s rollup rows = 0, want some", tier)
		}
	}
	wantTier := map[string]string{
		"series 24h at 1m": "1m", "series 7d at 1h": "1h", "series 30d at 1d": "1d",
		"fleet 24h at 1h by agent": "1h", "series 24h at 1m, raw": "raw", "series 30d at 1d, raw": "raw",
	}
	if len(rep.Queries) != len(historyQueries) {
		t.Fatalf("%d queries timed, want %d", len(rep.Queries), len(historyQueries))
	}
	for _, q := range rep.Queries {
		if w, ok := wantTier[q.Name]; ok && q.Tier != w {
			t.Errorf("query %q answered from tier %q, want %q", q.Name, q.Tier, w)
		}
		if q.Points == 0 || q.P50MS <= 0 || q.EngineP50MS <= 0 {
			t.Errorf("query %q: %d points, p50 %.2f ms, engine p50 %.2f ms; want all > 0", q.Name, q.Points, q.P50MS, q.EngineP50MS)
		}
	}
	if q := rep.Queries[0]; q.Points < 1439 || q.Points > 1441 {
		t.Errorf("series 24h at 1m answered %d points, want about 1440", q.Points)
	}
}

// TestHistoryViaInflux runs the direct mode (points and tiers written straight into InfluxDB) at a
// tiny size: every raw point and closed 1m window is loaded and the queries answer from the tiers
// the planner picks.
func TestHistoryViaInflux(t *testing.T) {
	srv := testenv.PrivateInfluxd(t, testenv.WithoutFlux())
	var stdout, stderr bytes.Buffer
	args := []string{"--via", "influx", "--influx-url", srv.URL(), "--agents", "2", "--series", "1", "--days", "2", "--queries", "3"}
	if code := runHistory(args, &stdout, &stderr); code != 0 {
		t.Fatalf("runHistory(%q) = %d, want 0; stderr:\n%s", args, code, stderr.String())
	}
	var rep historyReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decoding the report: %v\n%s", err, stdout.String())
	}
	if want := int64(2 * 2 * 1440); rep.Via != "influx" || rep.RawPoints != want || rep.RollupPoints == 0 {
		t.Errorf("report via %q, %d raw points, %d rollup points; want influx, %d, some", rep.Via, rep.RawPoints, rep.RollupPoints, want)
	}
	if len(rep.Queries) != len(historyQueries) || rep.Queries[0].Tier != "1m" || rep.Queries[5].Tier != "raw" {
		t.Errorf("queries = %+v, want %d with the first on tier 1m and the sixth on raw", rep.Queries, len(historyQueries))
	}
}
