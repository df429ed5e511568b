package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

// benchPoints is a small agent batch as a host agent sends it every few seconds: 6 points (cpu,
// mem, disk, diskio, net, system) with 30 values in all, without times (the gateway stamps
// them). Each is a measurement, its tags and its fields as line protocol without the type
// suffix: the JSON form sends every value as a number, the line-protocol form adds "i" to the
// integer fields (those listed in benchInts).
var benchPoints = []struct{ measurement, tags, fields string }{
	{"cpu", "cpu=cpu-total,host=web-1", "usage_user=12.5,usage_system=3.25,usage_idle=83.1,usage_iowait=0.4,usage_percent=16.9"},
	{"mem", "host=web-1", "total=16777216000,used=8388608000,free=4194304000,available=8388608000,used_percent=50.5"},
	{"disk", "device=sda1,host=web-1,path=/", "total=512000000000,used=256000000000,free=256000000000,used_percent=50.5,inodes_used=1200000"},
	{"diskio", "host=web-1,name=sda", "reads=123456,writes=654321,read_bytes=9876543210,write_bytes=1234567890,io_time=4567"},
	{"net", "host=web-1,interface=eth0", "bytes_sent=123456789,bytes_recv=987654321,packets_sent=123456,packets_recv=654321,err_in=0"},
	{"system", "host=web-1", "load1=0.52,load5=0.61,load15=0.7,uptime=864000,n_cpus=8"},
}

// benchLineBody is benchPoints as line protocol (Telegraf's outputs.influxdb_v2).
func benchLineBody() []byte {
	var b strings.Builder
	for _, p := range benchPoints {
		b.WriteString(p.measurement + "," + p.tags + " ")
		for i, f := range strings.Split(p.fields, ",") {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(f)
			if !strings.Contains(f, ".") {
				b.WriteByte('i')
			}
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// benchJSONBody is benchPoints as the gateway's JSON body.
func benchJSONBody() []byte {
	var pts []string
	for _, p := range benchPoints {
		var tags, fields []string
		for _, t := range strings.Split(p.tags, ",") {
			k, v, _ := strings.Cut(t, "=")
			tags = append(tags, fmt.Sprintf("%q:%q", k, v))
		}
		for _, f := range strings.Split(p.fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			fields = append(fields, fmt.Sprintf("%q:%s", k, v))
		}
		pts = append(pts, fmt.Sprintf(`{"measurement":%q,"tags":{%s},"fields":{%s}}`,
			p.measurement, strings.Join(tags, ","), strings.Join(fields, ",")))
	}
	return []byte(`{"points":[` + strings.Join(pts, ",") + `]}`)
}

// processCPU is the CPU time this process has used (user and system, every thread), in
// nanoseconds. On a shared machine a benchmark's ns/op is mostly other processes' load; its
// CPU per operation is not.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkIngest measures an ingest request through the gateway's whole Echo handler chain
// (every middleware, routing, the ingest handler) against the real Redis and PostgreSQL of the
// test environment: key lookup (cached), body read, parse and validation, rate limit, field
// types, encoding, the stream append and the hot-cache refresh. Only the TCP transport is left
// out (httptest). "line" is POST /api/v2/write, "json" POST /api/v1/agents/{id}/metrics.
// cpu-ns/op is the test process's CPU time per request (Redis's own is not in it).
func BenchmarkIngest(b *testing.B) {
	for _, route := range []string{"line", "json"} {
		b.Run(route, func(b *testing.B) {
			e := newEnv(b, func(c *Config) {
				c.AgentRatePointsPerSec = 1 << 30
				c.AgentRateBurst = 1 << 30
				c.Backlog.Max = 1 << 40
			})
			a := e.register(e.adminToken(), "bench")
			body, path, auth, ctype := benchLineBody(), "/api/v2/write?bucket=metrics&precision=ns", "Token "+a.APIKey, "text/plain; charset=utf-8"
			if route == "json" {
				body, path, auth, ctype = benchJSONBody(), "/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey, "application/json"
			}
			h := e.g.Handler()
			serve := func() {
				r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
				r.Header.Set("Content-Type", ctype)
				r.Header.Set("Authorization", auth)
				r.Header.Set("User-Agent", "Telegraf/1.30.3 Go/1.22.1")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusNoContent {
					b.Fatalf("ingest = %d %s", w.Code, w.Body)
				}
			}
			serve() // warm the key cache, the field types and the script cache

			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				cpu := processCPU()
				for b.Loop() {
					serve()
				}
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(b.N)*30/b.Elapsed().Seconds(), "values/s")
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				b.SetParallelism(4)
				cpu := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						serve()
					}
				})
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(b.N)*30/b.Elapsed().Seconds(), "values/s")
			})
		})
	}
}
