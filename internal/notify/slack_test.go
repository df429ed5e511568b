package notify

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

func TestSlackChannelGetsSlackBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	ch := e.createChannel(alert.Channel{
		Name: "chat", Type: alert.ChannelTypeSlack, URL: rcv.srv.URL + "/slack", Enabled: true,
	})
	fire, res := e.fireAndResolve(ch.ID)
	ruleID := fire.RuleID
	cfg := e.config("n1")
	cfg.ExternalURL = "https://monitor.example.com"
	e.start(cfg)
	waitFor(t, 10*time.Second, "2 deliveries", func() bool { return len(rcv.requests()) >= 2 })
	e.settled()

	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d deliveries, want 2", len(reqs))
	}
	want := []SlackBody{
		{Text: "[FIRING:CRITICAL] CPU busy on agent-1: CPU busy: agent-1 at 97.5%", Attachments: []SlackAttachment{{
			Color: slackRed, Title: "[FIRING:CRITICAL] CPU busy on agent-1", Text: "CPU busy: agent-1 at 97.5%",
			Fields: []SlackField{{"value", "97.5", true}, {"agent", "agent-1", true}, {"metric", "cpu.usage_percent", true},
				{"rule_id", ruleID, true}, {"severity", "critical", true}, {"team", "infra", true}},
			Ts: fire.At.Unix()}}},
		{Text: "[RESOLVED] CPU busy on agent-1: CPU busy: agent-1 at 97.5%", Attachments: []SlackAttachment{{
			Color: slackGreen, Title: "[RESOLVED] CPU busy on agent-1", Text: "CPU busy: agent-1 at 97.5%",
			Fields: []SlackField{{"value", "41.25", true}, {"fired for", "1m30s", true}, {"agent", "agent-1", true},
				{"metric", "cpu.usage_percent", true}, {"rule_id", ruleID, true}, {"severity", "critical", true}, {"team", "infra", true}},
			Ts: res.At.Unix()}}},
	}
	for i, req := range reqs {
		var got SlackBody
		dec := json.NewDecoder(bytes.NewReader(req.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("slack body %s: %v", req.body, err)
		}
		w := want[i]
		w.Attachments[0].Fallback = w.Text
		w.Attachments[0].Footer = "Agent Monitor"
		w.Attachments[0].TitleLink = "https://monitor.example.com/api/v1/alert-rules/" + ruleID
		if !reflect.DeepEqual(got, w) {
			t.Errorf("slack body %d = %+v\nwant %+v", i, got, w)
		}
		if got := req.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", got)
		}
	}
}
