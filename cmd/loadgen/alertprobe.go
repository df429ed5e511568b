package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alertredis"
)

// alertProbe measures alert latency: one agent of its own with a threshold rule (last value
// above 50 fires, below 40 resolves, no "for"), and samples that cross it alternately. The time
// from a sample's POST to its transition is taken twice: when the alerter's PUBLISH arrives on a
// Redis SUBSCRIBE of the alerts channel, and when the event arrives on the gateway's alert
// WebSocket.
type alertProbe struct {
	gateway, token string
	hc             *http.Client
	agent          registered
	sub            *redis.PubSub
	ws             *websocket.Conn
	pub, wsEvents  chan alertEvent
	high           bool // the next sample fires (else resolves)
	cancel         context.CancelFunc
}

// alertEvent is a transition of the probe's agent and when it arrived.
type alertEvent struct {
	to string
	at time.Time
}

// alertSample is one sample's latencies; ok false when the event did not come within
// alertWait.
type alertSample struct {
	pub, ws     time.Duration
	pubOK, wsOK bool
}

// alertSummary is the alert latency of many samples.
type alertSummary struct {
	Samples   int       `json:"samples"`
	Missed    int       `json:"missed"` // samples whose transition did not arrive (both ways) within alertWait
	PubSub    latencyMS `json:"publish_ms"`
	WebSocket latencyMS `json:"websocket_ms"`
}

// alertWait is how long a sample's transition may take before it counts as missed.
const alertWait = 3 * time.Second

// newAlertProbe registers the probe's agent and rule, subscribes to the alerts channel and the
// WebSocket, and waits until the alerter fires on the rule (it loads rules periodically).
func newAlertProbe(ctx context.Context, gateway, token string, rdb *redis.Client, prefix string) (*alertProbe, error) {
	p := &alertProbe{gateway: gateway, token: token, hc: newHTTPClient(2, 10*time.Second),
		pub: make(chan alertEvent, 64), wsEvents: make(chan alertEvent, 64), high: true}
	auth := "Bearer " + token
	name := fmt.Sprintf("bench-alert-probe-%d", time.Now().UnixNano())
	if err := callJSON(ctx, p.hc, gateway+"/api/v1/agents", auth, map[string]any{"name": name}, http.StatusCreated, &p.agent); err != nil {
		return nil, fmt.Errorf("registering the probe's agent: %w", err)
	}
	rule := map[string]any{
		"name": "bench alert latency", "kind": "threshold", "metric": "benchalert.v",
		"agents": map[string]any{"ids": []string{p.agent.ID}}, "aggregation": "last", "operator": ">",
		"thresholds": map[string]any{"critical": map[string]any{"value": 50, "recovery": 40}}, "enabled": true,
	}
	var created map[string]any
	if err := callJSON(ctx, p.hc, gateway+"/api/v1/alert-rules", auth, rule, http.StatusCreated, &created); err != nil {
		return nil, fmt.Errorf("creating the probe's rule: %w", err)
	}

	bg, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.sub = rdb.Subscribe(ctx, alertredis.Channel(prefix))
	if _, err := p.sub.Receive(ctx); err != nil {
		p.close()
		return nil, fmt.Errorf("SUBSCRIBE %s: %w", alertredis.Channel(prefix), err)
	}
	go func() {
		for msg := range p.sub.Channel() {
			p.deliver(p.pub, []byte(msg.Payload))
		}
	}()
	wsURL := "ws" + strings.TrimPrefix(gateway, "http") + "/api/v1/ws/alerts"
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {auth}}}) //nolint:bodyclose // websocket.Dial closes the handshake response's body itself
	if err != nil {
		p.close()
		return nil, fmt.Errorf("dialing %s: %w", wsURL, err)
	}
	conn.SetReadLimit(4 << 20)
	p.ws = conn
	go func() {
		for {
			_, data, err := conn.Read(bg)
			if err != nil {
				return
			}
			var msg struct {
				Type  string          `json:"type"`
				Event json.RawMessage `json:"event"`
			}
			if json.Unmarshal(data, &msg) == nil && msg.Type == "event" {
				p.deliver(p.wsEvents, msg.Event)
			}
		}
	}()

	// The alerter picks the rule up within its poll interval: send firing samples until it fires.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := p.post(ctx, 90); err != nil {
			p.close()
			return nil, err
		}
		if e, ok := p.await(ctx, p.pub, time.Now().Add(time.Second)); ok && e.to == "firing" {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.close()
			return nil, errors.New("the alerter did not fire on the probe's rule within 90 s")
		}
	}
	p.high = false
	return p, nil
}

