package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/egress"
	"github.com/agentmonitor/agentmonitor/internal/silence"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestWebhookBodySignatureAndHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	signed := e.channel("ops-signed", rcv.srv.URL+"/signed", "s3cret", map[string]string{"X-Team-Token": "abc123"})
	plain := e.channel("ops-plain", rcv.srv.URL+"/plain", "", nil)
	ruleID := uuid.NewString()
	fire := firing(ruleID, "agent-1", signed.ID, plain.ID)
	fire.Series = "core=0"
	fire.AlertID = alert.ID(ruleID, "agent-1", "core=0")
	res := resolved(fire, 90)
	// Appended before the notifier group exists: they are not skipped.
	e.append(fire)
	e.append(res)
	cfg := e.config("n1")
	cfg.ExternalURL = "https://monitor.example.com/"
	e.start(cfg)
	waitFor(t, 10*time.Second, "4 deliveries", func() bool { return len(rcv.requests()) >= 4 })
	e.settled()

	wantLabels := map[string]string{
		"alertname": "CPU busy", "agent": "agent-1", "rule_id": ruleID, "severity": "critical",
		"metric": "cpu.usage_percent", "series": "core=0", "team": "infra",
	}
	wantGroup := map[string]string{"alertname": "CPU busy", "agent": "agent-1", "rule_id": ruleID, "series": "core=0"}
	seen := map[string]int{}
	for _, req := range rcv.requests() {
		var body map[string]any
		if err := json.Unmarshal(req.body, &body); err != nil {
			t.Fatalf("body %s: %v", req.body, err)
		}
		status, _ := body["status"].(string)
		seen[req.path+" "+status]++
		ev := fire
		if status == "resolved" {
			ev = res
		}
		if got := req.header.Get(EventHeader); got != ev.ID {
			t.Errorf("%s %s: %s = %q, want %q", req.path, status, EventHeader, got, ev.ID)
		}
		if got := req.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("%s: Content-Type = %q, want application/json", req.path, got)
		}
		receiver := "ops-plain"
		if req.path == "/signed" {
			receiver = "ops-signed"
			mac := hmac.New(sha256.New, []byte("s3cret"))
			mac.Write(req.body)
			want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
			if got := req.header.Get(SignatureHeader); got != want {
				t.Errorf("%s: %s = %q, want %q (HMAC-SHA256 of the exact body)", req.path, SignatureHeader, got, want)
			}
			if got := req.header.Get("X-Team-Token"); got != "abc123" {
				t.Errorf("%s: extra header X-Team-Token = %q, want abc123", req.path, got)
			}
		} else if got := req.header.Get(SignatureHeader); got != "" {
			t.Errorf("%s: unsigned channel sent %s = %q", req.path, SignatureHeader, got)
		}

		check := func(key string, want any) {
			t.Helper()
			if got := body[key]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: body[%q] = %#v, want %#v", req.path, status, key, got, want)
			}
		}
		check("version", "4")
		check("receiver", receiver)
		check("truncatedAlerts", 0.0)
		check("externalURL", "https://monitor.example.com")
		check("groupLabels", toAny(wantGroup))
		check("groupKey", `{}:{agent="agent-1", alertname="CPU busy", rule_id="`+ruleID+`", series="core=0"}`)
		check("commonLabels", toAny(wantLabels))
		check("commonAnnotations", map[string]any{"summary": "CPU busy: agent-1 at 97.5%"})
		check("value", ev.Value)
		alerts, _ := body["alerts"].([]any)
		if len(alerts) != 1 {
			t.Fatalf("%s %s: alerts = %v, want one", req.path, status, body["alerts"])
		}
		alert := alerts[0].(map[string]any)
		wantAlert := map[string]any{
			"status":       status,
			"labels":       toAny(wantLabels),
			"annotations":  map[string]any{"summary": "CPU busy: agent-1 at 97.5%"},
			"startsAt":     "2026-11-25T18:00:00Z",
			"endsAt":       "0001-01-01T00:00:00Z",
			"generatorURL": "https://monitor.example.com/api/v1/alert-rules/" + ruleID,
			"fingerprint":  fire.AlertID,
		}
		switch status {
		case "firing":
			for _, k := range []string{"recovery_value", "duration"} {
				if v, ok := body[k]; ok {
					t.Errorf("%s firing: body has %q = %v, want it only on resolved", req.path, k, v)
				}
			}
		case "resolved":
			wantAlert["endsAt"] = "2026-11-25T18:01:30Z"
			check("recovery_value", 41.25)
			check("duration", 90.0)
		default:
			t.Errorf("%s: status = %q, want firing or resolved", req.path, status)
		}
		if !reflect.DeepEqual(alert, wantAlert) {
			t.Errorf("%s %s: alert = %#v\nwant %#v", req.path, status, alert, wantAlert)
		}
	}
	want := map[string]int{"/signed firing": 1, "/signed resolved": 1, "/plain firing": 1, "/plain resolved": 1}
	if !maps.Equal(seen, want) {
		t.Errorf("deliveries = %v, want %v", seen, want)
	}
	// Each channel got the firing before the resolve.
	order := map[string][]string{}
	for _, req := range rcv.requests() {
		var b WebhookBody
		if err := json.Unmarshal(req.body, &b); err != nil {
			t.Fatalf("decoding webhook body: %v", err)
		}
		order[req.path] = append(order[req.path], b.Status)
	}
	for path, got := range order {
		if !reflect.DeepEqual(got, []string{"firing", "resolved"}) {
			t.Errorf("%s got %v, want [firing resolved]", path, got)
		}
	}
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestSeverityChangeWhileFiringKeepsStartsAt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv, ch := e.webhook()
	e.start(e.config("n1"))

	ev := firing(uuid.NewString(), "agent-1", ch.ID)
	ev.From, ev.Severity = alert.StatusFiring, "critical"
	ev.At = testAt.Add(10 * time.Minute)
	firingSince := testAt
	active, _ := json.Marshal(alert.Active{ID: ev.AlertID, Status: alert.StatusFiring, FiringSince: &firingSince})
	if err := e.rdb.HSet(context.Background(), e.activeKey(ev.AgentID), ev.AlertID, active).Err(); err != nil {
		t.Fatal(err)
	}
	e.append(ev)
	waitFor(t, 10*time.Second, "the delivery", func() bool { return rcv.okCount() == 1 })
	var b WebhookBody
	if err := json.Unmarshal(rcv.requests()[0].body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Status != "firing" || !b.Alerts[0].StartsAt.Equal(testAt) || !b.Alerts[0].EndsAt.IsZero() {
		t.Errorf("severity change: status %q startsAt %s endsAt %s, want firing, %s, zero", b.Status, b.Alerts[0].StartsAt, b.Alerts[0].EndsAt, testAt)
	}
}

