package alerter

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// TestRecordEncodesNonFiniteValues: encoding/json refuses ±Inf and NaN, and a state that
// cannot be stored once blocked the alerter (issue 7); the stored form carries them as strings.
func TestRecordEncodesNonFiniteValues(t *testing.T) {
	key := alert.Key{RuleID: "r", AgentID: "a", Series: "core=0"}
	since := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	for _, v := range []float64{math.Inf(1), math.Inf(-1), math.NaN(), 1.7e308, -5e-324, 0, 85.5} {
		in := record{State: alert.State{Key: key, Status: alert.StatusFiring, Severity: alert.SeverityCritical,
			Since: since, LastEval: since, Value: v}, Channels: []string{"c"}, Window: []byte{2, 0}}
		b, err := in.encode()
		if err != nil {
			t.Fatalf("encode(value %v) = %v", v, err)
		}
		out, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("decodeRecord(encode(value %v)) = %v", v, err)
		}
		same := out.State.Value == v || (math.IsNaN(v) && math.IsNaN(out.State.Value))
		out.State.Value, in.State.Value = 0, 0
		if !same || out.State != in.State || len(out.Channels) != 1 || string(out.Window) != string(in.Window) {
			t.Errorf("decodeRecord(encode(value %v)) = %+v, want %+v", v, out, in)
		}
	}
	// Records written before: the value is a plain number.
	old := `{"state":{"rule_id":"r","agent_id":"a","status":"ok","value":42.5}}`
	b := append([]byte{recordVersion, byte(len(old))}, old...)
	if rec, err := decodeRecord(b); err != nil || rec.State.Value != 42.5 || rec.State.RuleID != "r" {
		t.Errorf("decodeRecord(%s) = %+v, %v, want value 42.5", old, rec, err)
	}
}

// TestPrepareFailsPermanently: an update whose event cannot be encoded fails with a
// permanentError naming the alert, which Handle dead-letters instead of retrying.
func TestPrepareFailsPermanently(t *testing.T) {
	inf := math.Inf(1)
	u := update{key: "k", rec: &record{State: alert.NewState(alert.Key{RuleID: "rule-1", AgentID: "agent-1"})},
		events: []alert.Event{{ID: "e", AlertID: "a", RuleID: "rule-1", AgentID: "agent-1", Threshold: &inf}}}
	err := u.prepare()
	if !isPermanent(err) || !strings.Contains(err.Error(), "rule rule-1") || !strings.Contains(err.Error(), "+Inf") {
		t.Fatalf("prepare() = %v, want a permanentError naming rule-1 and +Inf", err)
	}
	if isPermanent(errors.New("dial tcp: connection refused")) || isPermanent(errConflicts) {
		t.Errorf("isPermanent holds for transient errors")
	}
	u.events[0].Threshold = nil
	if err := u.prepare(); err != nil || !u.prepared || len(u.raw) == 0 || len(u.streamValues) != 1 {
		t.Errorf("prepare() of an encodable update = %v (prepared %v)", err, u.prepared)
	}
}
