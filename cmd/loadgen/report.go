package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"time"
)

// report is what a run prints as JSON. Rates count 2xx answers completed after the warm-up,
// divided by the time from the end of the warm-up to the last answer.
type report struct {
	Label        string  `json:"label"`
	Round        int     `json:"round,omitempty"`
	Mode         string  `json:"mode"`
	Target       string  `json:"target,omitempty"`
	Agents       int     `json:"agents"`
	Concurrency  int     `json:"concurrency"`
	PointsPerReq int     `json:"points_per_request"`
	Rate         float64 `json:"offered_rate,omitempty"` // requests/s offered (--rate); 0: closed loop
	DurationS    float64 `json:"duration_s"`
	MeasuredS    float64 `json:"measured_s"` // after the warm-up

	Requests     int64   `json:"requests"`       // sent, warm-up included
	OK           int64   `json:"ok"`             // 2xx, warm-up included
	PointsAcked  int64   `json:"points_acked"`   // points of 2xx answers, warm-up included
	RequestsPerS float64 `json:"requests_per_s"` // 2xx per second after the warm-up
	PointsPerS   float64 `json:"points_per_s"`
	ValuesPerS   float64 `json:"values_per_s"`

	LatencyMS latencyMS        `json:"latency_ms"` // of 2xx answers after the warm-up
	Non2xx    map[string]int64 `json:"non_2xx"`    // by status; "error" for transport failures

	// ClientCPUSeconds is the CPU the load tool itself used while sending: on a shared machine it
	// is taken from what is measured.
	ClientCPUSeconds float64 `json:"client_cpu_s"`

	Verify *verifyReport `json:"verify,omitempty"`
}

type latencyMS struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func newReport(cfg config, res runResult, pointsPerReq int) *report {
	rep := &report{
		Label:        cfg.label,
		Round:        cfg.round,
		Mode:         cfg.mode,
		Agents:       cfg.agents,
		Concurrency:  cfg.concurrency,
		PointsPerReq: pointsPerReq,
		Rate:         cfg.rate,
		DurationS:    cfg.duration.Seconds(),
		Non2xx:       map[string]int64{},
	}
	if cfg.mode == "load" {
		rep.Target = cfg.target
	}
	var lat []time.Duration
	var ok int64
	for _, w := range res.workers {
		rep.Requests += w.sent
		rep.OK += w.okAll
		ok += w.ok
		lat = append(lat, w.latencies...)
		for k, v := range w.statuses {
			rep.Non2xx[k] += v
		}
	}
	rep.PointsAcked = rep.OK * int64(pointsPerReq)
	measured := res.end.Sub(res.warmEnd)
	rep.MeasuredS = measured.Seconds()
	if measured > 0 {
		rep.RequestsPerS = float64(ok) / measured.Seconds()
		rep.PointsPerS = rep.RequestsPerS * float64(pointsPerReq)
		rep.ValuesPerS = rep.PointsPerS * valuesPerPoint
	}
	rep.LatencyMS = percentiles(lat)
	return rep
}

// percentiles returns the nearest-rank percentiles of lat in milliseconds; lat is sorted in place.
func percentiles(lat []time.Duration) latencyMS {
	if len(lat) == 0 {
		return latencyMS{}
	}
	slices.Sort(lat)
	at := func(p float64) float64 {
		i := int(p*float64(len(lat))+0.999999) - 1 // nearest rank: ceil(p*n)-1
		i = max(0, min(i, len(lat)-1))
		return ms(lat[i])
	}
	return latencyMS{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(lat[len(lat)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// human is the report in one line.
func (r *report) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %.0f req/s, %.0f points/s, %.0f values/s; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms; %d requests, %d ok",
		r.Label, r.RequestsPerS, r.PointsPerS, r.ValuesPerS, r.LatencyMS.P50, r.LatencyMS.P90, r.LatencyMS.P99, r.Requests, r.OK)
	if len(r.Non2xx) == 0 {
		b.WriteString(", non-2xx: none")
	} else {
		b.WriteString(", non-2xx:")
		for _, k := range slices.Sorted(maps.Keys(r.Non2xx)) {
			fmt.Fprintf(&b, " %s×%d", k, r.Non2xx[k])
		}
	}
	fmt.Fprintf(&b, "; loadgen CPU %.1f s", r.ClientCPUSeconds)
	if v := r.Verify; v != nil {
		if v.Complete {
			fmt.Fprintf(&b, "; end to end: %.0f values/s persisted (all %d acked points in InfluxDB %.1f s after the last send), lost %d",
				v.ValuesPerS, v.AckedPoints, v.DrainS, v.LostPoints)
		} else {
			fmt.Fprintf(&b, "; end to end: INCOMPLETE after %.0f s: %d of %d acked points in InfluxDB, lost %d",
				v.DrainS, v.PersistedPoints, v.AckedPoints, v.LostPoints)
		}
	}
	return b.String()
}

// cpuTime is the user plus system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
