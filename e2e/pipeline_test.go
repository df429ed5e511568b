package e2e_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// batch is one agent request: six points (cpu, mem, disk, net, load, procs) at one timestamp, 30
// values, so that batch i of a run is six distinct points in InfluxDB.
func batch(ts time.Time, v float64) []byte {
	t := ts.UTC().Format(time.RFC3339Nano)
	var b strings.Builder
	b.WriteString(`{"points":[`)
	for i, m := range []string{"cpu", "mem", "disk", "net", "load", "procs"} {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"measurement":%q,"tags":{"host":"h1"},"fields":{"a":%g,"b":%g,"c":%g,"d":%g,"e":%g},"time":%q}`,
			m, v, v+1, v+2, v+3, v+4, t)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// ledger counts the points the gateway acknowledged with a 2xx.
type ledger struct {
	mu     sync.Mutex
	points int
	other  map[int]int // non-2xx answers by status
}

// load posts batches for agent a until stop is closed or n batches were sent, one at a time, each
// with its own timestamp, and records what was acknowledged.
func (s *system) load(a agent, n int, start time.Time, l *ledger, stop <-chan struct{}) {
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range n {
		select {
		case <-stop:
			return
		default:
		}
		req, _ := http.NewRequest(http.MethodPost, s.gateway+"/api/v1/agents/"+a.ID+"/metrics", bytes.NewReader(batch(start.Add(time.Duration(i)*time.Millisecond), float64(i))))
		req.Header.Set("Authorization", "Bearer "+a.APIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		l.mu.Lock()
		switch {
		case err != nil:
			l.other[0]++
		case resp.StatusCode/100 == 2:
			l.points += 6
		default:
			l.other[resp.StatusCode]++
		}
		l.mu.Unlock()
		if err == nil {
			resp.Body.Close()
		}
	}
}

func newLedger() *ledger { return &ledger{other: map[int]int{}} }

func (l *ledger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.points
}

// waitAllPoints waits until InfluxDB holds exactly want points for the agent, then, once the
// writers have acknowledged every entry, checks that the count stayed there (a duplicate would
// push it over).
func (s *system) waitAllPoints(t *testing.T, agentID string, want int, timeout time.Duration) {
	t.Helper()
	var last int
	testenv.Eventually(t, timeout, func() string {
		last = s.countPoints(agentID)
		if last == want {
			return ""
		}
		return fmt.Sprintf("InfluxDB holds %d points for agent %s, want %d", last, agentID, want)
	})
	testenv.WaitDrained(t, s.rdb, "influx-writer", s.metricStreams()...)
	if got := s.countPoints(agentID); got != want {
		t.Fatalf("InfluxDB count moved from %d to %d after settling, want it to stay at %d", want, got, want)
	}
}

func TestPipelineEndToEnd(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1})
	a := s.registerAgent("web-1")

	before := time.Now()
	// JSON, with a client-sent agent tag that must be replaced by the key's agent.
	body := []byte(`{"points":[{"measurement":"cpu","tags":{"core":"0","agent":"someone-else"},"fields":{"usage_percent":12.5}},
		{"measurement":"mem","fields":{"used_percent":40.25}}]}`)
	if code, b, _ := s.do("POST", "/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey, body); code != http.StatusNoContent {
		t.Fatalf("POST metrics = %d %s, want 204", code, b)
	}
	// Line protocol as Telegraf's outputs.influxdb_v2 sends it: gzip, Token auth, ns precision.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	now := time.Now().UnixNano()
	fmt.Fprintf(zw, "disk,path=/ used_percent=71.5,free=1024i %d\nnet,iface=eth0 rx_bytes=123456i %d\n", now, now)
	zw.Close()
	code, b, _ := s.do("POST", "/api/v2/write?bucket=metrics&org=&precision=ns", "Token "+a.APIKey, gz.Bytes(),
		"Content-Encoding", "gzip", "Content-Type", "text/plain; charset=utf-8")
	if code != http.StatusNoContent {
		t.Fatalf("POST /api/v2/write = %d %s, want 204", code, b)
	}

	s.waitAllPoints(t, a.ID, 4, 30*time.Second)
	if n, err := s.influx.CountPoints(t.Context(), "", "someone-else"); err != nil || n != 0 {
		t.Errorf("points tagged with the client's agent tag = %d (%v), want 0", n, err)
	}

	// last_seen advances through pg-sync, and the agent shows online.
	testenv.Eventually(t, 20*time.Second, func() string {
		code, b, _ := s.do("GET", "/api/v1/agents/"+a.ID, "Bearer "+s.admin, nil)
		var got struct {
			LastSeen *time.Time `json:"last_seen"`
			Status   string     `json:"status"`
		}
		if err := json.Unmarshal(b, &got); code != 200 || err != nil {
			return fmt.Sprintf("GET agent = %d %s", code, b)
		}
		if got.LastSeen == nil || got.LastSeen.Before(before.Add(-time.Second)) || got.Status != "online" {
			return fmt.Sprintf("agent last_seen %v status %q, want after %v and online", got.LastSeen, got.Status, before)
		}
		return ""
	})

	// Latest and recent values come from the hot cache.
	code, b, _ = s.do("GET", "/api/v1/agents/"+a.ID+"/metrics/latest", "Bearer "+s.admin, nil)
	if code != 200 || !strings.Contains(string(b), `"cpu.usage_percent"`) || !strings.Contains(string(b), "12.5") ||
		!strings.Contains(string(b), `"disk.used_percent"`) {
		t.Errorf("GET latest = %d %s, want cpu.usage_percent 12.5 and disk.used_percent", code, b)
	}
	code, b, _ = s.do("GET", "/api/v1/agents/"+a.ID+"/metrics/recent?metric=mem.used_percent", "Bearer "+s.admin, nil)
	if code != 200 || !strings.Contains(string(b), "40.25") {
		t.Errorf("GET recent = %d %s, want the sample 40.25", code, b)
	}
}
