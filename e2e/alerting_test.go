package e2e_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// webhookReceiver records every notification it is sent.
type webhookReceiver struct {
	mu     sync.Mutex
	bodies []map[string]any
	srv    *httptest.Server
	secret string
	badSig int
}

func newWebhookReceiver(t *testing.T, secret string) *webhookReceiver {
	w := &webhookReceiver{secret: secret}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(w.secret))
		mac.Write(body)
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		w.mu.Lock()
		if r.Header.Get("X-AgentMonitor-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			w.badSig++
		}
		w.bodies = append(w.bodies, m)
		w.mu.Unlock()
		rw.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// statuses returns the status of every notification received, in order.
func (w *webhookReceiver) statuses() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, b := range w.bodies {
		out = append(out, fmt.Sprint(b["status"]))
	}
	return out
}

// wsClient reads the alert WebSocket into a list of events.
type wsClient struct {
	mu       sync.Mutex
	snapshot []alert.Active
	events   []alert.Event
	received map[string]time.Time // event id -> when it arrived
	conn     *websocket.Conn
}

func (s *system) dialAlerts(t *testing.T) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(s.gateway, "http") + "/api/v1/ws/alerts"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + s.admin}}}) //nolint:bodyclose // websocket.Dial closes the handshake response's body itself
	if err != nil {
		t.Fatalf("dialing %s: %v", url, err)
	}
	conn.SetReadLimit(1 << 20)
	c := &wsClient{conn: conn, received: map[string]time.Time{}}
	snap := make(chan struct{})
	go func() {
		first := true
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var msg struct {
				Type   string         `json:"type"`
				Alerts []alert.Active `json:"alerts"`
				Event  alert.Event    `json:"event"`
			}
			if err := json.Unmarshal(data, &msg); err != nil {
				continue
			}
			c.mu.Lock()
			switch msg.Type {
			case "snapshot":
				c.snapshot = msg.Alerts
			case "event":
				c.events = append(c.events, msg.Event)
				c.received[msg.Event.ID] = time.Now()
			}
			c.mu.Unlock()
			if first {
				first = false
				close(snap)
			}
		}
	}()
	select {
	case <-snap:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot on the alert WebSocket within 10s")
	}
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	return c
}

// transitions lists "from>to(severity)" for the events of one agent, in arrival order.
func (c *wsClient) transitions(agentID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		if e.AgentID == agentID {
			out = append(out, string(e.From)+">"+string(e.To)+"("+e.Severity+")")
		}
	}
	return out
}

func (c *wsClient) event(agentID, to string) (alert.Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.AgentID == agentID && string(e.To) == to {
			return e, true
		}
	}
	return alert.Event{}, false
}

func (s *system) createJSON(t *testing.T, path string, v any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(v)
	code, b, _ := s.do("POST", path, "Bearer "+s.admin, body)
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("POST %s = %d %s", path, code, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s answer %s: %v", path, b, err)
	}
	return out
}

// post sends one cpu.usage_percent sample of agent a at time at.
func (s *system) postCPU(t *testing.T, a agent, v float64, at time.Time) {
	t.Helper()
	body := fmt.Sprintf(`{"points":[{"measurement":"cpu","tags":{"core":"total"},"fields":{"usage_percent":%g},"time":%q}]}`,
		v, at.UTC().Format(time.RFC3339Nano))
	if code, b, _ := s.do("POST", "/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey, []byte(body)); code != http.StatusNoContent {
		t.Fatalf("POST sample = %d %s", code, b)
	}
}

func cpuRule(channelID string, threshold, recovery float64) map[string]any {
	return map[string]any{
		"name": "cpu busy", "kind": "threshold", "metric": "cpu.usage_percent",
		"aggregation": "last", "operator": ">",
		"thresholds": map[string]any{"critical": map[string]any{"value": threshold, "recovery": recovery}},
		"for":        "2s", "labels": map[string]string{"team": "infra"},
		"summary":  "{{.Agent}} cpu at {{.Value}}",
		"channels": []string{channelID}, "enabled": true,
	}
}

