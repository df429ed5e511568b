package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// BenchmarkLatest measures GET /api/v1/agents/{id}/metrics/latest through the gateway's whole
// Echo handler chain (session check, routing, the handler) against the real Redis and
// PostgreSQL of the test environment, for an agent whose cache holds what benchPoints sends (6
// points, 30 series) after 300 requests. Only the TCP transport is left out (httptest).
// memory is the default LATEST_READ_MAX_AGE (answers from the gateway's memory, refreshed in the
// background); redis is LATEST_READ_MAX_AGE=0 (the hot cache read on every request).
func BenchmarkLatest(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchmarkLatest(b, DefaultConfig().LatestReadMaxAge) })
	b.Run("redis", func(b *testing.B) { benchmarkLatest(b, 0) })
}

func benchmarkLatest(b *testing.B, maxAge time.Duration) {
	e := newEnv(b, func(c *Config) {
		c.AgentRatePointsPerSec = 1 << 30
		c.AgentRateBurst = 1 << 30
		c.Backlog.Max = 1 << 40
		c.LatestReadMaxAge = maxAge
	})
	admin := e.adminToken()
	a := e.register(admin, "bench")
	h := e.g.Handler()
	body := benchLineBody()
	for range 300 {
		r := httptest.NewRequest(http.MethodPost, "/api/v2/write?bucket=metrics&precision=ns", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "text/plain; charset=utf-8")
		r.Header.Set("Authorization", "Token "+a.APIKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent {
			b.Fatalf("ingest = %d %s", w.Code, w.Body)
		}
	}
	path := "/api/v1/agents/" + a.ID + "/metrics/latest"
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Authorization", "Bearer "+admin)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || strings.Count(w.Body.String(), `"metric":`) != 30 {
			b.Fatalf("latest = %d %s", w.Code, w.Body)
		}
	}
}