// Two copies, every entry appended twice (as a redelivery or a second alerter copy would): each
// transition reaches each channel exactly once.
func TestExactlyOncePerChannelAcrossCopiesAndRedeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	rcv.setDelay(30 * time.Millisecond) // so that both copies work on the same event at once
	a := e.channel("a", rcv.srv.URL+"/a", "", nil)
	b := e.channel("b", rcv.srv.URL+"/b", "", nil)
	c1 := e.start(e.config("copy-1"))
	c2 := e.start(e.config("copy-2"))

	const events = 6
	ruleID := uuid.NewString()
	want := map[string]int{}
	for i := range events {
		ev := firing(ruleID, "agent-"+string(rune('a'+i)), a.ID, b.ID)
		e.append(ev)
		e.append(ev)
		want["/a "+ev.ID] = 1
		want["/b "+ev.ID] = 1
	}
	e.settled()
	got := map[string]int{}
	for _, req := range rcv.requests() {
		got[req.path+" "+req.header.Get(EventHeader)]++
	}
	if !maps.Equal(got, want) {
		t.Errorf("deliveries per channel and event = %v, want each once: %v", got, want)
	}
	if sent := c1.outcome(outcomeSent) + c2.outcome(outcomeSent); sent != 2*events {
		t.Errorf("sent = %v, want %d", sent, 2*events)
	}
	if dup := c1.outcome(outcomeDuplicate) + c2.outcome(outcomeDuplicate); dup != 2*events {
		t.Errorf("skipped_duplicate = %v, want %d", dup, 2*events)
	}
	if c1.outcome(outcomeSent) == 0 || c2.outcome(outcomeSent) == 0 {
		t.Logf("one copy did all the work (sent %v and %v)", c1.outcome(outcomeSent), c2.outcome(outcomeSent))
	}
}

func TestRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	ch := e.channel("flaky", rcv.srv.URL, "", nil)
	n := e.start(e.config("n1")) // MaxRetries 2: three tries
	e.append(firing(uuid.NewString(), "agent-1", ch.ID))
	e.settled()

	var codes []int
	for _, r := range rcv.requests() {
		codes = append(codes, r.status)
	}
	if want := []int{503, 503, 200}; !reflect.DeepEqual(codes, want) {
		t.Errorf("receiver answered %v, want %v", codes, want)
	}
	if got := n.outcome(outcomeSent); got != 1 {
		t.Errorf("sent = %v, want 1", got)
	}
	if got := n.outcome(outcomeFailed); got != 2 {
		t.Errorf("failed = %v, want 2", got)
	}
	if got := e.rdb.XLen(context.Background(), PoisonKey(e.prefix)).Val(); got != 0 {
		t.Errorf("poison queue has %d entries, want 0", got)
	}
}

// poisoned returns the poison queue's messages.
func (e *env) poisoned() []poisonEntry {
	e.t.Helper()
	xs, err := e.rdb.XRange(context.Background(), PoisonKey(e.prefix), "-", "+").Result()
	if err != nil {
		e.t.Fatalf("XRANGE poison: %v", err)
	}
	var out []poisonEntry
	for _, x := range xs {
		uuid, _ := x.Values[stream.FieldUUID].(string)
		payload, _ := x.Values[stream.FieldPayload].(string)
		reason, _ := x.Values[stream.FieldReason].(string)
		if group := x.Values[stream.FieldGroup]; group != Group {
			e.t.Errorf("dead letter %s: group %v, want %s", x.ID, group, Group)
		}
		out = append(out, poisonEntry{uuid: uuid, payload: payload, reason: reason})
	}
	return out
}

type poisonEntry struct{ uuid, payload, reason string }

func TestPoisonQueueAfterRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	down := newReceiver(t, func(int) int { return http.StatusBadGateway })
	rejecting := newReceiver(t, func(int) int { return http.StatusBadRequest })
	ok := newReceiver(t, nil)
	chDown := e.channel("down", down.srv.URL+"/hooks/T0KEN-IN-PATH", "", nil)
	chRejecting := e.channel("rejecting", rejecting.srv.URL, "", nil)
	chOK := e.channel("ok", ok.srv.URL, "", nil)
	n := e.start(e.config("n1"))

	evDown := firing(uuid.NewString(), "agent-1", chDown.ID, chOK.ID)
	evRejected := firing(uuid.NewString(), "agent-2", chRejecting.ID)
	e.append(evDown)
	e.append(evRejected)
	e.settled()

	if got := len(down.requests()); got != 3 {
		t.Errorf("failing receiver got %d requests, want 3 (1 + MaxRetries 2)", got)
	}
	if got := len(rejecting.requests()); got != 1 {
		t.Errorf("receiver answering 400 got %d requests, want 1 (a 4xx is not retried)", got)
	}
	if got := ok.okCount(); got != 1 {
		t.Errorf("healthy channel of the failing event got %d deliveries, want 1 (not resent by the retries)", got)
	}
	poison := e.poisoned()
	if len(poison) != 2 {
		t.Fatalf("poison queue = %+v, want 2 entries", poison)
	}
	for i, want := range []struct {
		ev     alert.Event
		reason []string
	}{
		{evDown, []string{chDown.ID, "(down)", "502 Bad Gateway", "receiver overloaded"}},
		{evRejected, []string{chRejecting.ID, "(rejecting)", "400 Bad Request"}},
	} {
		p := poison[i]
		if p.uuid != want.ev.ID {
			t.Errorf("poison[%d] uuid = %q, want the event id %q", i, p.uuid, want.ev.ID)
		}
		if got, err := alert.DecodeEvent([]byte(p.payload)); err != nil || got.ID != want.ev.ID {
			t.Errorf("poison[%d] payload decodes to %v, %v; want the event", i, got.ID, err)
		}
		for _, s := range want.reason {
			if !strings.Contains(p.reason, s) {
				t.Errorf("poison[%d] reason = %q, want it to contain %q", i, p.reason, s)
			}
		}
		if strings.Contains(p.reason, "T0KEN-IN-PATH") || strings.Contains(p.reason, "127.0.0.1") {
			t.Errorf("poison[%d] reason %q leaks the channel URL", i, p.reason)
		}
	}
	if got := testutilCounter(t, n, "agentmonitor_notifier_poisoned_total"); got != 2 {
		t.Errorf("poisoned_total = %v, want 2", got)
	}
}

