package alerter_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alerter"
	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string // "" for valid
	}{
		{map[string]string{}, ""},
		{map[string]string{"RULES_POLL_INTERVAL": "0s"}, "RULES_POLL_INTERVAL=0s"},
		{map[string]string{"AGENTS_REFRESH_INTERVAL": "-1s"}, "AGENTS_REFRESH_INTERVAL=-1s"},
		{map[string]string{"SILENT_CHECK_INTERVAL": "0s"}, "SILENT_CHECK_INTERVAL=0s"},
		{map[string]string{"SILENT_CHECK_INTERVAL": "soon"}, `SILENT_CHECK_INTERVAL="soon"`},
		{map[string]string{"ALERTER_MAX_WAIT": "0s"}, "ALERTER_MAX_WAIT=0s"},
		{map[string]string{"ALERTER_MAX_WAIT": "20s"}, "ALERTER_MAX_WAIT=20s: want at most half of STREAM_CLAIM_MIN_IDLE"},
		{map[string]string{"INFLUXDB_URL": "influx:8086"}, "INFLUXDB_URL"},
		{map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL"},
		{map[string]string{"NOTIFIER_MAX_RETRIES": "-1"}, "NOTIFIER_MAX_RETRIES"},
		{map[string]string{"WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,not a host"}, "WEBHOOK_ALLOWED_NETWORKS"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.env), func(t *testing.T) {
			t.Setenv("CONSUMER_NAME", "alerter-a")
			t.Setenv("REDIS_KEY_PREFIX", "p:")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var cfg alerter.Config
			err := config.Load("alerter", nil, &cfg, io.Discard)
			if c.want == "" {
				if err != nil {
					t.Fatalf("config.Load = %v, want nil", err)
				}
				if cfg.Stream.Group != alerter.Group || cfg.OpsAddr != ":9103" || cfg.RulesPollInterval != time.Second ||
					cfg.AgentsRefreshInterval != 5*time.Second || cfg.SilentCheckInterval != 5*time.Second ||
					cfg.MaxWait != 5*time.Millisecond ||
					cfg.Notify.Consumer != "alerter-a" || cfg.Notify.Prefix != "p:" {
					t.Errorf("defaults: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("config.Load = %v, want an error naming %s", err, c.want)
			}
		})
	}
}

// TestRunWiresEverything runs the whole alerter: a sample published on the metrics stream ends
// up as a transition in history (PostgreSQL and InfluxDB) and at a webhook; cancelling the
// context stops Run cleanly.
func TestRunWiresEverything(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	db, dbURL := testenv.Postgres(t)
	ifx := testenv.Influx(t)
	var posts atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()

	for k, v := range map[string]string{
		"REDIS_KEY_PREFIX": prefix, "DATABASE_URL": dbURL, "INFLUXDB_URL": ifx.URL, "INFLUXDB_BUCKET": ifx.Database,
		"OPS_ADDR": "127.0.0.1:0", "CONSUMER_NAME": "alerter-test", "STREAM_SHARDS": "2", "STREAM_MAX_WAIT": "10ms",
		"RULES_POLL_INTERVAL": "50ms", "AGENTS_REFRESH_INTERVAL": "100ms", "SILENT_CHECK_INTERVAL": "100ms",
		"LOG_LEVEL": "error",
		// The webhook is an httptest server on loopback: the operator's allow-list path.
		"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
	} {
		t.Setenv(k, v)
	}
	var cfg alerter.Config
	if err := config.Load("alerter", nil, &cfg, io.Discard); err != nil {
		t.Fatal(err)
	}

	ch, err := postgres.NewChannelStore(db).Create(t.Context(), alert.Channel{Name: "ops", Type: "webhook", URL: hook.URL, Enabled: true}, "test")
	if err != nil {
		t.Fatalf("creating channel: %v", err)
	}
	agents := postgres.NewAgentStore(db)
	agent, err := agents.Create(t.Context(), "web-1", nil, agent.HashAPIKey("web-1"), "test")
	if err != nil {
		t.Fatal(err)
	}
	rule := cpuRule(0)
	rule.Channels = []string{ch.ID}
	rules := postgres.NewRuleStore(db)
	if _, err := rules.Create(t.Context(), rule, "test"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- alerter.Run(ctx, &cfg, discard) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancellation", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancellation")
		}
	}
	defer stop()

	pub, err := stream.NewPublisher(rdb, stream.PublisherConfig{Prefix: prefix, Shards: 2}, discard)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("cpu,agent=%s,core=0 usage=99 %d\n", agent.ID, time.Now().UnixNano())
	if err := pub.Publish(t.Context(), agent.ID, []byte(line), map[string]string{stream.MetaAgent: agent.ID,
		stream.MetaReceivedAt: strconv.FormatInt(time.Now().UnixNano(), 10), stream.MetaPoints: "1"}); err != nil {
		t.Fatal(err)
	}

	store := postgres.NewAlertEventStore(db)
	testenv.Eventually(t, 20*time.Second, func() string {
		evs, _, err := store.History(t.Context(), postgres.HistoryFilter{AgentID: agent.ID, Limit: 10})
		if err != nil || len(evs) != 1 || evs[0].To != "firing" {
			return fmt.Sprintf("history %v (%v), want one firing", evs, err)
		}
		if n := posts.Load(); n != 1 {
			return fmt.Sprintf("webhook received %d posts, want 1", n)
		}
		return ""
	})
	// The built-in watchdog fires through the periodic check, without agent, into history.
	testenv.Eventually(t, 20*time.Second, func() string {
		evs, _, err := store.History(t.Context(), postgres.HistoryFilter{Limit: 100})
		for _, ev := range evs {
			if ev.Kind == string(alert.KindPipeline) && ev.Metric == "pipeline.watchdog" && ev.To == "firing" && ev.AgentID == "" {
				return ""
			}
		}
		return fmt.Sprintf("history %v (%v), want the built-in watchdog firing", evs, err)
	})
	testenv.Eventually(t, 20*time.Second, func() string {
		series, err := ifx.Server.Query(t.Context(), ifx.Database, fmt.Sprintf(`SELECT count("value") FROM "alerts" WHERE "agent" = '%s'`, agent.ID))
		if err != nil {
			return fmt.Sprintf("querying InfluxDB: %v", err)
		}
		if len(series) != 1 || len(series[0].Values) != 1 || series[0].Values[0][1] != 1.0 {
			return fmt.Sprintf("InfluxDB alerts count: %+v, want 1", series)
		}
		return ""
	})
	stop()
}
