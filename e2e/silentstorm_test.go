package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// lastSeen reads the agent's last_seen from the gateway (PostgreSQL, written by pg-sync).
func (s *system) lastSeen(t *testing.T, a agent) *time.Time {
	t.Helper()
	out, _ := adminGet[struct {
		LastSeen *time.Time `json:"last_seen"`
	}](t, s, "/api/v1/agents/"+a.ID)
	return out.LastSeen
}

// TestStoppedPgSyncDoesNotMakeAgentsSilent: with pg-sync stopped for longer than a silent rule's
// after, an agent whose batches the gateway keeps accepting does not alert (its last_seen in
// PostgreSQL is frozen), while an agent that sends nothing still does.
func TestStoppedPgSyncDoesNotMakeAgentsSilent(t *testing.T) {
	s := newSystem(t, options{syncs: 1, alerters: 1})
	reporting := s.registerAgent("reporting")
	s.postCPU(t, reporting, 1, time.Now())
	testenv.Eventually(t, 20*time.Second, func() string {
		if s.lastSeen(t, reporting) == nil {
			return "pg-sync has not written last_seen yet"
		}
		return ""
	})
	s.createJSON(t, "/api/v1/alert-rules", map[string]any{
		"name": "silent", "kind": "agent_silent", "after": "10s", "severity": "critical",
		"agents": map[string]any{"labels": map[string]string{"env": "test"}}, "enabled": true})
	ws := s.dialAlerts(t)

	if err := s.procs[1].Stop(20 * time.Second); err != nil { // procs: gateway, pg-sync, alerter
		t.Fatal(err)
	}
	stopped := time.Now()
	frozen := s.lastSeen(t, reporting)
	stop := make(chan struct{})
	done := make(chan struct{})
	refused := make(chan string, 1)
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				if err := postQuietly(s.gateway, reporting, now); err != nil {
					select {
					case refused <- err.Error():
					default:
					}
				}
			}
		}
	}()
	defer func() { close(stop); <-done }()

	// An agent registered once reporting's last_seen is older than after: when its own silence
	// fires, a check ran at a time at which reporting would have fired too, by last_seen.
	testenv.Eventually(t, 30*time.Second, func() string {
		if time.Since(stopped) < 11*time.Second {
			return "pg-sync not stopped for longer than after yet"
		}
		return ""
	})
	quiet := s.registerAgent("quiet")
	testenv.Eventually(t, 40*time.Second, func() string {
		if _, ok := ws.event(quiet.ID, "firing"); !ok {
			return fmt.Sprintf("no firing agent_silent event for the quiet agent yet (got %v)", ws.transitions(quiet.ID))
		}
		return ""
	})
	if got := s.lastSeen(t, reporting); got == nil || !got.Equal(*frozen) {
		t.Fatalf("last_seen of reporting = %v, want frozen at %v while pg-sync is stopped", got, frozen)
	}
	// Silent by last_seen since before quiet registered, reporting would have fired checks before
	// quiet did (each check commits every shard before the next starts): the active alerts of
	// every shard now show it if it did.
	active, err := alertredis.ListActive(t.Context(), s.rdb, s.prefix, shards)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range active {
		if a.AgentID == reporting.ID {
			t.Errorf("reporting agent has an active %s alert %+v although the gateway accepts its batches", a.Kind, a)
		}
	}
	if got := ws.transitions(reporting.ID); len(got) != 0 {
		t.Errorf("reporting agent's transitions %v, want none", got)
	}
	select {
	case err := <-refused:
		t.Errorf("a batch of the reporting agent failed: %s", err)
	default:
	}
}

// postQuietly sends one cpu sample of a at time at and reports a failure as an error, for use
// outside the test's goroutine.
func postQuietly(gateway string, a agent, at time.Time) error {
	body := fmt.Sprintf(`{"points":[{"measurement":"cpu","tags":{"core":"total"},"fields":{"usage_percent":1},"time":%q}]}`,
		at.UTC().Format(time.RFC3339Nano))
	req, err := http.NewRequest(http.MethodPost, gateway+"/api/v1/agents/"+a.ID+"/metrics", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST sample = %d", resp.StatusCode)
	}
	return nil
}