func (s *system) historyCount(t *testing.T, agentID string) int {
	t.Helper()
	out, _ := adminGet[struct {
		Total int `json:"total"`
	}](t, s, "/api/v1/alerts/history?agent="+agentID+"&limit=100")
	return out.Total
}

// waitAlertersLoaded waits until every alerter has loaded the rules and the agents (their
// rules_loaded and agents_cached gauges), which they poll every RULES_POLL_INTERVAL and
// AGENTS_REFRESH_INTERVAL. rules counts the test's own rules: the pipeline rules are added.
func (s *system) waitAlertersLoaded(t *testing.T, rules, agents int) {
	t.Helper()
	rules += len(s.pipelineRules(t))
	for _, p := range s.procs {
		if !strings.HasPrefix(p.Name(), "alerter") {
			continue
		}
		testenv.Eventually(t, 20*time.Second, func() string {
			r := metricValue(t, p.ops, "agentmonitor_alerter_rules_loaded")
			a := metricValue(t, p.ops, "agentmonitor_alerter_agents_cached")
			if int(r) != rules || int(a) < agents {
				return fmt.Sprintf("%s has %v rules and %v agents loaded, want %d and at least %d", p.Name(), r, a, rules, agents)
			}
			return ""
		})
	}
}

// waitAlertersDrained waits until the alerters have handled every metrics entry and every
// consumer of the alerts stream (history, notifier) every alert event: after it, a transition or
// a delivery that has not happened will not happen from what was sent so far.
func (s *system) waitAlertersDrained(t *testing.T) {
	t.Helper()
	testenv.WaitDrained(t, s.rdb, "alerter", s.metricStreams()...)
	testenv.WaitDrained(t, s.rdb, "", alertredis.StreamKeys(s.prefix, shards)...)
}

