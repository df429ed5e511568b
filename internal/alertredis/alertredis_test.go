package alertredis_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

const shards = 4

// agentsOnShards returns one agent id per shard: agent i maps to shard i.
func agentsOnShards(t *testing.T) []string {
	t.Helper()
	out := make([]string, shards)
	found := 0
	for i := 0; found < shards; i++ {
		if i == 1000 {
			t.Fatal("no agent id found for every shard")
		}
		id := "agent-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if s := alertredis.Shard(id, shards); out[s] == "" {
			out[s] = id
			found++
		}
	}
	return out
}

// seed stores a as the alerter does: in the active hash of its agent's shard.
func seed(t *testing.T, rdb redis.UniversalClient, prefix string, a alert.Active) {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	key := alertredis.ActiveKey(prefix, alertredis.Shard(a.AgentID, shards))
	if err := rdb.HSet(t.Context(), key, a.ID, b).Err(); err != nil {
		t.Fatalf("HSET %s: %v", key, err)
	}
}

// Every key of a shard is in the slot of the metrics stream of that shard, as Redis Cluster
// computes it, so that one transaction may touch them all.
func TestShardKeysShareTheMetricsShardSlot(t *testing.T) {
	rdb, prefix := testenv.RedisCluster(t)
	for shard := range shards {
		want, err := rdb.ClusterKeySlot(t.Context(), stream.StreamKeys(prefix, shards)[shard]).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{alertredis.StateKey(prefix, shard, alert.ID("r", "a", "")),
			alertredis.ActiveKey(prefix, shard), alertredis.AcksKey(prefix, shard), alertredis.StreamKey(prefix, shard)} {
			if got, err := rdb.ClusterKeySlot(t.Context(), key).Result(); err != nil || got != want {
				t.Errorf("slot of %s = %d (%v), want %d, the slot of metrics shard %d", key, got, err, want, shard)
			}
		}
	}
	if got := alertredis.Shard("", shards); got != 0 {
		t.Errorf("Shard(\"\") = %d, want 0 (alerts without agent)", got)
	}
	if got, want := alertredis.StreamKeys("p:", 2), []string{"p:alerts:{0}", "p:alerts:{1}"}; !slices.Equal(got, want) {
		t.Errorf("StreamKeys(p:, 2) = %v, want %v", got, want)
	}
}

// ListActive merges the active alerts and acknowledgements of every shard, in one order.
func TestListActiveMergesShards(t *testing.T) {
	testenv.OnBothRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		agents := agentsOnShards(t)
		since := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
		var want []string
		for i, agent := range agents {
			firing := alert.Active{ID: alert.ID("r", agent, ""), RuleID: "r", AgentID: agent, Status: alert.StatusFiring,
				Severity: "critical", Since: since.Add(time.Duration(i) * time.Minute)}
			pending := alert.Active{ID: alert.ID("r", agent, "core=0"), RuleID: "r", AgentID: agent, Series: "core=0",
				Status: alert.StatusPending, Severity: "warning", Since: since.Add(time.Duration(i) * time.Minute)}
			seed(t, rdb, prefix, firing)
			seed(t, rdb, prefix, pending)
			want = append(want, firing.ID)
		}
		for _, agent := range agents {
			want = append(want, alert.ID("r", agent, "core=0"))
		}
		// The last agent's firing alert is acknowledged.
		ack := alert.Ack{By: "op", At: since, Comment: "on it"}
		if err := alertredis.SetAck(t.Context(), rdb, prefix, shards, want[shards-1], ack); err != nil {
			t.Fatalf("SetAck = %v", err)
		}

		list, err := alertredis.ListActive(t.Context(), rdb, prefix, shards)
		if err != nil {
			t.Fatalf("ListActive = %v", err)
		}
		var got []string
		for _, a := range list {
			got = append(got, a.ID)
			if (a.ID == want[shards-1]) != (a.Ack != nil) {
				t.Errorf("alert %s of agent %s: ack %+v, want one only on the acknowledged alert", a.ID, a.AgentID, a.Ack)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("ListActive = %v, want %v (firing oldest first, then pending)", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("ListActive = %v, want %v (firing oldest first, then pending)", got, want)
			}
		}

		located, err := alertredis.ListActiveShards(t.Context(), rdb, prefix, shards)
		if err != nil {
			t.Fatalf("ListActiveShards = %v", err)
		}
		for _, l := range located {
			if l.Shard != alertredis.Shard(l.AgentID, shards) {
				t.Errorf("alert of agent %s found in shard %d, want %d", l.AgentID, l.Shard, alertredis.Shard(l.AgentID, shards))
			}
		}
	})
}

// SetAck finds the shard of an alert from its id alone and records the acknowledgement there
// only; an alert active nowhere is ErrNotFound. GetActive reads it back with the ack.
func TestSetAckFindsTheAlertsShard(t *testing.T) {
	testenv.OnBothRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		agents := agentsOnShards(t)
		a := alert.Active{ID: alert.ID("r", agents[2], ""), RuleID: "r", AgentID: agents[2], Status: alert.StatusFiring,
			Severity: "critical", Since: time.Now().UTC()}
		seed(t, rdb, prefix, a)
		ack := alert.Ack{By: "op", At: time.Now().UTC().Truncate(time.Millisecond)}
		if err := alertredis.SetAck(t.Context(), rdb, prefix, shards, a.ID, ack); err != nil {
			t.Fatalf("SetAck(active alert) = %v", err)
		}
		for i := range shards {
			n, err := rdb.HLen(t.Context(), alertredis.AcksKey(prefix, i)).Result()
			if err != nil {
				t.Fatal(err)
			}
			want := int64(0)
			if i == 2 {
				want = 1
			}
			if n != want {
				t.Errorf("acks of shard %d: %d, want %d", i, n, want)
			}
		}
		got, err := alertredis.GetActive(t.Context(), rdb, prefix, shards, a.AgentID, a.ID)
		if err != nil || got.ID != a.ID || got.Ack == nil || got.Ack.By != "op" || !got.Ack.At.Equal(ack.At) {
			t.Errorf("GetActive = %+v, %v, want the alert with op's ack", got, err)
		}

		other := alert.ID("r", agents[1], "")
		if err := alertredis.SetAck(t.Context(), rdb, prefix, shards, other, ack); !errors.Is(err, alertredis.ErrNotFound) {
			t.Errorf("SetAck(inactive alert) = %v, want ErrNotFound", err)
		}
		if _, err := alertredis.GetActive(t.Context(), rdb, prefix, shards, agents[1], other); !errors.Is(err, alertredis.ErrNotFound) {
			t.Errorf("GetActive(inactive alert) = %v, want ErrNotFound", err)
		}
	})
}
