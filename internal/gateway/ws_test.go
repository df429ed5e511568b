package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertfeed"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// registryValue returns the value of the unlabelled gauge or counter name in reg.
func registryValue(t testing.TB, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			m := f.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// wsURL is the WebSocket URL of the alert socket of e, with query (may be "").
func (e *env) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(e.url, "http") + "/api/v1/ws/alerts"
	if query != "" {
		u += "?" + query
	}
	return u
}

// dialWS connects to url with the request headers h (may be nil).
func dialWS(t testing.TB, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, res, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if err == nil {
		conn.SetReadLimit(-1) // the test reads whatever the server sends
		t.Cleanup(func() { _ = conn.CloseNow() })
	}
	return conn, res, err
}

// mustDialWS connects with a session token in the Authorization header.
func (e *env) mustDialWS(token string) *websocket.Conn {
	e.t.Helper()
	conn, res, err := dialWS(e.t, e.wsURL(""), http.Header{"Authorization": {bearer(token)}}) //nolint:bodyclose // websocket.Dial closes the handshake response's body itself
	if err != nil {
		e.t.Fatalf("dialing the alert socket: %v (answer %v)", err, statusOf(res))
	}
	return conn
}

func statusOf(res *http.Response) any {
	if res == nil {
		return nil
	}
	return res.StatusCode
}

// wsMessage is any message of the alert socket.
type wsMessage struct {
	Type   string         `json:"type"`
	Alerts []alert.Active `json:"alerts"`
	Event  *alert.Event   `json:"event"`
}

// readWS reads one message within d.
func readWS(t testing.TB, conn *websocket.Conn, d time.Duration) (wsMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	if err != nil {
		return wsMessage{}, err
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type = %v, want text", typ)
	}
	var m wsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding message %q: %v", b, err)
	}
	return m, nil
}

func mustReadWS(t testing.TB, conn *websocket.Conn) wsMessage {
	t.Helper()
	m, err := readWS(t, conn, 5*time.Second)
	if err != nil {
		t.Fatalf("reading from the alert socket: %v", err)
	}
	return m
}

// testEvent is a transition of alert n with a summary of pad bytes.
func testEvent(n, pad int) alert.Event {
	th := 90.0
	return alert.Event{
		ID: fmt.Sprintf("ev-%06d", n), AlertID: alert.ID("rule-1", "agent-1", fmt.Sprint(n)),
		RuleID: "rule-1", RuleName: "CPU busy", Kind: "threshold", AgentID: "agent-1", Series: fmt.Sprint(n),
		Metric: "cpu.usage_percent", From: alert.StatusPending, To: alert.StatusFiring,
		Severity: "critical", Value: 97.5, Threshold: &th, At: time.Date(2025, 6, 1, 12, 0, 0, n, time.UTC),
		Summary: strings.Repeat("x", pad), Notify: true,
	}
}

// publish sends ev on the alerts pub/sub channel as the alerter does.
func (e *env) publish(ev alert.Event) {
	e.t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.rdb.Publish(context.Background(), alertredis.Channel(e.prefix), b).Err(); err != nil {
		e.t.Fatalf("publishing: %v", err)
	}
}

func TestAlertSocketRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.CORSOrigins = []string{"https://dash.example.com"} })
	viewer := e.userToken(e.adminToken(), "watcher", "viewer")

	tests := []struct {
		name   string
		query  string
		header http.Header
		want   int // 101: accepted
	}{
		{"no token", "", nil, 401},
		{"unknown token in header", "", http.Header{"Authorization": {"Bearer ams_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, 401},
		{"unknown token in query", "token=ams_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil, 401},
		{"agent key", "token=amk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil, 401},
		{"foreign origin", "token=" + viewer, http.Header{"Origin": {"https://evil.example"}}, 403},
		{"foreign origin, header token", "", http.Header{"Authorization": {bearer(viewer)}, "Origin": {"https://evil.example"}}, 403},
		{"allowed origin with another scheme", "token=" + viewer, http.Header{"Origin": {"http://dash.example.com"}}, 403},
		{"token in query", "token=" + viewer, nil, 101},
		{"same-host origin", "token=" + viewer, http.Header{"Origin": {"http://" + e.g.Addr()}}, 101},
		{"configured origin", "token=" + viewer, http.Header{"Origin": {"https://dash.example.com"}}, 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, res, err := dialWS(t, e.wsURL(tt.query), tt.header) //nolint:bodyclose // websocket.Dial closes the handshake response's body itself
			if tt.want == 101 {
				if err != nil {
					t.Fatalf("dial = %v (answer %v), want accepted", err, statusOf(res))
				}
				if m := mustReadWS(t, conn); m.Type != "snapshot" {
					t.Errorf("first message = %+v, want a snapshot", m)
				}
				return
			}
			if err == nil {
				t.Fatalf("dial accepted, want %d", tt.want)
			}
			if res == nil || res.StatusCode != tt.want {
				t.Fatalf("dial = %v (answer %v), want %d", err, statusOf(res), tt.want)
			}
			body, _ := io.ReadAll(res.Body)
			if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || !strings.Contains(string(body), `"error"`) {
				t.Errorf("refusal = %s %q, want a JSON error body", res.Header.Get("Content-Type"), body)
			}
		})
	}

	// A plain GET, no upgrade: 426 in the common error shape.
	r := e.do(req{method: "GET", path: "/api/v1/ws/alerts", auth: bearer(viewer)})
	if r.status != http.StatusUpgradeRequired || !strings.Contains(r.errorMessage(t), "Upgrade") {
		t.Errorf("GET without upgrade = %s, want 426 naming the Upgrade header", r)
	}
}

func TestAlertSocketSnapshotThenEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	token := e.userToken(e.adminToken(), "watcher", "viewer")
	ctx := context.Background()

	active := alert.Active{
		ID: alert.ID("rule-1", "agent-1", ""), RuleID: "rule-1", RuleName: "CPU busy", Kind: "threshold",
		AgentID: "agent-1", Metric: "cpu.usage_percent", Status: alert.StatusFiring, Severity: "critical",
		Value: 97, Since: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
	}
	e.seedActive(active)

	conn := e.mustDialWS(token)
	m := mustReadWS(t, conn)
	if m.Type != "snapshot" || len(m.Alerts) != 1 || m.Alerts[0].ID != active.ID || m.Alerts[0].Value != 97 {
		t.Fatalf("first message = %+v, want a snapshot of the seeded alert", m)
	}

	for i := range 3 {
		e.publish(testEvent(i, 10))
	}
	for i := range 3 {
		m := mustReadWS(t, conn)
		want := testEvent(i, 10)
		if m.Type != "event" || m.Event == nil || m.Event.ID != want.ID || m.Event.To != want.To || !m.Event.At.Equal(want.At) {
			t.Fatalf("message %d = %+v, want event %s", i, m, want.ID)
		}
	}

	// Garbage on the channel is skipped; the next event still arrives.
	if err := e.rdb.Publish(ctx, alertredis.Channel(e.prefix), "not json").Err(); err != nil {
		t.Fatal(err)
	}
	e.publish(testEvent(7, 0))
	if m := mustReadWS(t, conn); m.Event == nil || m.Event.ID != testEvent(7, 0).ID {
		t.Fatalf("message after garbage = %+v, want event %s", m, testEvent(7, 0).ID)
	}
	if got := registryValue(t, e.g.reg, "agentmonitor_gateway_ws_clients"); got != 1 {
		t.Errorf("ws_clients = %v, want 1", got)
	}

	// A client that leaves is removed: the gauge drops and the hub goes on.
	_ = conn.Close(websocket.StatusNormalClosure, "bye")
	testenv.Eventually(t, 5*time.Second, func() string {
		if registryValue(t, e.g.reg, "agentmonitor_gateway_ws_clients") == 0 {
			return ""
		}
		return "ws_clients back to 0"
	})
}

// TestAlertSocketDropsStalledClient shows that a client that stops reading is disconnected with
// a reason once its queue is full, while another client receives every event.
func TestAlertSocketDropsStalledClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.WS.ClientQueue = 4
		c.WS.PingInterval = time.Minute // no pings: the stalled client would not answer them
		c.WS.WriteTimeout = 30 * time.Second
	})
	token := e.userToken(e.adminToken(), "watcher", "viewer")

	stalled := e.mustDialWS(token)
	good := e.mustDialWS(token)
	if m := mustReadWS(t, good); m.Type != "snapshot" {
		t.Fatalf("first message = %+v, want a snapshot", m)
	}

	// The good client reads on its own goroutine (without t, which it may outlive by a moment).
	received := make(chan string, 10000)
	readerDone := make(chan error, 1)
	go func() {
		for {
			_, b, err := good.Read(context.Background())
			if err != nil {
				readerDone <- err
				return
			}
			var m wsMessage
			if err := json.Unmarshal(b, &m); err != nil || m.Event == nil {
				readerDone <- fmt.Errorf("unexpected message %.200q", b)
				return
			}
			received <- m.Event.ID
		}
	}()
	defer func() {
		_ = good.CloseNow()
		<-readerDone //nolint:errcheck // the reader's error is the close CloseNow just caused
	}()

	// next publishes one event and waits until the good client has it, so that the good
	// client's queue never holds more than one message, whatever the machine's load.
	var sent int
	next := func(pad int) {
		t.Helper()
		ev := testEvent(sent, pad)
		e.publish(ev)
		sent++
		select {
		case id := <-received:
			if id != ev.ID {
				t.Fatalf("good client's event %d = %s, want %s", sent-1, id, ev.ID)
			}
		case err := <-readerDone:
			readerDone <- err
			t.Fatalf("good client stopped after %d events: %v", sent-1, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("good client did not get event %d", sent-1)
		}
	}

	// Events of 64 KiB fill the stalled client's socket buffers within some megabytes; then its
	// writes block, its queue fills and the hub drops it.
	const pad = 64 << 10
	for registryValue(t, e.g.reg, "agentmonitor_gateway_ws_dropped_clients_total") == 0 {
		if sent >= 2000 {
			t.Fatalf("stalled client not dropped after %d events of %d bytes", sent, pad)
		}
		next(pad)
	}
	dropped := sent
	// The other client goes on receiving.
	for range 3 {
		next(10)
	}
	t.Logf("stalled client dropped after %d events of %d bytes", dropped, pad)

	// The stalled client reads again: what was in its buffers, then the close with the reason.
	var data int
	readCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, _, err := stalled.Read(readCtx)
		if err == nil {
			data++
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != alertfeed.ReasonTooSlow {
			t.Fatalf("stalled client's read after %d messages = %v, want close 1008 %q", data, err, alertfeed.ReasonTooSlow)
		}
		break
	}
	if data >= sent {
		t.Errorf("stalled client read %d messages of %d sent, want fewer (it was dropped)", data, sent+1)
	}
	testenv.Eventually(t, 5*time.Second, func() string {
		if registryValue(t, e.g.reg, "agentmonitor_gateway_ws_clients") == 1 {
			return ""
		}
		return "ws_clients = 1"
	})
}