func TestAlertFiresResolvesWithHysteresisEverywhere(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1, alerters: 2})
	hook := newWebhookReceiver(t, "s3cret")
	ch := s.createJSON(t, "/api/v1/notification-channels", map[string]any{
		"name": "ops", "type": "webhook", "url": hook.srv.URL, "secret": "s3cret", "enabled": true})
	s.createJSON(t, "/api/v1/alert-rules", cpuRule(fmt.Sprint(ch["id"]), 80, 70))
	ws := s.dialAlerts(t)
	a := s.registerAgent("busy")
	s.waitAlertersLoaded(t, 1, 1)

	t0 := time.Now().Add(-30 * time.Second).Truncate(time.Second)
	// Crosses at t0, holds for 3s: pending, then firing after "for" (2s). Then it oscillates
	// between the threshold (80) and the recovery (70): no flapping. 65 resolves it.
	values := []float64{85, 86, 87, 88, 75, 82, 74, 81, 72, 65}
	for i, v := range values[:4] {
		s.postCPU(t, a, v, t0.Add(time.Duration(i)*time.Second))
	}
	// The receiver sees the firing before the samples that resolve it are sent: two notifier
	// copies handle the transitions of one alert in either order, and a firing overtaken by its
	// resolve is skipped on purpose (the receiver must not be left with a stale state), so the
	// samples of a quick fire-and-resolve would make this test depend on which copy was first.
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := hook.statuses(); !slices.Equal(got, []string{"firing"}) {
			return fmt.Sprintf("webhook got %v, want [firing]", got)
		}
		return ""
	})
	for i, v := range values[4:] {
		s.postCPU(t, a, v, t0.Add(time.Duration(4+i)*time.Second))
	}
	// A redelivered entry: the same samples appended to the stream again.
	want := []string{"ok>pending(critical)", "pending>firing(critical)", "firing>resolved(critical)"}
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := ws.transitions(a.ID); !slices.Equal(got, want) {
			return fmt.Sprintf("WebSocket transitions %v, want %v", got, want)
		}
		if got := hook.statuses(); !slices.Equal(got, []string{"firing", "resolved"}) {
			return fmt.Sprintf("webhook got %v, want [firing resolved]", got)
		}
		if n := s.historyCount(t, a.ID); n != 3 {
			return fmt.Sprintf("alert history holds %d events, want 3", n)
		}
		return ""
	})
	resolved, _ := ws.event(a.ID, "resolved")
	if resolved.RecoveryValue == nil || *resolved.RecoveryValue != 65 || resolved.DurationSeconds <= 0 {
		t.Errorf("resolved event recovery %v duration %v, want 65 and > 0", resolved.RecoveryValue, resolved.DurationSeconds)
	}
	if hook.badSig != 0 {
		t.Errorf("%d webhook deliveries had a wrong HMAC signature", hook.badSig)
	}
	hook.mu.Lock()
	last := hook.bodies[len(hook.bodies)-1]
	hook.mu.Unlock()
	if last["version"] != "4" || last["recovery_value"] != 65.0 || last["alerts"] == nil {
		t.Errorf("resolved webhook body %v, want Alertmanager v4 with recovery_value 65", last)
	}
	if n, err := s.influx.CountPoints(t.Context(), "alerts", a.ID); err != nil || n != 3 {
		t.Errorf("InfluxDB alerts points for the agent = %d (%v), want 3", n, err)
	}

	// Redelivery: the firing samples appended again (as a retried stream entry would be) change nothing.
	pub, err := stream.NewPublisher(s.rdb, stream.PublisherConfig{Prefix: s.prefix, Shards: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		line := fmt.Sprintf("cpu,agent=%s,core=total usage_percent=%g %d\n", a.ID, values[i], t0.Add(time.Duration(i)*time.Second).UnixNano())
		if err := pub.Publish(context.Background(), a.ID, []byte(line), map[string]string{
			stream.MetaAgent: a.ID, stream.MetaReceivedAt: strconv.FormatInt(time.Now().UnixNano(), 10), stream.MetaPoints: "1"}); err != nil {
			t.Fatal(err)
		}
	}
	s.waitAlertersDrained(t)
	if got := ws.transitions(a.ID); !slices.Equal(got, want) {
		t.Errorf("after redelivery WebSocket transitions %v, want still %v", got, want)
	}
	if got := hook.statuses(); len(got) != 2 {
		t.Errorf("after redelivery webhook got %v, want still 2 deliveries", got)
	}
	if n := s.historyCount(t, a.ID); n != 3 {
		t.Errorf("after redelivery alert history holds %d events, want 3", n)
	}
}

func TestAgentSilentFiresForSilentAndNeverSeenAgents(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1, alerters: 2})
	never := s.registerAgent("never-sent")
	quiet := s.registerAgent("went-quiet")
	s.postCPU(t, quiet, 10, time.Now())
	s.createJSON(t, "/api/v1/alert-rules", map[string]any{
		"name": "silent", "kind": "agent_silent", "after": "10s", "severity": "critical",
		"agents": map[string]any{"ids": []string{never.ID, quiet.ID}}, "enabled": true})
	ws := s.dialAlerts(t)
	testenv.Eventually(t, 30*time.Second, func() string {
		for _, a := range []agent{never, quiet} {
			if _, ok := ws.event(a.ID, "firing"); !ok {
				return fmt.Sprintf("no firing agent_silent event for %s yet (got %v)", a.Name, ws.transitions(a.ID))
			}
		}
		return ""
	})
	s.postCPU(t, quiet, 11, time.Now())
	testenv.Eventually(t, 30*time.Second, func() string {
		if _, ok := ws.event(quiet.ID, "resolved"); !ok {
			return fmt.Sprintf("went-quiet not resolved after reporting again (got %v)", ws.transitions(quiet.ID))
		}
		return ""
	})
	// Each transition exactly once, although two alerters check every agent.
	s.waitAlertersDrained(t)
	for _, a := range []agent{never, quiet} {
		got := ws.transitions(a.ID)
		seen := map[string]int{}
		for _, tr := range got {
			seen[tr]++
		}
		for tr, n := range seen {
			if n != 1 {
				t.Errorf("agent %s: transition %s seen %d times (%v), want once", a.Name, tr, n, got)
			}
		}
	}
}

