package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// pipelineGroups reads GET /api/v1/pipeline and sums the lag of group over the metrics streams.
func (s *system) pipelineLag(t *testing.T, group string) int64 {
	t.Helper()
	out, body := adminGet[struct {
		Groups []struct {
			Stream string `json:"stream"`
			Group  string `json:"group"`
			Lag    *int64 `json:"lag"`
		} `json:"groups"`
	}](t, s, "/api/v1/pipeline")
	var lag int64
	seen := 0
	for _, g := range out.Groups {
		if g.Group == group && strings.Contains(g.Stream, "metrics:{") {
			seen++
			if g.Lag != nil {
				lag += *g.Lag
			}
		}
	}
	if seen != shards {
		t.Fatalf("the pipeline shows group %s on %d metrics streams, want %d: %s", group, seen, shards, body)
	}
	return lag
}

// TestDeadLetterReplayReachesInfluxOnceAndOthersNever: an entry InfluxDB refuses (a string into
// a float field) is dead-lettered by influx-writer; once the cause is fixed (the measurement
// dropped), a replay through the API stores its point, while pg-sync and the alerter, which
// handled it the first time, never see it again.
func TestDeadLetterReplayReachesInfluxOnceAndOthersNever(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1, alerters: 1})
	a := s.registerAgent("dl-agent")
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)

	// A float field first, through the gateway.
	body := fmt.Sprintf(`{"points":[{"measurement":"disk","fields":{"free":1.5},"time":%q}]}`, now.Add(-time.Minute).UTC().Format(time.RFC3339))
	if code, b, _ := s.do("POST", "/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey, []byte(body)); code != http.StatusNoContent {
		t.Fatalf("POST = %d %s", code, b)
	}
	testenv.WaitDrained(t, s.rdb, "influx-writer", s.metricStreams()...)

	// Then, straight onto a metrics stream (the gateway's field-type check would refuse it), the
	// same field as a string: InfluxDB refuses it with a field type conflict.
	pub, err := stream.NewPublisher(s.rdb, stream.PublisherConfig{Prefix: s.prefix, Shards: shards}, nil)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("disk,agent=%s free=\"full\" %d\n", a.ID, now.UnixNano())
	if err := pub.Publish(ctx, a.ID, []byte(line), map[string]string{
		stream.MetaPoints: "1", stream.MetaReceivedAt: strconv.FormatInt(now.UnixNano(), 10),
	}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"influx-writer", "pg-sync", "alerter"} {
		testenv.WaitDrained(t, s.rdb, g, s.metricStreams()...)
	}
	code, b, _ := s.do("GET", "/api/v1/pipeline/dead-letters", "Bearer "+s.admin, nil)
	var list struct {
		DeadLetters []stream.DeadLetter `json:"dead_letters"`
		Total       int                 `json:"total"`
	}
	if err := json.Unmarshal(b, &list); err != nil || code != 200 || list.Total != 1 {
		t.Fatalf("GET dead-letters = %d %s, want the one refused entry", code, b)
	}
	d := list.DeadLetters[0]
	if d.Group != "influx-writer" || !strings.Contains(d.Reason, "conflict") {
		t.Errorf("dead letter = %+v, want group influx-writer and InfluxDB's field type conflict", d)
	}
	// The metrics-stream groups' own counters: an alerter also acks alerts-stream entries
	// (history, notifier), which built-in pipeline rules such as the watchdog produce at any time.
	groupOf := func(name string) string {
		switch {
		case strings.HasPrefix(name, "sync"):
			return "pg-sync"
		case strings.HasPrefix(name, "alerter"):
			return "alerter"
		}
		return ""
	}
	acked := map[string]float64{}
	for _, p := range s.procs {
		if g := groupOf(p.Name()); g != "" {
			acked[p.Name()] = metricValue(t, p.ops, "agentmonitor_stream_acked_total", `group="`+g+`"`)
		}
	}

	// Fix the cause, replay through the API.
	if _, err := s.influx.InfluxQL(ctx, "DROP MEASUREMENT disk"); err != nil {
		t.Fatalf("dropping the conflicting measurement: %v", err)
	}
	rb, _ := json.Marshal(map[string]any{"ids": []string{d.ID}})
	if code, b, _ := s.do("POST", "/api/v1/pipeline/dead-letters/replay", "Bearer "+s.admin, rb); code != 200 {
		t.Fatalf("replay = %d %s", code, b)
	}
	replay := stream.ReplayKey(s.prefix, "influx-writer")
	testenv.WaitDrained(t, s.rdb, "influx-writer", replay)
	testenv.Eventually(t, 20*time.Second, func() string {
		series, err := s.influx.InfluxQL(ctx, fmt.Sprintf(`SELECT "free" FROM "disk" WHERE "agent" = '%s'`, a.ID))
		if err != nil {
			return err.Error()
		}
		if len(series) != 1 || len(series[0].Values) != 1 || fmt.Sprint(series[0].Values[0][1]) != "full" {
			return fmt.Sprintf("InfluxDB holds %v, want the one replayed point free=full", series)
		}
		return ""
	})
	if code, b, _ := s.do("GET", "/api/v1/pipeline/dead-letters", "Bearer "+s.admin, nil); code != 200 || !strings.Contains(string(b), `"total":0`) {
		t.Errorf("dead letters after the replay = %d %s, want none", code, b)
	}
	for _, g := range []string{"pg-sync", "alerter"} {
		testenv.WaitDrained(t, s.rdb, g, s.metricStreams()...)
	}
	for _, p := range s.procs {
		if want, ok := acked[p.Name()]; ok {
			if got := metricValue(t, p.ops, "agentmonitor_stream_acked_total", `group="`+groupOf(p.Name())+`"`); got != want {
				t.Errorf("%s acked %v entries after the replay, %v before: the replay reached a group that had handled it", p.Name(), got, want)
			}
		}
	}
	_, audit, _ := s.do("GET", "/api/v1/audit", "Bearer "+s.admin, nil)
	if !strings.Contains(string(audit), "dead_letter.replay") {
		t.Errorf("the audit log has no dead_letter.replay row: %s", audit)
	}
}

// TestPipelineLagGrowsWhileAWorkerIsStopped: the pipeline API shows pg-sync's lag growing while
// it is stopped and falling to 0 once it runs again.
func TestPipelineLagGrowsWhileAWorkerIsStopped(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1})
	a := s.registerAgent("lag-agent")
	var sync *proc
	for _, p := range s.procs {
		if strings.HasPrefix(p.Name(), "sync") {
			sync = p
		}
	}
	s.postCPU(t, a, 1, time.Now())
	testenv.WaitDrained(t, s.rdb, "pg-sync", s.metricStreams()...)
	if lag := s.pipelineLag(t, "pg-sync"); lag != 0 {
		t.Fatalf("pg-sync lag = %d with everything handled, want 0", lag)
	}
	if err := sync.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	var prev int64
	for i := range 3 {
		for j := range 5 {
			s.postCPU(t, a, float64(i*5+j), time.Now())
		}
		lag := s.pipelineLag(t, "pg-sync")
		if lag <= prev {
			t.Errorf("pg-sync lag = %d after %d more batches while stopped, want more than %d", lag, 5, prev)
		}
		prev = lag
	}
	if err := sync.Restart(t.Context(), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() string {
		if lag := s.pipelineLag(t, "pg-sync"); lag != 0 {
			return fmt.Sprintf("pg-sync lag = %d after it came back, want 0", lag)
		}
		return ""
	})
}
