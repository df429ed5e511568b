package alerter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
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

// roundTrips counts the round trips a client makes: one per command or pipeline sent.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

// TestCommitShardWatch: on a single Redis the WATCH and the read of the states share a round
// trip, so a commit takes two; a state changed by another client between the read and the EXEC
// still makes the commit plan again; and a commit that wrote nothing leaves nothing watched on the
// connection it returns to the pool.
func TestCommitShardWatch(t *testing.T) {
	t.Parallel()
	other, prefix := testenv.Redis(t)
	opts := *other.Options()
	opts.PoolSize = 1 // every command of s goes through the one connection a leaked WATCH would stay on
	one := redis.NewClient(&opts)
	t.Cleanup(func() { one.Close() })
	if err := one.Ping(context.Background()).Err(); err != nil { // the connection's setup is not counted
		t.Fatal(err)
	}
	trips := &roundTrips{}
	one.AddHook(trips)
	s := &states{rdb: one, prefix: prefix, shards: 1, logger: slog.New(slog.DiscardHandler), metrics: newMetrics(prometheus.NewRegistry())}
	ctx := context.Background()
	key := alertredis.StateKey(prefix, 0, "alert-1")
	write := func(recs []*record) []update {
		return []update{{key: key, rec: &record{State: alert.NewState(alert.Key{RuleID: "r", AgentID: "a"})}, alertID: "alert-1"}}
	}

	if _, err := s.commitShard(ctx, 0, []string{key}, write); err != nil {
		t.Fatal(err)
	}
	if got := trips.n.Load(); got != 2 {
		t.Errorf("a commit took %d round trips, want 2 (WATCH with MGET, then MULTI … EXEC)", got)
	}

	plans := 0
	if _, err := s.commitShard(ctx, 0, []string{key}, func(recs []*record) []update {
		if plans++; plans == 1 {
			if err := other.Set(ctx, key, "changed by another copy", 0).Err(); err != nil {
				t.Error(err)
			}
		}
		return write(recs)
	}); err != nil {
		t.Fatal(err)
	}
	if plans != 2 {
		t.Errorf("a state changed between read and EXEC was planned %d times, want 2 (the EXEC refused once)", plans)
	}

	// (CLIENT LIST flags a client whose watched key changed with "d"; a pooled connection may be
	// replaced before a later transaction would show it, so the flags are read instead.)
	id, err := one.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.commitShard(ctx, 0, []string{key}, func([]*record) []update { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := other.Set(ctx, key, "changed after the commit", 0).Err(); err != nil {
		t.Fatal(err)
	}
	info, err := other.Do(ctx, "client", "list", "id", id).Text()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, fmt.Sprintf("id=%d ", id)) {
		t.Fatalf("CLIENT LIST ID %d = %q: the connection was replaced", id, info)
	}
	if _, after, _ := strings.Cut(info, " flags="); strings.Contains(strings.Fields(after)[0], "d") {
		t.Errorf("after a commit that wrote nothing, its connection still watches the state (CLIENT LIST: %s)", strings.TrimSpace(info))
	}
}