func testutilCounter(t *testing.T, r *running, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// An entry that does not decode goes to the poison queue, and the subscription goes on.
func TestUndecodableEntriesArePoisonedNotStuck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv, ch := e.webhook()
	e.start(e.config("n1"))

	e.xadd(map[string]any{redisstream.UUIDHeaderKey: "bad-json", "payload": "{not json"})
	e.xadd(map[string]any{"payload": "no watermill uuid"})
	e.xadd(map[string]any{redisstream.UUIDHeaderKey: "bad-metadata", "payload": "{}", "metadata": "\xc1garbage"})
	good := firing(uuid.NewString(), "agent-1", ch.ID)
	e.append(good)
	e.settled()

	if got := rcv.requests(); len(got) != 1 || got[0].header.Get(EventHeader) != good.ID {
		t.Errorf("receiver got %d requests, want the good event once", len(got))
	}
	poison := e.poisoned()
	if len(poison) != 3 {
		t.Fatalf("poison queue = %+v, want 3 entries", poison)
	}
	// The consumer dead-letters what Watermill cannot decode before the batch reaches the
	// notifier, which gives up on what does not decode as an event: order by kind, not by id.
	for _, want := range []string{"decoding alert event", "_watermill_message_uuid key is missing", "unmarshal metadata fail"} {
		found := 0
		for _, p := range poison {
			if strings.Contains(p.reason, want) {
				found++
			}
		}
		if found != 1 {
			t.Errorf("poison queue %+v: %d reasons contain %q, want 1", poison, found, want)
		}
	}
}

// Silenced transitions, those that do not notify, and channels missing or disabled are not
// sent; the entries are acknowledged.
func TestNotSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv, ch := e.webhook()
	disabled := e.channel("off", rcv.srv.URL+"/off", "", nil)
	disabled.Enabled = false
	if _, err := e.channels.Update(context.Background(), disabled, "test"); err != nil {
		t.Fatal(err)
	}
	from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if _, err := e.silences.Create(context.Background(), silence.Silence{
		Matchers: silence.Matchers{Labels: map[string]string{"team": "db"}},
		StartsAt: &from, EndsAt: &to, Comment: "maintenance",
	}, "test"); err != nil {
		t.Fatal(err)
	}
	ended := time.Now().Add(-time.Minute)
	started := ended.Add(-time.Hour)
	if _, err := e.silences.Create(context.Background(), silence.Silence{
		Matchers: silence.Matchers{Labels: map[string]string{"team": "infra"}},
		StartsAt: &started, EndsAt: &ended, Comment: "over",
	}, "test"); err != nil {
		t.Fatal(err)
	}
	n := e.start(e.config("n1"))

	silenced := firing(uuid.NewString(), "agent-1", ch.ID)
	silenced.Labels = map[string]string{"team": "db"}
	pending := firing(uuid.NewString(), "agent-2", ch.ID)
	pending.To, pending.Notify = alert.StatusPending, false
	noChannel := firing(uuid.NewString(), "agent-3", disabled.ID, uuid.NewString())
	sent := firing(uuid.NewString(), "agent-4", ch.ID) // team=infra: its silence is over
	for _, ev := range []alert.Event{silenced, pending, noChannel, sent} {
		e.append(ev)
	}
	e.settled()

	got := rcv.requests()
	if len(got) != 1 || got[0].header.Get(EventHeader) != sent.ID {
		var ids []string
		for _, r := range got {
			ids = append(ids, r.path+" "+r.header.Get(EventHeader))
		}
		t.Errorf("receiver got %v, want only %s", ids, sent.ID)
	}
	for o, want := range map[string]float64{outcomeSilenced: 1, outcomeNoChannel: 2, outcomeSent: 1} {
		if got := n.outcome(o); got != want {
			t.Errorf("deliveries{outcome=%q} = %v, want %v", o, got, want)
		}
	}
}