func TestRuleEditAndSilenceTakeEffectWithoutRestart(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1, alerters: 1})
	hook := newWebhookReceiver(t, "")
	ch := s.createJSON(t, "/api/v1/notification-channels", map[string]any{
		"name": "ops", "type": "webhook", "url": hook.srv.URL, "enabled": true})
	rule := s.createJSON(t, "/api/v1/alert-rules", cpuRule(fmt.Sprint(ch["id"]), 80, 70))
	ruleID := fmt.Sprint(rule["id"])
	ws := s.dialAlerts(t)
	a := s.registerAgent("edited")
	b := s.registerAgent("silenced")

	// Raise the threshold to 95: 90 must no longer alert.
	edited := cpuRule(fmt.Sprint(ch["id"]), 95, 90)
	body, _ := json.Marshal(edited)
	if code, out, _ := s.do("PUT", "/api/v1/alert-rules/"+ruleID, "Bearer "+s.admin, body); code != 200 {
		t.Fatalf("PUT rule = %d %s", code, out)
	}
	// Silence agent b: its alert fires and is recorded, but no webhook is sent.
	s.createJSON(t, "/api/v1/silences", map[string]any{
		"matchers":  map[string]any{"agent_id": b.ID},
		"starts_at": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339),
		"ends_at":   time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"comment":   "maintenance"})
	time.Sleep(1500 * time.Millisecond)

	t0 := time.Now().Add(-20 * time.Second).Truncate(time.Second)
	for i := range 4 {
		s.postCPU(t, a, 90, t0.Add(time.Duration(i)*time.Second))
		s.postCPU(t, b, 99, t0.Add(time.Duration(i)*time.Second))
	}
	testenv.Eventually(t, 30*time.Second, func() string {
		if _, ok := ws.event(b.ID, "firing"); !ok {
			return fmt.Sprintf("silenced agent's alert not firing yet (%v)", ws.transitions(b.ID))
		}
		if n := s.historyCount(t, b.ID); n != 2 {
			return fmt.Sprintf("silenced agent's history holds %d events, want 2 (pending, firing)", n)
		}
		return ""
	})
	s.waitAlertersDrained(t)
	if got := ws.transitions(a.ID); len(got) != 0 {
		t.Errorf("agent at 90 under the edited threshold 95 got transitions %v, want none", got)
	}
	if got := hook.statuses(); len(got) != 0 {
		t.Errorf("webhook got %v, want nothing (agent a under threshold, agent b silenced)", got)
	}
}

// TestAlertLatency measures the time from an accepted sample to its WebSocket event (reported,
// never asserted: speed is judged by the bench, not by tests).
func TestAlertLatency(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1, alerters: 1})
	rule := cpuRule("", 50, 40)
	delete(rule, "channels")
	rule["for"] = "0s"
	s.createJSON(t, "/api/v1/alert-rules", rule)
	ws := s.dialAlerts(t)
	agents := []agent{}
	for i := range 20 {
		agents = append(agents, s.registerAgent(fmt.Sprintf("lat-%d", i)))
	}
	s.waitAlertersLoaded(t, 1, len(agents))
	sent := map[string]time.Time{}
	for _, a := range agents {
		start := time.Now()
		s.postCPU(t, a, 99, start)
		sent[a.ID] = start
	}
	var lat []time.Duration
	testenv.Eventually(t, 30*time.Second, func() string {
		lat = lat[:0]
		ws.mu.Lock()
		defer ws.mu.Unlock()
		for _, e := range ws.events {
			// Only the agents' alerts: the built-in pipeline rules (watchdog...) fire too.
			if at, ok := sent[e.AgentID]; ok && e.To == "firing" {
				lat = append(lat, ws.received[e.ID].Sub(at))
			}
		}
		if len(lat) < len(agents) {
			return fmt.Sprintf("%d of %d firing events arrived", len(lat), len(agents))
		}
		return ""
	})
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("sample accepted -> WebSocket event, %d alerts: p50 %s, p99 %s (max)", len(lat), lat[len(lat)/2], lat[len(lat)-1])
}
