package gateway

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/agentmonitor/agentmonitor/internal/history/historytest"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// historyAnswer is the shape of a history answer.
type historyAnswer struct {
	Metric string `json:"metric"`
	Fn     string `json:"fn"`
	Every  string `json:"every"`
	Tier   string `json:"tier"`
	Series []struct {
		Tags   map[string]string `json:"tags"`
		Points []struct {
			Time  time.Time `json:"time"`
			Value float64   `json:"value"`
		} `json:"points"`
	} `json:"series"`
}

// historyEnv is a gateway reading history from its own InfluxDB database, holding 31 days of a
// metric of two agents: the tiers rolled up to the current window of each, raw points for the
// last two hours.
type historyEnv struct {
	*env
	admin, viewer string
	db, web       registered // agents labelled role=db and role=web
	series        []historytest.Series
}

func newHistoryEnv(t *testing.T) *historyEnv {
	t.Helper()
	idb := testenv.Influx(t)
	run := func(ctx context.Context, stmt string) error { _, err := idb.Server.Query(ctx, "", stmt); return err }
	if err := historytest.CreateTiers(context.Background(), run, idb.Database); err != nil {
		t.Fatalf("creating tiers: %v", err)
	}
	e := newEnv(t, func(c *Config) {
		c.Influx.URL, c.Influx.Bucket = idb.URL, idb.Database
	})
	h := &historyEnv{env: e, admin: e.adminToken()}
	h.viewer = e.userToken(h.admin, "history-viewer", "viewer")
	reg := func(name, role string) registered {
		r := e.do(req{method: "POST", path: "/api/v1/agents", auth: bearer(h.admin), body: map[string]any{"name": name, "labels": map[string]string{"role": role}}})
		if r.status != http.StatusCreated {
			t.Fatalf("registering %s = %s", name, r)
		}
		return decode[registered](t, r)
	}
	h.db, h.web = reg("db-1", "db"), reg("web-1", "web")

	now := time.Now().UTC()
	from := historytest.AlignDown(now, 24*time.Hour).Add(-31 * 24 * time.Hour)
	h.series = []historytest.Series{
		historytest.Generate(map[string]string{"agent": h.db.ID, "core": "0"}, 1, from, now, time.Minute),
		historytest.Generate(map[string]string{"agent": h.db.ID, "core": "1"}, 2, from, now, time.Minute),
		historytest.Generate(map[string]string{"agent": h.web.ID, "core": "0"}, 3, from, now, time.Minute),
	}
	write := func(bucket string, lines []string) {
		c, err := influx.New(influx.Config{URL: idb.URL, Bucket: bucket, Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for len(lines) > 0 {
			n := min(len(lines), 10000)
			if err := c.Write(context.Background(), []byte(strings.Join(lines[:n], "\n"))); err != nil {
				t.Fatalf("writing to %s: %v", bucket, err)
			}
			lines = lines[n:]
		}
	}
	for _, s := range h.series {
		write(idb.Database, historytest.RawLines("cpu", "usage_percent", s, now.Add(-2*time.Hour), now))
		for _, tier := range influx.Tiers {
			// Closed windows only: the current window of each tier is filled from the finer ones.
			ws := historytest.Rollup(s, tier.Width, from, historytest.AlignDown(now, tier.Width))
			write(idb.Database+"/rollup_"+tier.Name, historytest.RollupLines("cpu", "usage_percent", s.Tags, ws))
		}
	}
	return h
}

func (h *historyEnv) get(token, path string, params url.Values) resp {
	h.t.Helper()
	return h.do(req{method: "GET", path: path + "?" + params.Encode(), auth: bearer(token)})
}

// TestHistoryAPI runs the history routes against a real gateway, PostgreSQL, Redis and influxd.
func TestHistoryAPI(t *testing.T) {
	h := newHistoryEnv(t)
	agentPath := "/api/v1/agents/" + h.db.ID + "/metrics/history"

	t.Run("Tiers", func(t *testing.T) {
		tests := []struct {
			start, every, wantTier, wantEvery string
		}{
			{"-1h", "", "1m", "1m"},
			{"-24h", "", "5m", "5m"},
			{"-7d", "", "1h", "1h"},
			{"-30d", "", "1d", "1d"},
			{"-1h", "2m", "1m", "2m"},
			{"-1h", "30s", "raw", "30s"},
			{"-24h", "1m", "1m", "1m"},
			{"-24h", "1h", "1h", "1h"},
			{"-7d", "1h", "1h", "1h"},
			{"-7d", "1d", "1d", "1d"},
			{"-30d", "1d", "1d", "1d"},
		}
		for _, tt := range tests {
			r := h.get(h.viewer, agentPath, url.Values{"metric": {"cpu.usage_percent"}, "start": {tt.start}, "every": {tt.every}})
			if r.status != http.StatusOK {
				t.Errorf("history start=%s every=%s = %s, want 200", tt.start, tt.every, r)
				continue
			}
			a := decode[historyAnswer](t, r)
			if a.Tier != tt.wantTier || a.Every != tt.wantEvery || a.Fn != "mean" || a.Metric != "cpu.usage_percent" {
				t.Errorf("history start=%s every=%s = tier %s every %s fn %s, want tier %s every %s fn mean",
					tt.start, tt.every, a.Tier, a.Every, a.Fn, tt.wantTier, tt.wantEvery)
			}
			if len(a.Series) != 2 {
				t.Errorf("history start=%s every=%s: %d series, want 2 (core 0 and 1)", tt.start, tt.every, len(a.Series))
				continue
			}
			// The newest window (not rolled up in any tier yet) is there.
			pts := a.Series[0].Points
			if len(pts) == 0 || time.Since(pts[len(pts)-1].Time) > 2*time.Minute+mustEvery(t, tt.wantEvery) {
				t.Errorf("history start=%s every=%s: newest window %v is not the current one", tt.start, tt.every, pts)
			}
		}
	})

	t.Run("Values", func(t *testing.T) {
		end := time.Now().UTC().Truncate(time.Second)
		start := end.Add(-24 * time.Hour)
		r := h.get(h.viewer, agentPath, url.Values{"metric": {"cpu.usage_percent"}, "start": {start.Format(time.RFC3339)},
			"end": {fmt.Sprint(end.Unix())}, "every": {"1h"}, "tag.core": {"1"}})
		if r.status != http.StatusOK {
			t.Fatalf("history = %s", r)
		}
		a := decode[historyAnswer](t, r)
		want := historytest.Expect("mean", time.Hour, historytest.AlignDown(start, time.Hour), end, h.series[1])
		if len(a.Series) != 1 || a.Series[0].Tags["core"] != "1" || len(a.Series[0].Points) != len(want) {
			t.Fatalf("history tag.core=1 = %s, want one series of %d points", r, len(want))
		}
		for i, p := range a.Series[0].Points {
			if !p.Time.Equal(want[i].Time) || math.Abs(p.Value-want[i].Value) > 1e-9 {
				t.Errorf("point %d = %s %v, want %s %v", i, p.Time, p.Value, want[i].Time, want[i].Value)
			}
		}
	})

	t.Run("Percentile", func(t *testing.T) {
		r := h.get(h.viewer, agentPath, url.Values{"metric": {"cpu.usage_percent"}, "fn": {"p95"}, "start": {"-1h"}})
		if a := decode[historyAnswer](t, r); r.status != http.StatusOK || a.Tier != "raw" || len(a.Series) != 2 {
			t.Errorf("history fn=p95 start=-1h = %s, want 200 from raw with 2 series", r)
		}
		r = h.get(h.viewer, agentPath, url.Values{"metric": {"cpu.usage_percent"}, "fn": {"p99"}, "start": {"-31d"}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), "start") || !strings.Contains(r.errorMessage(t), "METRICS_RETENTION_DAYS") {
			t.Errorf("history fn=p99 start=-31d = %s, want 400 naming start and raw retention", r)
		}
	})

	t.Run("Hostile", func(t *testing.T) {
		base := url.Values{"metric": {"cpu.usage_percent"}}
		tests := []struct {
			param, value, want string
			fleet              bool
		}{
			{"metric", `cpu".usage_percent`, "invalid metric", false},
			{"metric", `cpu.usage_percent'`, "invalid metric", false},
			{"metric", `cpu\.usage_percent`, "invalid metric", false},
			{"metric", `cpu.usage_percent; DROP DATABASE metrics`, "invalid metric", false},
			{"metric", "cpu.usage_percent\nDROP", "invalid metric", false},
			{"metric", `cpu./.*/`, "invalid metric", false},
			{"metric", `cpu.usage_percent::field`, "invalid metric", false},
			{"metric", `cpu.usäge`, "invalid metric", false},
			{"metric", ``, "invalid metric", false},
			{"tag.co\"re", "0", "invalid tag.co\"re", false},
			{"tag.core;", "0", "invalid tag.core;", false},
			{"tag.core::field", "0", "invalid tag.core::field", false},
			{"tag.cöre", "0", "invalid tag.cöre", false},
			{"tag.[a-z]+", "0", "invalid tag.[a-z]+", false},
			{"tag.core", "0\nSELECT", "invalid tag.core", false},
			{"tag.agent", "x", "invalid tag.agent", false},
			{"fn", "mean;", "invalid fn", false},
			{"fn", "percentile(usage_percent, 5)", "invalid fn", false},
			{"fn", "mean::field", "invalid fn", false},
			{"every", "1m;", "invalid every", false},
			{"every", "1m'", "invalid every", false},
			{"every", "1m\n", "invalid every", false},
			{"every", "0s", "invalid every", false},
			{"every", "１m", "invalid every", false},
			{"start", "-1h; DROP", "invalid start", false},
			{"end", "yesterday", "invalid end", false},
			{"tier", "rollup_1m", "invalid tier", false},
			{"agents", `x' OR '1'='1`, "invalid agents", true},
			{"agents", "role=db\n", "invalid agents", true},
			{"agents", "ro\"le=db", "invalid agents", true},
			{"agents", "role::field=db", "invalid agents", true},
			{"group_by", `agent"`, "invalid group_by", true},
			{"group_by", `core::field`, "invalid group_by", true},
			{"group_by", `.*`, "invalid group_by", true},
			{"group_by", `cöre`, "invalid group_by", true},
		}
		for _, tt := range tests {
			params := url.Values{}
			for k, v := range base {
				params[k] = v
			}
			params.Set(tt.param, tt.value)
			path := agentPath
			if tt.fleet {
				path = "/api/v1/metrics/history"
			}
			r := h.get(h.viewer, path, params)
			if r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), tt.want) {
				t.Errorf("GET %s %s=%q = %s, want 400 with %q", path, tt.param, tt.value, r, tt.want)
			}
		}
		r := h.get(h.viewer, agentPath, url.Values{"metric": {"cpu.usage_percent"}, "tags.core": {"0"}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), "tags.core") {
			t.Errorf("history with an unknown parameter = %s, want 400 naming it", r)
		}
		r = h.get(h.viewer, "/api/v1/metrics", url.Values{"agent": {"x' OR 1=1"}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), "invalid agent") {
			t.Errorf("metrics?agent=hostile = %s, want 400 naming agent", r)
		}
	})

	t.Run("TooManyPoints", func(t *testing.T) {
		r := h.get(h.viewer, agentPath, url.Values{"metric": {"cpu.usage_percent"}, "start": {"-30d"}, "every": {"1s"}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorMessage(t), "invalid every") || !strings.Contains(r.errorMessage(t), "HISTORY_MAX_POINTS") {
			t.Errorf("history 30d every=1s = %s, want 400 naming every", r)
		}
	})

	t.Run("Fleet", func(t *testing.T) {
		r := h.get(h.viewer, "/api/v1/metrics/history", url.Values{"metric": {"cpu.usage_percent"}, "start": {"-24h"}})
		a := decode[historyAnswer](t, r)
		if r.status != http.StatusOK || len(a.Series) != 2 || a.Tier != "5m" {
			t.Fatalf("fleet history = %s, want 2 series (one per agent) from 5m", r)
		}
		for _, s := range a.Series {
			if len(s.Tags) != 1 || (s.Tags["agent"] != h.db.ID && s.Tags["agent"] != h.web.ID) {
				t.Errorf("fleet series tags = %v, want only the agent", s.Tags)
			}
		}
		for _, tt := range []struct {
			agents, groupBy string
			want            []map[string]string
		}{
			{"role=db", "", []map[string]string{{"agent": h.db.ID}}},
			{h.web.ID, "", []map[string]string{{"agent": h.web.ID}}},
			{h.db.ID + "," + h.web.ID, "core", []map[string]string{{"core": "0"}, {"core": "1"}}},
			{"role=nothing", "", nil},
		} {
			r := h.get(h.viewer, "/api/v1/metrics/history", url.Values{"metric": {"cpu.usage_percent"}, "agents": {tt.agents}, "group_by": {tt.groupBy}, "fn": {"max"}})
			a := decode[historyAnswer](t, r)
			if r.status != http.StatusOK || len(a.Series) != len(tt.want) {
				t.Errorf("fleet history agents=%s group_by=%s = %s, want series %v", tt.agents, tt.groupBy, r, tt.want)
				continue
			}
			for i, s := range a.Series {
				if fmt.Sprint(s.Tags) != fmt.Sprint(tt.want[i]) {
					t.Errorf("fleet history agents=%s group_by=%s series %d tags = %v, want %v", tt.agents, tt.groupBy, i, s.Tags, tt.want[i])
				}
			}
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		for _, q := range []url.Values{{}, {"agent": {h.web.ID}}} {
			r := h.get(h.viewer, "/api/v1/metrics", q)
			got := decode[struct {
				Metrics []struct {
					Name, Type string
					Tags       []string
				} `json:"metrics"`
			}](t, r)
			if r.status != http.StatusOK || len(got.Metrics) != 1 || got.Metrics[0].Name != "cpu.usage_percent" || got.Metrics[0].Type != "float" {
				t.Errorf("GET /api/v1/metrics?%s = %s, want cpu.usage_percent (float)", q.Encode(), r)
			}
		}
	})

	t.Run("OpenAPI", func(t *testing.T) {
		doc := loadOpenAPI(t)
		doc.Servers = nil
		router, err := legacy.NewRouter(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []req{
			{method: "GET", path: agentPath + "?metric=cpu.usage_percent&start=-24h&fn=max&every=1h", auth: bearer(h.viewer)},
			{method: "GET", path: agentPath + "?metric=cpu.usage_percent&start=-1h&fn=p95", auth: bearer(h.viewer)},
			{method: "GET", path: "/api/v1/metrics/history?metric=cpu.usage_percent&agents=role%3Ddb&group_by=core", auth: bearer(h.viewer)},
			{method: "GET", path: "/api/v1/metrics?agent=" + h.db.ID, auth: bearer(h.viewer)},
		} {
			checkAgainstDoc(t, router, h.env, r, false)
		}
		checkAgainstDoc(t, router, h.env, req{method: "GET", path: agentPath + "?metric=cpu.usage_percent&every=1s&start=-30d", auth: bearer(h.viewer)}, false)
		checkAgainstDoc(t, router, h.env, req{method: "GET", path: agentPath + "?metric=cpu%22", auth: bearer(h.viewer)}, false)
	})

	t.Run("TimeoutAndOutage", func(t *testing.T) {
		// Two more gateways on the same database and Redis prefix: the viewer's session works there.
		cfg := h.cfg
		cfg.History.QueryTimeout = time.Nanosecond
		_, slow := startGateway(t, cfg)
		r := doHTTP(t, slow, req{method: "GET", path: agentPath + "?metric=cpu.usage_percent", auth: bearer(h.viewer)})
		if r.status != http.StatusGatewayTimeout || !strings.Contains(r.errorMessage(t), "HISTORY_QUERY_TIMEOUT") {
			t.Errorf("history with a 1ns timeout = %s, want 504 naming HISTORY_QUERY_TIMEOUT", r)
		}
		cfg = h.cfg
		cfg.Influx.URL = "http://" + closedAddr(t)
		_, down := startGateway(t, cfg)
		for _, path := range []string{agentPath + "?metric=cpu.usage_percent", "/api/v1/metrics"} {
			r := doHTTP(t, down, req{method: "GET", path: path, auth: bearer(h.viewer)})
			if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
				t.Errorf("GET %s with InfluxDB down = %s, want 503 with Retry-After", path, r)
			}
		}
	})

	t.Run("Access", func(t *testing.T) {
		params := url.Values{"metric": {"cpu.usage_percent"}}
		for _, path := range []string{agentPath, "/api/v1/metrics/history", "/api/v1/metrics"} {
			if path == "/api/v1/metrics" {
				params = url.Values{"agent": {h.db.ID}}
			}
			if r := h.get(h.viewer, path, params); r.status != http.StatusOK {
				t.Errorf("viewer GET %s = %s, want 200", path, r)
			}
			if r := h.get(h.db.APIKey, path, params); r.status != http.StatusUnauthorized {
				t.Errorf("agent key GET %s = %s, want 401", path, r)
			}
			if r := h.do(req{method: "GET", path: path + "?" + params.Encode()}); r.status != http.StatusUnauthorized {
				t.Errorf("anonymous GET %s = %s, want 401", path, r)
			}
		}
		unknown := "/api/v1/agents/00000000-0000-4000-8000-000000000000/metrics/history"
		if r := h.get(h.viewer, unknown, url.Values{"metric": {"cpu.usage_percent"}}); r.status != http.StatusNotFound {
			t.Errorf("history of an unknown agent = %s, want 404", r)
		}
	})
}

func mustEvery(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(strings.Replace(s, "1d", "24h", 1))
	if err != nil {
		t.Fatalf("every %q: %v", s, err)
	}
	return d
}
