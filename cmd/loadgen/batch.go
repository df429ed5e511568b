package main

import (
	"strconv"
	"time"
)

// The shape of one agent request, as e2e/pipeline_test.go's batch(): six points (cpu, mem, disk,
// net, load, procs) with the tag host=h1 and five float fields a..e each, at one timestamp: 30
// values. Every request of a run gets its own timestamp, so every point of a run is distinct in
// InfluxDB (same measurement, tags and time would overwrite). A larger batch (--batch-points)
// cycles through the six measurements, the point i one nanosecond after point i-6, so that it
// stays in the same 300 series (50 agents) and its times stay below the next request's.
var measurements = [pointsPerBatch]string{"cpu", "mem", "disk", "net", "load", "procs"}

var fieldKeys = [valuesPerPoint]string{"a", "b", "c", "d", "e"}

// pointsPerBatch and valuesPerPoint describe one default agent request (untyped, unlike len of
// the arrays above, which they size).
const (
	pointsPerBatch = 6
	valuesPerPoint = 5
)

// maxBatchPoints keeps the points of one request within the stamp between two requests.
const maxBatchPoints = pointsPerBatch * int(stamp/time.Nanosecond)

// The bodies are appended by hand (strconv on a reused buffer) instead of through encoding/json or
// the InfluxDB client's point encoder: the load tool shares two cores with what it measures, so each
// request must cost it as little CPU as possible. The tests parse both forms with the gateway's own
// parsers.

// appendJSONBatch appends the gateway's JSON body for one request of n points at ts with values
// from v.
func appendJSONBatch(dst []byte, ts time.Time, v float64, n int) []byte {
	dst = append(dst, `{"points":[`...)
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"measurement":"`...)
		dst = append(dst, measurements[i%pointsPerBatch]...)
		dst = append(dst, `","tags":{"host":"h1"},"fields":{`...)
		for j, f := range fieldKeys {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = append(dst, f...)
			dst = append(dst, `":`...)
			dst = strconv.AppendFloat(dst, v+float64(j), 'g', -1, 64)
		}
		dst = append(dst, `},"time":"`...)
		dst = ts.Add(time.Duration(i/pointsPerBatch)).UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, `"}`...)
	}
	return append(dst, `]}`...)
}

// appendLineBatch appends the same request as InfluxDB line protocol, the way the gateway stores
// it (tag agent set, tags sorted, nanosecond time), for writing to InfluxDB directly.
func appendLineBatch(dst []byte, agent string, ts time.Time, v float64, n int) []byte {
	for i := range n {
		dst = appendLine(dst, measurements[i%pointsPerBatch], agent, ts.UnixNano()+int64(i/pointsPerBatch), v)
	}
	return dst
}

// appendLine appends one point of measurement m for agent at ns with values from v. agent must
// need no escaping (the load tool's names and the gateway's ids do not).
func appendLine(dst []byte, m, agent string, ns int64, v float64) []byte {
	dst = append(dst, m...)
	dst = append(dst, ",agent="...)
	dst = append(dst, agent...)
	dst = append(dst, ",host=h1 "...)
	for j, f := range fieldKeys {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, f...)
		dst = append(dst, '=')
		dst = strconv.AppendFloat(dst, v+float64(j), 'g', -1, 64)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ns, 10)
	return append(dst, '\n')
}
