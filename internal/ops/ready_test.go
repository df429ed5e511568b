package ops_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/ops"
)

func TestReadinessScopes(t *testing.T) {
	t.Parallel()
	down := func(context.Context) error { return errors.New("connection refused") }
	up := func(context.Context) error { return nil }
	rd := ops.Readiness{
		Checks:   map[string]ops.Check{"redis": up, "postgres": down},
		Scopes:   map[string][]string{"": {"redis"}, "api": {"redis", "postgres"}},
		Warnings: func(context.Context) []string { return []string{"redis: appendonly is off"} },
	}
	tests := []struct {
		path string
		want int
		in   []string
		out  []string
	}{
		{"/readyz", 200, []string{`"status":"ready"`, `"postgres":"connection refused"`, `"redis":"ok"`, `"warnings":["redis: appendonly is off"]`}, []string{`"details"`}},
		{"/readyz?scope=api", 503, []string{`"error":"not ready"`, `"details":["postgres: connection refused"]`, `"scope":"api"`, `"warnings"`}, []string{`"status"`}},
		{"/readyz?scope=bogus", 400, []string{`unknown scope \"bogus\": use one of api`}, nil},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		rd.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		body := rec.Body.String()
		if rec.Code != tc.want {
			t.Errorf("GET %s = %d %s, want %d", tc.path, rec.Code, body, tc.want)
		}
		for _, s := range tc.in {
			if !strings.Contains(body, s) {
				t.Errorf("GET %s = %s, want it to contain %s", tc.path, body, s)
			}
		}
		for _, s := range tc.out {
			if strings.Contains(body, s) {
				t.Errorf("GET %s = %s, want no %s", tc.path, body, s)
			}
		}
	}
	// Without scopes every check is needed and a scope parameter is refused.
	plain := ops.Readiness{Checks: map[string]ops.Check{"redis": up, "db": down}}
	rec := httptest.NewRecorder()
	plain.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "db: connection refused") {
		t.Errorf("GET /readyz without scopes, db down = %d %s, want 503 naming db", rec.Code, rec.Body)
	}
}
