package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// TestIngestOnCluster runs the ingest path through a gateway on the shared Redis Cluster, with
// REDIS_WAIT_REPLICAS=1 (each master has one replica): the batch is appended and the hot cache
// answers; a second gateway asking for 2 replicas answers 503 naming the shortfall. (The agent
// is registered in PostgreSQL directly: operator sessions are not this test's subject.)
func TestIngestOnCluster(t *testing.T) {
	t.Parallel()
	e, rdb := newClusterEnv(t, func(c *Config) { c.Wait.Replicas, c.Wait.Timeout = 1, time.Second })
	key, err := newAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	created, err := e.g.agents.Create(t.Context(), "clustered", nil, agent.HashAPIKey(key), "test")
	if err != nil {
		t.Fatal(err)
	}
	a := registered{ID: created.ID, APIKey: key}
	now := time.Now().Truncate(time.Millisecond).UTC()
	body := fmt.Sprintf(`{"points":[{"measurement":"cpu","tags":{"core":"0"},"fields":{"usage":12.5,"idle":3},"time":%q}]}`, now.Format(time.RFC3339Nano))
	path := "/api/v1/agents/" + a.ID + "/metrics"
	if r := e.do(req{method: "POST", path: path, auth: bearer(a.APIKey), body: body}); r.status != http.StatusNoContent {
		t.Fatalf("POST on the cluster with WAIT 1 = %s, want 204", r)
	}

	sk := stream.StreamKeys(e.prefix, e.cfg.Publish.Shards)[stream.ShardFor(a.ID, e.cfg.Publish.Shards)]
	msgs, err := rdb.XRange(t.Context(), sk, "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("XRANGE %s = %v, %v; want one entry", sk, msgs, err)
	}
	msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(msgs[0].Values)
	if err != nil || msg.Metadata[stream.MetaAgent] != a.ID || !strings.HasPrefix(string(msg.Payload), "cpu,agent="+a.ID) {
		t.Errorf("entry = %v, %v; want the batch of %s", msg, err, a.ID)
	}

	latest, err := e.g.hot.Latest(t.Context(), a.ID)
	want := fmt.Sprintf(`{"metric":"cpu.idle","tags":{"core":"0"},"value":3,"time":%q} {"metric":"cpu.usage","tags":{"core":"0"},"value":12.5,"time":%q}`,
		now.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	if got := fmt.Sprintf("%s", latest); err != nil || got != "["+want+"]" {
		t.Errorf("latest = %s, %v\nwant [%s]", got, err, want)
	}
	recent, err := e.g.hot.Recent(t.Context(), a.ID, "cpu.usage", time.Now())
	if err != nil || len(recent) != 1 || !strings.Contains(string(recent[0]), `"value":12.5`) {
		t.Errorf("recent = %s, %v; want the sample", recent, err)
	}

	cfg2 := e.cfg
	cfg2.Wait.Replicas, cfg2.Wait.Timeout = 2, 100*time.Millisecond
	_, url2 := startGateway(t, cfg2)
	r := doHTTP(t, url2, req{method: "POST", path: path, auth: bearer(a.APIKey), body: body})
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.errorMessage(t), "1 of the 2 Redis replicas") {
		t.Errorf("POST with REDIS_WAIT_REPLICAS=2 and one replica = %s, want 503 naming 1 of 2 replicas", r)
	}
}
