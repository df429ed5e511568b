package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchBatch is a small agent batch: 6 points of 5 fields, 30 values, without times (stamped by
// the gateway), as a host agent sends every few seconds.
func benchBatch() []byte {
	var pts []string
	for core := range 6 {
		pts = append(pts, fmt.Sprintf(`{"measurement":"cpu","tags":{"core":"%d","host":"bench-1"},`+
			`"fields":{"usage_user":%d.5,"usage_system":3.25,"usage_idle":80.125,"usage_iowait":0.5,"usage_steal":0}}`, core, core))
	}
	return []byte(`{"points":[` + strings.Join(pts, ",") + `]}`)
}

// BenchmarkIngestJSON measures the JSON ingest handler end to end against the real Redis: key
// lookup (cached), body read, parse and validation, rate limit, encoding, XADD and hot-cache
// refresh. The HTTP transport is left out (the handler is called directly).
func BenchmarkIngestJSON(b *testing.B) {
	e := newEnv(b, func(c *Config) {
		c.AgentRatePointsPerSec = 1 << 30
		c.AgentRateBurst = 1 << 30
		c.Backlog.Max = 1 << 40
	})
	a := e.register(e.adminToken(), "bench")
	body := benchBatch()
	path := "/api/v1/agents/" + a.ID + "/metrics"
	h := e.g.Handler()
	serve := func() {
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+a.APIKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent {
			b.Fatalf("ingest = %d %s", w.Code, w.Body)
		}
	}
	serve() // warm the key cache and the script cache

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			serve()
		}
		b.ReportMetric(float64(b.N)*30/b.Elapsed().Seconds(), "values/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serve()
			}
		})
		b.ReportMetric(float64(b.N)*30/b.Elapsed().Seconds(), "values/s")
	})
}