// A channel created after the cache was filled is found without waiting for the TTL.
func TestNewChannelFoundBeforeCacheExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	first := e.channel("first", rcv.srv.URL+"/first", "", nil)
	cfg := e.config("n1")
	cfg.CacheTTL = time.Hour
	e.start(cfg)
	e.append(firing(uuid.NewString(), "agent-1", first.ID))
	waitFor(t, 10*time.Second, "the first delivery", func() bool { return rcv.okCount() == 1 })
	time.Sleep(1100 * time.Millisecond) // past the one-second floor of a forced reload

	second := e.channel("second", rcv.srv.URL+"/second", "", nil)
	e.append(firing(uuid.NewString(), "agent-2", second.ID))
	waitFor(t, 10*time.Second, "the delivery to the new channel", func() bool { return rcv.okCount() == 2 })
	if got := rcv.requests()[1].path; got != "/second" {
		t.Errorf("second delivery went to %q, want /second", got)
	}
}

// A transition older than one already delivered for the same alert is not sent: the receiver
// keeps the newer state.
func TestOlderTransitionAfterNewerIsSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv, ch := e.webhook()
	n := e.start(e.config("n1"))
	fire := firing(uuid.NewString(), "agent-1", ch.ID)
	e.append(resolved(fire, 60))
	e.append(fire)
	e.settled()
	got := rcv.requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	var b WebhookBody
	if err := json.Unmarshal(got[0].body, &b); err != nil {
		t.Fatalf("decoding webhook body: %v", err)
	}
	if b.Status != "resolved" {
		t.Errorf("delivered %q, want only the resolve", b.Status)
	}
	if got := n.outcome(outcomeStale); got != 1 {
		t.Errorf("skipped_stale = %v, want 1", got)
	}
}

// Stopped in the middle of a retry cycle, the copy stops at once without poisoning the entry;
// restarted under the same name, it resumes that entry first (without waiting STREAM_CLAIM_MIN_IDLE) and then
// those appended while it was down.
func TestRestartResumesOwnPendingEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	ch := e.channel("ops", rcv.srv.URL, "", nil)
	cfg := e.config("n1")
	cfg.RetryInitial, cfg.RetryMax = 20*time.Second, 20*time.Second // the retry waits until shutdown
	first := e.start(cfg)
	ev1 := firing(uuid.NewString(), "agent-1", ch.ID)
	e.append(ev1)
	waitFor(t, 10*time.Second, "the first, failing, attempt", func() bool { return len(rcv.requests()) == 1 })

	took, err := first.stop()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("Run took %s to return; a retry wait should end at shutdown", took)
	}
	if got := e.pending(); got != 1 {
		t.Errorf("pending after shutdown = %d, want 1 (the interrupted entry)", got)
	}
	if got := e.rdb.XLen(context.Background(), PoisonKey(e.prefix)).Val(); got != 0 {
		t.Errorf("poison queue has %d entries after shutdown, want 0", got)
	}
	ev2 := firing(uuid.NewString(), "agent-2", ch.ID)
	e.append(ev2)

	e.start(cfg)
	e.settled()
	var delivered []string
	for _, r := range rcv.requests() {
		if r.status == http.StatusOK {
			delivered = append(delivered, r.header.Get(EventHeader))
		}
	}
	if want := []string{ev1.ID, ev2.ID}; !reflect.DeepEqual(delivered, want) {
		t.Errorf("delivered %v, want %v (the resumed entry first, each once)", delivered, want)
	}
}

