package testenv

import (
	"encoding/json"
	"net/http"
	"testing"
)

// FastPipelineEnv is the part of the environment the system tests (e2e, faults) give every binary
// that makes the pipeline's timers run at a test's pace: short stream waits, idle entries claimed
// after 2 s, retries and trims within a second, rules and agents reloaded every 500 ms. Append the
// deployment's own settings; a later setting of the same name wins.
func FastPipelineEnv() []string {
	return []string{
		"STREAM_MAX_WAIT=50ms",
		"STREAM_BLOCK=200ms",
		"STREAM_CLAIM_MIN_IDLE=2s",
		"STREAM_CLAIM_INTERVAL=300ms",
		"STREAM_RETRY_MAX=1s",
		"STREAM_TRIM_INTERVAL=500ms",
		"RULES_POLL_INTERVAL=500ms",
		"AGENTS_REFRESH_INTERVAL=500ms",
	}
}

// LoginToken reads the session token from the gateway's answer to POST /api/v1/auth/login (its
// status and body), failing the test unless it is a 200 holding a token.
func LoginToken(t testing.TB, status int, body []byte) string {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("login: %d %s", status, body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		t.Fatalf("login answer %s: %v", body, err)
	}
	return out.Token
}
