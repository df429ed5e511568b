package main

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseCommandStatsAndCount(t *testing.T) {
	before := parseCommandStats("# Commandstats\r\ncmdstat_xadd:calls=10,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=3,usec=1\r\ncmdstat_client|setname:calls=2,usec=1\r\n")
	if before["xadd"] != 10 || before["info"] != 3 || before["client|setname"] != 2 || len(before) != 3 {
		t.Fatalf("parseCommandStats = %v", before)
	}
	after := map[string]int64{"xadd": 110, "info": 9, "client|setname": 2, "evalsha": 200}
	c := countCommands(before, after, 100, 6)
	if c.PerRequest != 3 || c.ByCommand["xadd"] != 1 || c.ByCommand["evalsha"] != 2 {
		t.Errorf("countCommands = %+v, want 3 per request (xadd 1, evalsha 2)", c)
	}
	if _, ok := c.ByCommand["info"]; ok {
		t.Error("countCommands counted INFO, the readings themselves")
	}
	if _, ok := c.ByCommand["client|setname"]; ok {
		t.Error("countCommands kept a command that did not change")
	}
	if got := countCommands(before, after, 0, 6); got.PerRequest != 0 {
		t.Errorf("countCommands with no request = %v, want 0", got.PerRequest)
	}
}

const metricsText = `# HELP agentmonitor_gateway_http_request_duration_seconds HTTP request latency by route, method and status code.
# TYPE agentmonitor_gateway_http_request_duration_seconds histogram
agentmonitor_gateway_http_request_duration_seconds_bucket{code="200",method="GET",route="/api/v1/agents/:id/metrics/latest",le="0.0005"} %d
agentmonitor_gateway_http_request_duration_seconds_bucket{code="200",method="GET",route="/api/v1/agents/:id/metrics/latest",le="0.001"} %d
agentmonitor_gateway_http_request_duration_seconds_bucket{code="200",method="GET",route="/api/v1/agents/:id/metrics/latest",le="0.0025"} %d
agentmonitor_gateway_http_request_duration_seconds_bucket{code="200",method="GET",route="/api/v1/agents/:id/metrics/latest",le="+Inf"} %d
agentmonitor_gateway_http_request_duration_seconds_sum{code="200",method="GET",route="/api/v1/agents/:id/metrics/latest"} 1
agentmonitor_gateway_http_request_duration_seconds_count{code="200",method="GET",route="/api/v1/agents/:id/metrics/latest"} %d
agentmonitor_gateway_http_request_duration_seconds_bucket{code="204",method="POST",route="/api/v1/agents/:id/metrics",le="0.0005"} 1000
agentmonitor_gateway_http_request_duration_seconds_bucket{code="204",method="POST",route="/api/v1/agents/:id/metrics",le="0.001"} 1000
agentmonitor_gateway_http_request_duration_seconds_bucket{code="204",method="POST",route="/api/v1/agents/:id/metrics",le="0.0025"} 1000
agentmonitor_gateway_http_request_duration_seconds_bucket{code="204",method="POST",route="/api/v1/agents/:id/metrics",le="+Inf"} 1000
agentmonitor_gateway_http_request_duration_seconds_sum{code="204",method="POST",route="/api/v1/agents/:id/metrics"} 1
agentmonitor_gateway_http_request_duration_seconds_count{code="204",method="POST",route="/api/v1/agents/:id/metrics"} 1000
`

func histogramText(b1, b2, b3, inf int) string {
	return fmt.Sprintf(metricsText, b1, b2, b3, inf, inf)
}

func TestHistogramQuantiles(t *testing.T) {
	want := map[string]string{"route": routeLatest, "method": "GET", "code": "2*"}
	before, err := parseHistogram(strings.NewReader(histogramText(10, 10, 10, 10)), gatewayDurationMetric, want)
	if err != nil {
		t.Fatal(err)
	}
	// 1000 more reads: 900 under 0.5 ms, 50 in (0.5, 1], 50 in (1, 2.5].
	after, err := parseHistogram(strings.NewReader(histogramText(910, 960, 1010, 1010)), gatewayDurationMetric, want)
	if err != nil {
		t.Fatal(err)
	}
	q := quantiles(before, after)
	if q.Count != 1000 {
		t.Fatalf("count = %d, want 1000 (the other route must not count)", q.Count)
	}
	// p50: rank 500 of 900 in [0, 0.5 ms]: 0.2778 ms. p99: rank 990 in (1, 2.5] ms, 40 of 50: 2.2 ms.
	if math.Abs(q.P50-0.5*500/900) > 1e-9 || math.Abs(q.P99-2.2) > 1e-9 {
		t.Errorf("quantiles = %+v, want p50 %.4f, p99 2.2", q, 0.5*500/900)
	}
	// Beyond the largest finite bound: that bound.
	slow, err := parseHistogram(strings.NewReader(histogramText(910, 960, 1010, 1100)), gatewayDurationMetric, want)
	if err != nil {
		t.Fatal(err)
	}
	if q := quantiles(bucketCounts{}, slow); q.P99 != 2.5 || q.Count != 1100 {
		t.Errorf("p99 in +Inf bucket = %+v, want 2.5 ms of 1100", q)
	}
	if q := quantiles(after, after); q.Count != 0 || q.P99 != 0 {
		t.Errorf("no new observations = %+v, want zero", q)
	}
	if _, err := parseHistogram(strings.NewReader("x 1\n"), gatewayDurationMetric, want); err == nil {
		t.Error("a metrics page without the histogram parsed")
	}
}

func TestCPUDeltas(t *testing.T) {
	before := map[string]float64{"machine": 100, "gateway": 10, "influx-writer-0": 1, "influx-writer-1": 2, "loadgen": 5}
	after := map[string]float64{"machine": 120, "gateway": 16, "influx-writer-0": 2, "influx-writer-1": 4, "loadgen": 8, "telegraf": 3}
	got := cpuDeltas(before, after)
	want := map[string]float64{"gateway": 6, "influx-writer": 3, "loadgen": 3, "others": 8}
	if len(got) != len(want) {
		t.Fatalf("cpuDeltas = %v, want %v (a process started meanwhile is left out)", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("cpuDeltas[%s] = %g, want %g", k, got[k], v)
		}
	}
}

func TestSummarizeAlerts(t *testing.T) {
	var samples []alertSample
	for i := 1; i <= 100; i++ {
		samples = append(samples, alertSample{pub: msDur(i), ws: msDur(i + 1), pubOK: true, wsOK: i != 50})
	}
	s := summarizeAlerts(samples)
	if s.Samples != 100 || s.Missed != 1 || s.PubSub.P50 != 50 || s.PubSub.P99 != 99 || s.WebSocket.P99 != 101 {
		t.Errorf("summarizeAlerts = %+v", s)
	}
}

func msDur(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
