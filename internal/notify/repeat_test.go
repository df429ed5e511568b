package notify

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// repeatChannel stores a webhook channel repeating every interval. Validate's minimum (1m) is
// for operators; the test sets a shorter one in the table directly, below the store.
func (e *env) repeatChannel(name, url string, interval time.Duration) alert.Channel {
	e.t.Helper()
	ch := e.createChannel(alert.Channel{
		Name: name, Type: alert.ChannelTypeWebhook, URL: url, Enabled: true, RepeatInterval: alert.MinRepeatInterval,
	})
	if _, err := e.db.Exec(`UPDATE notification_channels SET repeat_interval_seconds = $2 WHERE id = $1`,
		ch.ID, int(interval/time.Second)); err != nil {
		e.t.Fatalf("setting repeat interval: %v", err)
	}
	ch.RepeatInterval = interval
	return ch
}

// setActive writes the alert of ev into the active-alerts hash as the alerter does.
func (e *env) setActive(ev alert.Event, value float64, ack *alert.Ack) {
	e.t.Helper()
	since := ev.At
	a := alert.Active{
		ID: ev.AlertID, RuleID: ev.RuleID, RuleName: ev.RuleName, Kind: ev.Kind, AgentID: ev.AgentID,
		Status: alert.StatusFiring, Severity: ev.Severity, Value: value, Since: since, FiringSince: &since, Ack: ack,
	}
	b, _ := json.Marshal(a)
	if err := e.rdb.HSet(context.Background(), e.activeKey(ev.AgentID), ev.AlertID, b).Err(); err != nil {
		e.t.Fatalf("HSET active: %v", err)
	}
}

func TestRepeatWhileFiringOnceAcrossCopies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	const interval = time.Second
	ch := e.repeatChannel("pager", rcv.srv.URL+"/hook", interval)
	once := e.channel("once", rcv.srv.URL+"/once", "", nil) // no repeat interval: one notification
	fire := firing(uuid.NewString(), "agent-1", ch.ID, once.ID)
	e.setActive(fire, 99, nil)
	e.append(fire)
	e.start(e.config("n1"))
	e.start(e.config("n2"))

	hook := func() []request {
		var out []request
		for _, r := range rcv.requests() {
			if r.path == "/hook" {
				out = append(out, r)
			}
		}
		return out
	}
	const want = 4 // the firing and three repeats
	waitFor(t, 20*time.Second, "the firing and 3 repeats", func() bool { return len(hook()) >= want })
	got := hook()
	seen := map[string]bool{}
	for i, r := range got[:want] {
		var body WebhookBody
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		if body.Status != "firing" || len(body.Alerts) != 1 || body.Alerts[0].Fingerprint != fire.AlertID {
			t.Errorf("notification %d = status %q alerts %+v, want the firing alert %s", i, body.Status, body.Alerts, fire.AlertID)
		}
		wantValue := 97.5 // the transition's value; repeats carry the alert's current one
		if i > 0 {
			wantValue = 99
		}
		if body.Value != wantValue {
			t.Errorf("notification %d value = %v, want %v", i, body.Value, wantValue)
		}
		id := r.header.Get(EventHeader)
		if seen[id] {
			t.Errorf("notification %d repeats event id %s: a repeat was sent twice", i, id)
		}
		seen[id] = true
		if i == 0 {
			continue
		}
		// Not before the interval (a second copy sending the same repeat would arrive at
		// once), and not much after it.
		if gap := r.at.Sub(got[i-1].at); gap < interval || gap > interval+2*time.Second {
			t.Errorf("notification %d came %v after the previous one, want %v to %v", i, gap, interval, interval+2*time.Second)
		}
	}

	// Resolving ends the repeats: the schedule is gone once the resolve is recorded.
	if err := e.rdb.HDel(context.Background(), e.activeKey(fire.AgentID), fire.AlertID).Err(); err != nil {
		t.Fatal(err)
	}
	e.append(resolved(fire, 10))
	waitFor(t, 10*time.Second, "the resolve", func() bool {
		h := hook()
		return len(h) > 0 && bodyStatus(t, h[len(h)-1].body) == "resolved"
	})
	e.settled()
	waitFor(t, 5*time.Second, "no repeat scheduled", func() bool {
		n, err := e.rdb.ZCard(context.Background(), repeatsKey(e.prefix)).Result()
		return err == nil && n == 0
	})
	if n := len(rcv.requests()) - len(hook()); n != 2 {
		t.Errorf("channel without repeat interval got %d notifications, want 2 (firing, resolved)", n)
	}
}

func TestAcknowledgedAlertIsNotRepeated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	ch := e.repeatChannel("pager", rcv.srv.URL+"/hook", time.Second)
	fire := firing(uuid.NewString(), "agent-1", ch.ID)
	e.setActive(fire, 99, &alert.Ack{By: "alice", At: time.Now()})
	e.append(fire)
	r := e.start(e.config("n1"))
	e.settled()
	// The repeat falls due and is rescheduled without a POST while the alert is acknowledged.
	waitFor(t, 10*time.Second, "the repeat rescheduled past its first due time", func() bool {
		score, err := e.rdb.ZScore(context.Background(), repeatsKey(e.prefix), repeatMember(fire.AlertID, ch.ID)).Result()
		return err == nil && time.UnixMilli(int64(score)).After(rcv.requests()[0].at.Add(1500*time.Millisecond))
	})
	if n := len(rcv.requests()); n != 1 || r.outcome(outcomeSent) != 1 {
		t.Errorf("acknowledged alert got %d notifications, want 1 (the firing)", n)
	}
}

func bodyStatus(t *testing.T, b []byte) string {
	t.Helper()
	var body WebhookBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	return body.Status
}