// Shutdown during a POST lets it finish, writes its marker and acknowledges the entry, so a
// restart does not send it again.
func TestShutdownFinishesPostInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	rcv.setDelay(500 * time.Millisecond)
	rcv.entered = make(chan struct{}, 1)
	ch := e.channel("slow", rcv.srv.URL, "", nil)
	cfg := e.config("n1")
	first := e.start(cfg)
	ev := firing(uuid.NewString(), "agent-1", ch.ID)
	e.append(ev)
	select {
	case <-rcv.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no request arrived")
	}
	if _, err := first.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := rcv.okCount(); got != 1 {
		t.Fatalf("receiver completed %d requests when Run returned, want 1", got)
	}
	if got := e.rdb.Exists(context.Background(), MarkerKey(e.prefix, ev.ID, ch.ID)).Val(); got != 1 {
		t.Errorf("marker of the delivery exists = %d, want 1", got)
	}
	if got := e.pending(); got != 0 {
		t.Errorf("pending after shutdown = %d, want 0 (acknowledged before closing)", got)
	}

	rcv.setDelay(0)
	e.start(cfg)
	ev2 := firing(uuid.NewString(), "agent-2", ch.ID)
	e.append(ev2)
	e.settled()
	if got := rcv.okCount(); got != 2 {
		t.Errorf("receiver got %d deliveries, want 2 (the first not resent)", got)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := DefaultConfig()
	valid.Consumer = "host-9100"
	if err := valid.Validate(); err != nil {
		t.Fatalf("DefaultConfig with a consumer: Validate() = %v, want nil", err)
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no consumer", func(c *Config) { c.Consumer = "" }, "consumer name"},
		{"zero timeout", func(c *Config) { c.WebhookTimeout = 0 }, "NOTIFIER_WEBHOOK_TIMEOUT"},
		{"negative retries", func(c *Config) { c.MaxRetries = -1 }, "NOTIFIER_MAX_RETRIES"},
		{"zero initial", func(c *Config) { c.RetryInitial = 0 }, "NOTIFIER_RETRY_INITIAL"},
		{"max below initial", func(c *Config) { c.RetryMax = time.Millisecond }, "NOTIFIER_RETRY_MAX"},
		{"zero repeat check", func(c *Config) { c.RepeatCheck = 0 }, "NOTIFIER_REPEAT_CHECK"},
		{"allow-list entry", func(c *Config) { c.AllowedNetworks = []string{"10.0.0.0/33"} }, "WEBHOOK_ALLOWED_NETWORKS"},
		{"relative external URL", func(c *Config) { c.ExternalURL = "/monitor" }, "EXTERNAL_URL"},
		{"external URL scheme", func(c *Config) { c.ExternalURL = "ftp://example.com" }, "EXTERNAL_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.modify(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	cfg := DefaultConfig()
	cfg.Consumer = "c"
	if _, err := New(nil, cfg, consumerConfig(), fakeChannels{}, fakeSilences{}, nil, nil); err == nil {
		t.Error("New(nil redis) = nil error")
	}
	if _, err := New(rdb, cfg, consumerConfig(), nil, fakeSilences{}, nil, nil); err == nil {
		t.Error("New(nil channels) = nil error")
	}
	cfg.Consumer = ""
	if _, err := New(rdb, cfg, consumerConfig(), fakeChannels{}, fakeSilences{}, nil, nil); err == nil {
		t.Error("New(no consumer) = nil error")
	}
}

func TestPermanentStatus(t *testing.T) {
	for code, want := range map[int]bool{
		400: true, 401: true, 404: true, 410: true, 408: false, 425: false, 429: false,
		500: false, 502: false, 503: false, 302: false,
	} {
		if got := permanentStatus(code); got != want {
			t.Errorf("permanentStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

// Without the operator's allow-list, a channel on loopback gets nothing: the address dialled is
// refused, at once (no retries), and the entry is dead-lettered naming the address.
func TestLoopbackRefusedWithoutAllowList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	loop := e.channel("loopback", rcv.srv.URL+"/hooks/T0KEN", "", nil)
	byName := e.channel("localhost", strings.Replace(rcv.srv.URL, "127.0.0.1", "localhost", 1), "", nil)
	cfg := e.config("n1")
	cfg.AllowedNetworks = nil
	n := e.start(cfg)
	ev := firing(uuid.NewString(), "agent-1", loop.ID, byName.ID)
	e.append(ev)
	e.settled()

	if got := len(rcv.requests()); got != 0 {
		t.Errorf("loopback receiver got %d requests, want 0", got)
	}
	poison := e.poisoned()
	if len(poison) != 1 || poison[0].uuid != ev.ID {
		t.Fatalf("poison queue = %+v, want the event", poison)
	}
	for _, want := range []string{loop.ID, byName.ID, "127.0.0.1 is a loopback address", egress.AllowSetting} {
		if !strings.Contains(poison[0].reason, want) {
			t.Errorf("reason = %q, want it to contain %q", poison[0].reason, want)
		}
	}
	if strings.Contains(poison[0].reason, "T0KEN") {
		t.Errorf("reason %q leaks the channel URL", poison[0].reason)
	}
	if got := n.outcome(outcomeFailed); got != 2 {
		t.Errorf("failed = %v, want 2 (one attempt per channel: a refused address is not retried)", got)
	}
}

// A receiver that redirects is not followed: the redirect target (here on loopback, which only
// the name the channel uses is allowed to reach) gets nothing, and the entry is dead-lettered.
func TestRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	target := newReceiver(t, nil)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL+"/internal", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	ch := e.channel("redirecting", strings.Replace(redirector.URL, "127.0.0.1", "localhost", 1), "", nil)
	cfg := e.config("n1")
	cfg.AllowedNetworks = []string{"localhost"}
	e.start(cfg)
	ev := firing(uuid.NewString(), "agent-1", ch.ID)
	e.append(ev)
	e.settled()

	if got := len(target.requests()); got != 0 {
		t.Errorf("redirect target got %d requests, want 0", got)
	}
	poison := e.poisoned()
	if len(poison) != 1 || !strings.Contains(poison[0].reason, "307 Temporary Redirect: redirects are not followed") {
		t.Errorf("poison queue = %+v, want the event with a reason naming the redirect", poison)
	}
}

// A stage that panics does not end the process: that entry is dead-lettered with the panic as
// its reason, the others are delivered.
func TestPanickingStageIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv, ch := e.webhook()
	panicky := StageFunc(func(ctx context.Context, _ *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
		if nt.Event.AgentID == "agent-panic" {
			panic("stage bug")
		}
		return ctx, nt, nil
	})
	e.start(e.config("n1"), func(n *Notifier) { n.pipeline = MultiStage{panicky, n.pipeline} })
	bad := firing(uuid.NewString(), "agent-panic", ch.ID)
	good := firing(uuid.NewString(), "agent-1", ch.ID)
	e.append(bad)
	e.append(good)
	e.settled()

	if got := rcv.requests(); len(got) != 1 || got[0].header.Get(EventHeader) != good.ID {
		t.Errorf("receiver got %d requests, want the good event once", len(got))
	}
	poison := e.poisoned()
	if len(poison) != 1 || poison[0].uuid != bad.ID || !strings.Contains(poison[0].reason, "panic in the notification pipeline: stage bug") {
		t.Errorf("poison queue = %+v, want the panicking event with the panic as reason", poison)
	}
}

// A panic in one channel's goroutine is recovered there, as a permanent error of that channel.
func TestFanoutRecoversPanics(t *testing.T) {
	ok := StageFunc(func(ctx context.Context, _ *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
		return ctx, nt, nil
	})
	bad := StageFunc(func(context.Context, *slog.Logger, *Notification) (context.Context, *Notification, error) {
		panic("boom")
	})
	nt := &Notification{}
	_, _, err := FanoutStage{Stages: []Stage{ok, bad}, Notifications: []*Notification{nt, nt}}.Exec(context.Background(), slog.New(slog.DiscardHandler), nt)
	if err == nil || !isPermanent(err) || !strings.Contains(err.Error(), "boom") {
		t.Errorf("FanoutStage with a panicking stage = %v, want a permanent error naming the panic", err)
	}
}

// silencesDown is the real silence store behind a switch that makes it fail, as PostgreSQL
// being unreachable would.
type silencesDown struct {
	SilenceSource
	down *atomic.Bool
}

func (s silencesDown) List(ctx context.Context, includeExpired bool) ([]silence.Silence, error) {
	if s.down.Load() {
		return nil, errors.New("connection refused")
	}
	return s.SilenceSource.List(ctx, includeExpired)
}

// Our own store failing is not the entry's fault: nothing is dead-lettered, the batch waits
// and is delivered once the store answers again.
func TestStoreOutageIsRetriedNotDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv, ch := e.webhook()
	var down atomic.Bool
	down.Store(true)
	reg := prometheus.NewRegistry()
	n, err := New(e.rdb, e.config("n1"), consumerConfig(), e.channels, silencesDown{e.silences, &down}, e.log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("notifier Run = %v, want nil", err)
		}
	})

	ev := firing(uuid.NewString(), "agent-1", ch.ID)
	e.append(ev)
	// Several attempts at the batch fail while the store is down (well past MaxRetries 2).
	waitFor(t, 10*time.Second, "retries of the batch", func() bool {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "agentmonitor_stream_handler_retries_total" {
				return mf.GetMetric()[0].GetCounter().GetValue() >= 4
			}
		}
		return false
	})
	if got := e.pending(); got != 1 {
		t.Errorf("pending while the store is down = %d, want 1", got)
	}
	if got := e.rdb.XLen(context.Background(), PoisonKey(e.prefix)).Val(); got != 0 {
		t.Errorf("dead letters while the store is down = %d, want 0", got)
	}
	down.Store(false)
	e.settled()
	if got := rcv.requests(); len(got) != 1 || got[0].header.Get(EventHeader) != ev.ID {
		t.Errorf("receiver got %d requests after the store came back, want the event once", len(got))
	}
	if got := e.rdb.XLen(context.Background(), PoisonKey(e.prefix)).Val(); got != 0 {
		t.Errorf("dead letters = %d, want 0", got)
	}
}

