package notify

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// TestGroupedNotificationSurvivesRestart: two alerts of one rule fired within group_wait reach
// a channel grouping by alertname as one POST, although the copy that collected them stopped
// before the wait ended and two other copies finished it.
func TestGroupedNotificationSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	const wait = 3 * time.Second
	ch := e.createChannel(alert.Channel{
		Name: "grouped", Type: alert.ChannelTypeWebhook, URL: rcv.srv.URL + "/hook", Enabled: true,
		GroupBy: []string{"alertname"}, GroupWait: wait,
	})
	ruleID := uuid.NewString()
	a, b := firing(ruleID, "agent-1", ch.ID), firing(ruleID, "agent-2", ch.ID)
	b.Value = 99
	e.append(a)
	e.append(b)
	first := e.start(e.config("n1"))
	e.settled() // both transitions collected, their entries acknowledged
	if took, err := first.stop(); err != nil || took > wait/2 {
		t.Fatalf("stopping the collecting copy: %v after %v", err, took)
	}
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("%d notifications before group_wait ended, want 0", n)
	}
	e.start(e.config("n2"))
	e.start(e.config("n3"))
	waitFor(t, 15*time.Second, "the grouped notification", func() bool { return len(rcv.requests()) >= 1 })
	waitFor(t, 5*time.Second, "the group flushed", func() bool {
		n, err := e.rdb.ZCard(context.Background(), groupsKey(e.prefix)).Result()
		return err == nil && n == 0
	})
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d notifications, want 1 for the group", len(reqs))
	}
	var body WebhookBody
	if err := json.Unmarshal(reqs[0].body, &body); err != nil {
		t.Fatalf("body %s: %v", reqs[0].body, err)
	}
	if body.Status != "firing" || !maps.Equal(body.GroupLabels, map[string]string{"alertname": "CPU busy"}) || body.GroupKey != `{}:{alertname="CPU busy"}` {
		t.Errorf("group body status %q groupLabels %v groupKey %q, want firing, alertname only", body.Status, body.GroupLabels, body.GroupKey)
	}
	if _, ok := body.CommonLabels["agent"]; ok || body.CommonLabels["team"] != "infra" || body.CommonLabels["alertname"] != "CPU busy" {
		t.Errorf("commonLabels = %v, want the shared labels without agent", body.CommonLabels)
	}
	var got []string
	for _, al := range body.Alerts {
		got = append(got, al.Labels["agent"]+"="+formatValue(al.Value))
	}
	slices.Sort(got)
	if want := []string{"agent-1=97.5", "agent-2=99"}; !slices.Equal(got, want) {
		t.Errorf("alerts = %v, want %v", got, want)
	}
}

func formatValue(v *float64) string {
	if v == nil {
		return "nil"
	}
	b, _ := json.Marshal(*v)
	return string(b)
}

// TestGroupedSlackNotification: a slack channel grouping by rule_id gets one message with an
// attachment per alert, the firing and the resolved one.
func TestGroupedSlackNotification(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	ch := e.createChannel(alert.Channel{
		Name: "chat", Type: alert.ChannelTypeSlack, URL: rcv.srv.URL + "/slack", Enabled: true,
		GroupBy: []string{"rule_id"}, GroupWait: time.Second,
	})
	ruleID := uuid.NewString()
	a, b := firing(ruleID, "agent-1", ch.ID), firing(ruleID, "agent-2", ch.ID)
	e.append(a)
	e.append(b)
	e.append(resolved(b, 30))
	e.start(e.config("n1"))
	waitFor(t, 10*time.Second, "the grouped message", func() bool { return len(rcv.requests()) >= 1 })
	e.settled()
	waitFor(t, 5*time.Second, "the group flushed", func() bool {
		n, err := e.rdb.ZCard(context.Background(), groupsKey(e.prefix)).Result()
		return err == nil && n == 0
	})
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d messages, want 1 for the group", len(reqs))
	}
	var body SlackBody
	if err := json.Unmarshal(reqs[0].body, &body); err != nil {
		t.Fatalf("body %s: %v", reqs[0].body, err)
	}
	if want := "[FIRING:1] [RESOLVED:1] rule_id=" + ruleID; body.Text != want {
		t.Errorf("text = %q, want %q", body.Text, want)
	}
	var titles []string
	for _, at := range body.Attachments {
		titles = append(titles, at.Title)
	}
	slices.Sort(titles)
	if want := []string{"[FIRING:CRITICAL] CPU busy on agent-1", "[RESOLVED] CPU busy on agent-2"}; !slices.Equal(titles, want) {
		t.Errorf("attachments = %q, want %q", titles, want)
	}
}

// TestRefusedGroupIsDeadLettered: a group the receiver refuses for good (400) goes to the
// dead-letter stream, one entry per transition with the reason, and is not sent again.
func TestRefusedGroupIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, func(int) int { return 400 })
	ch := e.createChannel(alert.Channel{
		Name: "grouped", Type: alert.ChannelTypeWebhook, URL: rcv.srv.URL + "/hook", Enabled: true,
		GroupBy: []string{"alertname"}, GroupWait: time.Second,
	})
	ruleID := uuid.NewString()
	e.append(firing(ruleID, "agent-1", ch.ID))
	e.append(firing(ruleID, "agent-2", ch.ID))
	e.start(e.config("n1"))
	waitFor(t, 10*time.Second, "2 dead letters", func() bool {
		n, err := e.rdb.XLen(context.Background(), PoisonKey(e.prefix)).Result()
		return err == nil && n == 2
	})
	waitFor(t, 5*time.Second, "the group gone", func() bool {
		n, err := e.rdb.ZCard(context.Background(), groupsKey(e.prefix)).Result()
		return err == nil && n == 0
	})
	entries, err := e.rdb.XRange(context.Background(), PoisonKey(e.prefix), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if reason, _ := en.Values["reason"].(string); !strings.Contains(reason, "400") {
			t.Errorf("dead letter reason = %q, want the 400", reason)
		}
	}
	if n := len(rcv.requests()); n != 1 {
		t.Errorf("%d POSTs, want 1", n)
	}
}