// deliver passes a transition of the probe's agent on, dropping others.
func (p *alertProbe) deliver(ch chan alertEvent, payload []byte) {
	at := time.Now()
	var ev struct {
		AgentID string `json:"agent_id"`
		To      string `json:"to"`
	}
	if json.Unmarshal(payload, &ev) != nil || ev.AgentID != p.agent.ID {
		return
	}
	select {
	case ch <- alertEvent{to: ev.To, at: at}:
	default:
	}
}

// await returns the next event of ch before deadline.
func (p *alertProbe) await(ctx context.Context, ch chan alertEvent, deadline time.Time) (alertEvent, bool) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case e := <-ch:
		return e, true
	case <-t.C:
	case <-ctx.Done():
	}
	return alertEvent{}, false
}

// post sends one sample of benchalert.v with the value v, stamped now.
func (p *alertProbe) post(ctx context.Context, v float64) error {
	body := fmt.Sprintf(`{"points":[{"measurement":"benchalert","fields":{"v":%g},"time":%q}]}`, v, time.Now().UTC().Format(time.RFC3339Nano))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.gateway+"/api/v1/agents/"+p.agent.ID+"/metrics", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.agent.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return fmt.Errorf("posting the probe's sample: %w", err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting the probe's sample: status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// run sends samples crossing the threshold alternately, one at a time, until until, and returns
// each one's latencies.
func (p *alertProbe) run(ctx context.Context, until time.Time) []alertSample {
	var out []alertSample
	drain := func(ch chan alertEvent) {
		for {
			select {
			case <-ch:
			default:
				return
			}
		}
	}
	for ctx.Err() == nil && time.Now().Before(until) {
		drain(p.pub)
		drain(p.wsEvents)
		v, fires := 10.0, p.high
		if fires {
			v = 90
		}
		t0 := time.Now()
		if err := p.post(ctx, v); err != nil {
			out = append(out, alertSample{})
			sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
			continue
		}
		p.high = !p.high
		match := func(e alertEvent) bool { return (e.to == "firing") == fires }
		var s alertSample
		deadline := t0.Add(alertWait)
		for !(s.pubOK && s.wsOK) {
			t := time.NewTimer(time.Until(deadline))
			select {
			case e := <-p.pub:
				if match(e) && !s.pubOK {
					s.pub, s.pubOK = e.at.Sub(t0), true
				}
			case e := <-p.wsEvents:
				if match(e) && !s.wsOK {
					s.ws, s.wsOK = e.at.Sub(t0), true
				}
			case <-t.C:
				deadline = time.Time{}
			case <-ctx.Done():
				deadline = time.Time{}
			}
			t.Stop()
			if deadline.IsZero() {
				break
			}
		}
		out = append(out, s)
		sleepUntil(ctx, time.Now().Add(20*time.Millisecond+time.Duration(len(out)%5)*5*time.Millisecond))
	}
	return out
}

// close ends the subscriptions.
func (p *alertProbe) close() {
	if p.cancel != nil {
		p.cancel()
	}
	if p.ws != nil {
		p.ws.Close(websocket.StatusNormalClosure, "")
	}
	if p.sub != nil {
		p.sub.Close()
	}
	p.hc.CloseIdleConnections()
}

// summarizeAlerts returns the percentiles of the samples' latencies.
func summarizeAlerts(samples []alertSample) alertSummary {
	s := alertSummary{Samples: len(samples)}
	var pub, ws []time.Duration
	for _, x := range samples {
		if x.pubOK {
			pub = append(pub, x.pub)
		}
		if x.wsOK {
			ws = append(ws, x.ws)
		}
		if !x.pubOK || !x.wsOK {
			s.Missed++
		}
	}
	s.PubSub, s.WebSocket = percentiles(pub), percentiles(ws)
	return s
}