// TestPipelineAlertWithoutAgent: an alert of a pipeline rule (no agent) is delivered with its
// subject labels and without an empty agent label.
func TestPipelineAlertWithoutAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, nil)
	ch := e.channel("ops", rcv.srv.URL+"/hook", "", nil)
	ruleID := uuid.NewString()
	ev := firing(ruleID, "", ch.ID)
	ev.RuleName, ev.Kind, ev.Series, ev.Metric = "Pipeline lag", string(alert.KindPipeline), "pg-sync", "pipeline.group_lag"
	ev.Labels = map[string]string{"check": "group_lag", "group": "pg-sync"}
	ev.AlertID = alert.ID(ruleID, "", "pg-sync")
	e.append(ev)
	e.start(e.config("n1"))
	waitFor(t, 10*time.Second, "1 delivery", func() bool { return len(rcv.requests()) >= 1 })
	var body struct {
		GroupLabels  map[string]string `json:"groupLabels"`
		CommonLabels map[string]string `json:"commonLabels"`
	}
	if err := json.Unmarshal(rcv.requests()[0].body, &body); err != nil {
		t.Fatal(err)
	}
	if _, ok := body.CommonLabels["agent"]; ok || body.CommonLabels["group"] != "pg-sync" || body.CommonLabels["series"] != "pg-sync" {
		t.Errorf("labels = %v, want group and series pg-sync and no agent", body.CommonLabels)
	}
	if _, ok := body.GroupLabels["agent"]; ok {
		t.Errorf("group labels = %v, want no agent", body.GroupLabels)
	}
}