// TestAlertSocketShutdown shows that stopping the gateway closes its clients with 1001.
func TestAlertSocketShutdown(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	_, dbURL := testenv.Postgres(t)
	cfg := testConfig(prefix, dbURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := New(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	testenv.Eventually(t, 5*time.Second, func() string {
		if g.Addr() != "" {
			return ""
		}
		return "listening"
	})
	e := &env{t: t, g: g, url: "http://" + g.Addr(), rdb: rdb, prefix: prefix, cfg: cfg}

	conn := e.mustDialWS(e.adminToken())
	if m := mustReadWS(t, conn); m.Type != "snapshot" {
		t.Fatalf("first message = %+v, want a snapshot", m)
	}
	cancel()
	_, err = readWS(t, conn, 10*time.Second)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("read during shutdown = %v, want close 1001", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the stop")
	}
}

// TestAlertSocketResyncsAfterReconnect shows that when the gateway's pub/sub connection breaks
// (events published meanwhile are lost: pub/sub is at most once), clients get a fresh snapshot
// once it is back, and events flow again.
func TestAlertSocketResyncsAfterReconnect(t *testing.T) {
	t.Parallel()
	name := "gw-ws-test-" + strings.ReplaceAll(t.Name(), "/", "-") + fmt.Sprint(time.Now().UnixNano())
	e := newEnv(t, func(c *Config) { c.Redis.URL = redisURL() + "?client_name=" + name })
	token := e.adminToken()
	ctx := context.Background()

	first := alert.Active{ID: alert.ID("r", "a1", ""), RuleID: "r", RuleName: "R", Kind: "threshold",
		AgentID: "a1", Status: alert.StatusFiring, Value: 1, Since: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
	e.seedActive(first)
	conn := e.mustDialWS(token)
	if m := mustReadWS(t, conn); m.Type != "snapshot" || len(m.Alerts) != 1 {
		t.Fatalf("first message = %+v, want a snapshot of one alert", m)
	}

	// An alert becomes active while its event is lost, then the subscription breaks.
	second := first
	second.ID, second.AgentID = alert.ID("r", "a2", ""), "a2"
	e.seedActive(second)
	clients, err := e.rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(clients, "\n") {
		fields := strings.Fields(line)
		var id string
		var mine, subscriber bool
		for _, f := range fields {
			switch {
			case strings.HasPrefix(f, "id="):
				id = strings.TrimPrefix(f, "id=")
			case f == "name="+name:
				mine = true
			case f == "sub=1":
				subscriber = true
			}
		}
		if mine && subscriber {
			if err := e.rdb.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatalf("killing the gateway's pub/sub connection: %v", err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("found %d pub/sub connections named %s, want 1", killed, name)
	}

	m := mustReadWS(t, conn)
	if m.Type != "snapshot" || len(m.Alerts) != 2 {
		t.Fatalf("message after the reconnect = %+v, want a snapshot of both alerts", m)
	}
	e.publish(testEvent(1, 0))
	if m := mustReadWS(t, conn); m.Event == nil || m.Event.ID != testEvent(1, 0).ID {
		t.Fatalf("message after the resync = %+v, want event %s", m, testEvent(1, 0).ID)
	}
}

// TestAlertSocketPings shows that a client that answers no pings is disconnected, and one that
// does stays.
func TestAlertSocketPings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.WS.PingInterval = 100 * time.Millisecond })
	token := e.adminToken()

	deaf := e.mustDialWS(token) // never reads, so never answers a ping
	alive := e.mustDialWS(token)
	aliveErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := alive.Read(context.Background()); err != nil {
				aliveErr <- err
				return
			}
		}
	}()
	defer func() {
		_ = alive.CloseNow()
		<-aliveErr //nolint:errcheck // the reader's error is the close CloseNow just caused
	}()
	testenv.Eventually(t, 5*time.Second, func() string {
		if registryValue(t, e.g.reg, "agentmonitor_gateway_ws_clients") == 2 {
			return ""
		}
		return "ws_clients = 2"
	})
	testenv.Eventually(t, 5*time.Second, func() string {
		if registryValue(t, e.g.reg, "agentmonitor_gateway_ws_clients") == 1 {
			return ""
		}
		return "the deaf client disconnected"
	})
	time.Sleep(500 * time.Millisecond) // five more intervals
	select {
	case err := <-aliveErr:
		aliveErr <- err
		t.Fatalf("the answering client was disconnected: %v", err)
	default:
	}
	if got := registryValue(t, e.g.reg, "agentmonitor_gateway_ws_clients"); got != 1 {
		t.Errorf("ws_clients = %v, want the answering client still connected", got)
	}
	// The deaf client finds its connection closed after the snapshot.
	if _, err := readWS(t, deaf, 5*time.Second); err != nil {
		t.Fatalf("deaf client's first read = %v, want the snapshot", err)
	}
	if _, err := readWS(t, deaf, 5*time.Second); err == nil {
		t.Error("deaf client's second read succeeded, want the connection closed")
	}
}

func TestWSConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mutate func(*alertfeed.Config)
		want   string
	}{
		{func(c *alertfeed.Config) { c.ClientQueue = 0 }, "WS_CLIENT_QUEUE"},
		{func(c *alertfeed.Config) { c.ClientQueue = 1 << 20 }, "WS_CLIENT_QUEUE"},
		{func(c *alertfeed.Config) { c.PingInterval = time.Millisecond }, "WS_PING_INTERVAL"},
		{func(c *alertfeed.Config) { c.WriteTimeout = 0 }, "WS_WRITE_TIMEOUT"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mutate(&c.WS)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
		}
	}
	c := DefaultConfig()
	c.CORSOrigins = []string{"https://[dash"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS") {
		t.Errorf("Validate() with a malformed origin pattern = %v, want an error naming CORS_ALLOWED_ORIGINS", err)
	}
}
