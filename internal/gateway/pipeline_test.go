package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestPipelineRoles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	viewer := e.userToken(e.adminToken(), "vic", "viewer")
	for _, r := range []req{
		{method: "GET", path: "/api/v1/pipeline"},
		{method: "GET", path: "/api/v1/pipeline/dead-letters"},
		{method: "POST", path: "/api/v1/pipeline/dead-letters/replay", body: map[string]any{"all": true}},
	} {
		if got := e.do(r); got.status != http.StatusUnauthorized {
			t.Errorf("%s %s without a session = %s, want 401", r.method, r.path, got)
		}
		r.auth = bearer(viewer)
		if got := e.do(r); got.status != http.StatusForbidden {
			t.Errorf("%s %s as a viewer = %s, want 403", r.method, r.path, got)
		}
	}
}

type groupAnswer struct {
	Stream      string   `json:"stream"`
	Group       string   `json:"group"`
	Lag         *int64   `json:"lag"`
	Pending     int64    `json:"pending"`
	Throughput  *float64 `json:"throughput_per_second"`
	DeadLetters int      `json:"dead_letters"`
	Consumers   []struct {
		Name    string `json:"name"`
		Pending int64  `json:"pending"`
		IdleMS  int64  `json:"idle_ms"`
	} `json:"consumers"`
}

type pipelineAnswer struct {
	Groups      []groupAnswer `json:"groups"`
	DeadLetters int           `json:"dead_letters"`
	Stores      map[string]struct {
		OK    bool              `json:"ok"`
		Error string            `json:"error"`
		Info  map[string]string `json:"info"`
	} `json:"stores"`
}

func TestPipelineShowsLagConsumersAndStores(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	op := e.userToken(e.adminToken(), "olga", "operator")
	ctx := context.Background()
	shard := stream.StreamKeys(e.prefix, e.cfg.Publish.Shards)[0]
	// The gateway's trimmer creates the configured groups at id 0; wait for it.
	testenv.Eventually(t, 10*time.Second, func() string {
		groups, _ := e.rdb.XInfoGroups(ctx, shard).Result()
		if len(groups) < len(e.cfg.Trim.Groups) {
			return "the trimmer has not created the groups yet"
		}
		return ""
	})
	for range 3 {
		e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: shard, Values: []any{"payload", "x"}})
	}
	group := e.cfg.Trim.Groups[0]
	if err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "w1", Streams: []string{shard, ">"}, Count: 2, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DeadLetterKey(e.prefix), Values: []any{stream.FieldGroup, group, stream.FieldReason, "r"}})

	get := func() pipelineAnswer {
		r := e.do(req{method: "GET", path: "/api/v1/pipeline", auth: bearer(op)})
		if r.status != http.StatusOK {
			t.Fatalf("GET /api/v1/pipeline = %s", r)
		}
		return decode[pipelineAnswer](t, r)
	}
	first := get()
	i := slices.IndexFunc(first.Groups, func(g groupAnswer) bool {
		return g.Stream == shard && g.Group == group
	})
	if i < 0 {
		t.Fatalf("no group %s on %s in %+v", group, shard, first.Groups)
	}
	g := first.Groups[i]
	if g.Lag == nil || *g.Lag != 1 || g.Pending != 2 || len(g.Consumers) != 1 || g.Consumers[0].Name != "w1" || g.Consumers[0].Pending != 2 {
		t.Errorf("group %s on %s = %+v, want lag 1, pending 2, consumer w1 with 2 pending", group, shard, g)
	}
	if g.Throughput != nil || g.DeadLetters != 1 || first.DeadLetters != 1 {
		t.Errorf("first call: throughput %v, dead letters %d (all %d); want null, 1, 1", g.Throughput, g.DeadLetters, first.DeadLetters)
	}
	second := get()
	for _, g := range second.Groups {
		if g.Stream == shard && g.Group == group && (g.Throughput == nil || *g.Throughput < 0) {
			t.Errorf("second call: throughput %v, want a rate", g.Throughput)
		}
	}
	if s := second.Stores["redis"]; !s.OK || s.Info["used_memory_human"] == "" || s.Info["rdb_last_bgsave_status"] == "" {
		t.Errorf("redis health = %+v, want ok with memory and persistence", s)
	}
	if s := second.Stores["postgresql"]; !s.OK {
		t.Errorf("postgresql health = %+v, want ok", s)
	}
	if _, ok := second.Stores["influxdb"]; !ok {
		t.Errorf("no influxdb health in %+v", second.Stores)
	}
}

func TestDeadLetterListAndReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	op := e.userToken(admin, "otto", "operator")
	ctx := context.Background()
	dead := stream.DeadLetterKey(e.prefix)
	var ids []string
	for i, grp := range []string{"influx-writer", "pg-sync", "influx-writer"} {
		id := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dead, Values: []any{
			stream.FieldStream, "s", stream.FieldID, "1-" + string(rune('0'+i)), stream.FieldGroup, grp,
			stream.FieldReason, "influxdb: database not found", stream.FieldDeliveries, "1",
			stream.FieldUUID, "u", stream.FieldPayload, "p" + string(rune('0'+i)), stream.FieldMetadata, "m",
		}}).Val()
		ids = append(ids, id)
	}

	r := e.do(req{method: "GET", path: "/api/v1/pipeline/dead-letters?limit=2", auth: bearer(op)})
	list := decode[struct {
		DeadLetters []stream.DeadLetter `json:"dead_letters"`
		Total       int                 `json:"total"`
	}](t, r)
	if r.status != 200 || list.Total != 3 || len(list.DeadLetters) != 2 || list.DeadLetters[0].ID != ids[2] || list.DeadLetters[0].Reason == "" {
		t.Fatalf("GET dead-letters?limit=2 = %s, want the 2 newest of 3 with reasons", r)
	}

	bad := []struct {
		body   any
		status int
	}{
		{map[string]any{}, 400},
		{map[string]any{"all": true, "ids": []string{ids[0]}}, 400},
		{map[string]any{"ids": []string{"nope"}}, 400},
		{map[string]any{"ids": []string{"1-1"}}, 404},
	}
	for _, b := range bad {
		if r := e.do(req{method: "POST", path: "/api/v1/pipeline/dead-letters/replay", auth: bearer(op), body: b.body}); r.status != b.status {
			t.Errorf("replay %v = %s, want %d", b.body, r, b.status)
		}
	}
	if n := e.rdb.XLen(ctx, dead).Val(); n != 3 {
		t.Fatalf("%d dead letters after refused replays, want 3 (nothing half-done)", n)
	}

	r = e.do(req{method: "POST", path: "/api/v1/pipeline/dead-letters/replay", auth: bearer(op), body: map[string]any{"ids": []string{ids[0], ids[1]}}})
	if r.status != 200 || !strings.Contains(string(r.body), `"replayed":2`) {
		t.Fatalf("replay 2 ids = %s, want 200 replayed 2", r)
	}
	for grp, want := range map[string]string{"influx-writer": "p0", "pg-sync": "p1"} {
		msgs := e.rdb.XRange(ctx, stream.ReplayKey(e.prefix, grp), "-", "+").Val()
		if len(msgs) != 1 || msgs[0].Values[stream.FieldPayload] != want || msgs[0].Values[stream.FieldUUID] != "u" {
			t.Errorf("replay stream of %s = %v, want the one entry with payload %s", grp, msgs, want)
		}
	}
	if left := e.rdb.XRange(ctx, dead, "-", "+").Val(); len(left) != 1 || left[0].ID != ids[2] {
		t.Errorf("dead letters left = %v, want only %s", left, ids[2])
	}
	audit := e.do(req{method: "GET", path: "/api/v1/audit", auth: bearer(admin)})
	if n := strings.Count(string(audit.body), `"dead_letter.replay"`); n != 2 {
		t.Errorf("audit log has %d dead_letter.replay rows, want 2: %s", n, audit)
	}
	if r := e.do(req{method: "POST", path: "/api/v1/pipeline/dead-letters/replay", auth: bearer(op), body: map[string]any{"all": true}}); r.status != 200 || !strings.Contains(string(r.body), `"replayed":1`) {
		t.Errorf("replay all = %s, want replayed 1", r)
	}
}
