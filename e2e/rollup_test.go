package e2e_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/rollup"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// stallingInflux proxies to InfluxDB but, once more than allow rollup writes went through, holds
// every further write to a rollup tier without forwarding it: the rollup worker is stuck in the
// middle of its windows, leases held, when it is killed.
type stallingInflux struct {
	allow   int64
	written atomic.Int64
	stalled atomic.Int64
	srv     *httptest.Server
}

func newStallingInflux(t *testing.T, target string, allow int64) *stallingInflux {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	h := &stallingInflux{allow: allow}
	release := make(chan struct{})
	proxy := httputil.NewSingleHostReverseProxy(u)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/write" || !strings.Contains(r.URL.Query().Get("bucket"), "/rollup_") {
			proxy.ServeHTTP(w, r)
			return
		}
		if h.written.Add(1) <= h.allow {
			proxy.ServeHTTP(w, r)
			return
		}
		h.stalled.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); h.srv.CloseClientConnections(); h.srv.Close() })
	return h
}

type rollupKey struct {
	m, field string
	start    int64
}

type rollupAgg struct {
	min, max, sum, mean, last float64
	count                     int64
}

// TestRollupKilledMidWindowThenTwoCopies posts a data set around yesterday's midnight through the
// gateway, SIGKILLs a rollup worker stuck in the middle of its windows, lets two fresh copies
// finish, and checks every window of every tier against the points posted.
func TestRollupKilledMidWindowThenTwoCopies(t *testing.T) {
	s := newSystem(t, options{writers: 1})
	a := s.registerAgent("rollup")
	midnight := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	type post struct {
		ts time.Time
		v  float64
	}
	var posts []post
	for ts, i := midnight.Add(-17*time.Minute), 0; ts.Before(midnight.Add(13 * time.Minute)); ts, i = ts.Add(23*time.Second), i+1 {
		v := float64((i*37)%101) + 0.25
		posts = append(posts, post{ts, v})
		code, body, _ := s.do("POST", "/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey, batch(ts, v), "Content-Type", "application/json")
		if code != http.StatusNoContent && code != http.StatusAccepted && code != http.StatusOK {
			t.Fatalf("posting batch %d: %d %s", i, code, body)
		}
	}

	stall := newStallingInflux(t, s.influxDB.URL, 8)
	env := []string{"ROLLUP_GRACE=1s", "ROLLUP_INTERVAL=100ms", "ROLLUP_LEASE=2s", "ROLLUP_RETRY_DELAY=200ms"}
	first := s.startWorker("rollup", "rollup-1", append(env, "INFLUXDB_URL="+stall.srv.URL)...)
	store := rollup.NewStore(s.rdb, s.prefix)
	testenv.Eventually(t, 60*time.Second, func() string {
		if stall.stalled.Load() == 0 {
			return fmt.Sprintf("rollup-1 has written %d rollup batches and is not stuck yet", stall.written.Load())
		}
		return ""
	})
	states, err := store.State(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if states[0].Inflight+states[1].Inflight == 0 {
		t.Fatalf("no window in flight while rollup-1 is stuck: %+v", states)
	}
	first.kill(t)

	second := s.startWorker("rollup", "rollup-2", env...)
	s.startWorker("rollup", "rollup-3", env...)
	testenv.Eventually(t, 120*time.Second, func() string {
		if lag := metricValue(t, second.ops, "agentmonitor_stream_group_lag", `group="rollup"`); lag != 0 {
			return fmt.Sprintf("rollup group lag %v", lag)
		}
		states, err := store.State(context.Background(), time.Now())
		if err != nil {
			return err.Error()
		}
		for i, st := range states {
			if st.Dirty != 0 || st.Inflight != 0 {
				return fmt.Sprintf("tier %s: %d dirty, %d in flight", influx.Tiers[i].Name, st.Dirty, st.Inflight)
			}
		}
		return ""
	})
	if n := metricValue(t, second.ops, "agentmonitor_rollup_windows_computed_total"); n == 0 {
		t.Error("rollup-2 reports no window computed on /metrics")
	}

	measurements := []string{"cpu", "mem", "disk", "net", "load", "procs"}
	windows := 0
	for _, tier := range influx.Tiers {
		want := map[rollupKey]rollupAgg{}
		w := int64(tier.Width / time.Second)
		for _, p := range posts {
			start := p.ts.Unix() - p.ts.Unix()%w
			for _, m := range measurements {
				for fi, f := range []string{"a", "b", "c", "d", "e"} {
					v := p.v + float64(fi)
					k := rollupKey{m, f, start}
					g, ok := want[k]
					if !ok {
						g = rollupAgg{min: v, max: v}
					}
					g.min, g.max, g.sum, g.count, g.last = math.Min(g.min, v), math.Max(g.max, v), g.sum+v, g.count+1, v
					g.mean = g.sum / float64(g.count)
					want[k] = g
				}
			}
		}
		got := map[rollupKey]rollupAgg{}
		for _, m := range measurements {
			series, err := s.influx.QueryOne(context.Background(), "SELECT * FROM "+s.influx.TierSource(tier, m)+" GROUP BY *")
			if err != nil {
				t.Fatalf("reading tier %s: %v", tier.Name, err)
			}
			for _, sr := range series {
				if sr.Tags["agent"] != a.ID || sr.Tags["host"] != "h1" {
					t.Errorf("tier %s: series tags %v, want agent=%s host=h1", tier.Name, sr.Tags, a.ID)
				}
				for _, row := range sr.Values {
					r := map[string]any{}
					for i, c := range sr.Columns {
						r[c] = row[i]
					}
					n, _ := r["time"].(interface{ Int64() (int64, error) })
					if n == nil {
						t.Fatalf("tier %s: time %v is not a number", tier.Name, r["time"])
					}
					ns, _ := n.Int64()
					ts := time.Unix(0, ns)
					for _, f := range []string{"a", "b", "c", "d", "e"} {
						num := func(c string) float64 {
							n, ok := r[f+"_"+c].(interface{ Float64() (float64, error) })
							if !ok {
								return math.NaN()
							}
							v, _ := n.Float64()
							return v
						}
						got[rollupKey{m, f, ts.Unix()}] = rollupAgg{min: num("min"), max: num("max"), sum: num("sum"),
							mean: num("mean"), last: num("last"), count: int64(num("count"))}
					}
				}
			}
		}
		near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(y)) }
		for k, w := range want {
			g, ok := got[k]
			if !ok || g.count != w.count || !near(g.min, w.min) || !near(g.max, w.max) || !near(g.sum, w.sum) ||
				!near(g.mean, w.mean) || !near(g.last, w.last) {
				t.Errorf("tier %s window %v = %+v (present %v), want %+v", tier.Name, k, g, ok, w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("tier %s: %d windows, want %d", tier.Name, len(got), len(want))
		}
		windows += len(want)
	}
	t.Logf("%d windows over 4 tiers correct after rollup-1 was killed with %d writes stuck", windows, stall.stalled.Load())
}

// TestAuditRowsPastRetentionArePurged checks the audit log's retention: rows older than
// LOGS_RETENTION_DAYS (7 by default) are deleted by the gateway's purge loop, which runs at start
// and then hourly; newer rows stay.
func TestAuditRowsPastRetentionArePurged(t *testing.T) {
	s := newSystem(t, options{})
	var dbURL string
	for _, kv := range s.sys.Env {
		if v, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			dbURL = v
		}
	}
	ctx := context.Background()
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("opening %s: %v", dbURL, err)
	}
	defer db.Close()
	for _, r := range []struct{ action, age string }{{"e2e.old", "8 days"}, {"e2e.recent", "6 days"}} {
		if _, err := db.ExecContext(ctx, `INSERT INTO audit_log (at, actor, action) VALUES (now() - $1::interval, 'e2e', $2)`, r.age, r.action); err != nil {
			t.Fatalf("inserting audit row: %v", err)
		}
	}
	// A gateway starting purges at once (the one running purged before the rows existed).
	if err := s.procs[0].Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	gw, err := s.sys.StartGateway(t.Context(), "gateway-2") // waits for /readyz
	s.track(gw, err)
	testenv.Eventually(t, 30*time.Second, func() string {
		var old, recent int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE action = 'e2e.old'), count(*) FILTER (WHERE action = 'e2e.recent') FROM audit_log`).Scan(&old, &recent); err != nil {
			return err.Error()
		}
		if recent != 1 {
			t.Fatalf("the 6-day-old audit row was deleted (%d left), want it kept", recent)
		}
		if old != 0 {
			return "the 8-day-old audit row is still there"
		}
		return ""
	})
}