// The notifier reads the alerts stream of every shard: transitions of agents in different
// shards, and of a pipeline alert (no agent: shard 0), all reach the channel, each once.
func TestDeliversFromEveryShard(t *testing.T) {
	t.Parallel()
	testDeliversFromEveryShard(t, newEnv(t))
}

// The same on Redis Cluster, where the shards' streams are on different nodes.
func TestDeliversFromEveryShardOnCluster(t *testing.T) {
	t.Parallel()
	testDeliversFromEveryShard(t, newClusterEnv(t))
}

func testDeliversFromEveryShard(t *testing.T, e *env) {
	rcv, ch := e.webhook()
	e.start(e.config("n1"))

	ruleID := uuid.NewString()
	want := map[string]int{}
	shardsSeen := map[int]bool{}
	for i := 0; len(shardsSeen) < testShards || i < 4; i++ {
		agent := fmt.Sprintf("agent-%d", i)
		shardsSeen[alertredis.Shard(agent, testShards)] = true
		ev := firing(ruleID, agent, ch.ID)
		e.append(ev)
		want[ev.ID] = 1
	}
	pipeline := firing(ruleID, "", ch.ID)
	pipeline.Kind, pipeline.Summary = "pipeline", "watchdog"
	e.append(pipeline)
	want[pipeline.ID] = 1

	e.settled()
	waitFor(t, 10*time.Second, "every delivery", func() bool { return rcv.okCount() >= len(want) })
	got := map[string]int{}
	for _, req := range rcv.requests() {
		got[req.header.Get(EventHeader)]++
	}
	if !maps.Equal(got, want) {
		t.Errorf("deliveries per event = %v, want each once: %v", got, want)
	}
}
