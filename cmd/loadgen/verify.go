package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// verifyReport is what --verify found: whether InfluxDB came to hold every acknowledged point,
// and how fast values went from the first send to persisted.
type verifyReport struct {
	Complete        bool  `json:"complete"`
	AckedPoints     int64 `json:"acked_points"`
	AckedValues     int64 `json:"acked_values"`
	PersistedPoints int64 `json:"persisted_points"` // of the acknowledged range, per agent capped at what was acked
	PersistedValues int64 `json:"persisted_values"`
	LostPoints      int64 `json:"lost_points"` // acknowledged but not in InfluxDB when the wait ended
	// ExtraPoints are points in InfluxDB beyond the acknowledged ones: requests that failed on the
	// client side (timeout) after the server stored them. While it is not 0, a lost acknowledged
	// point could hide behind an extra one.
	ExtraPoints int64 `json:"extra_points"`
	// DrainS is the time from the last answer of the run until every acknowledged point was in
	// InfluxDB (or the wait gave up); EndToEndS the time from the first send.
	DrainS     float64 `json:"drain_s"`
	EndToEndS  float64 `json:"end_to_end_s"`
	ValuesPerS float64 `json:"values_per_s"` // acknowledged values / EndToEndS, when complete
	Polls      int     `json:"polls"`
}

// pollEvery is the pause between two counts while waiting.
const pollEvery = 200 * time.Millisecond

// verify waits, at most timeout, until InfluxDB holds every point of the ledger, each entry a
// request of points points. ids[a] is agent a's tag value; batch seq of an agent starts at the
// time base+seq*stamp. While waiting it counts only
// the newest 5% of the run's time range, which is cheap for InfluxDB and the last to arrive; once
// that is complete it counts the whole range.
func verify(ctx context.Context, q *influxQL, ids []string, ledger []uint64, points int, base time.Time, res runResult, timeout time.Duration, logger *slog.Logger) (*verifyReport, error) {
	per := int64(points)
	v := &verifyReport{
		AckedPoints: int64(len(ledger)) * per,
		AckedValues: int64(len(ledger)) * per * valuesPerPoint,
	}
	var maxSeq int64
	for _, e := range ledger {
		maxSeq = max(maxSeq, int64(e&(1<<40-1)))
	}
	tailFrom := maxSeq - maxSeq/20
	// want returns the acknowledged points per agent id with seq in [from, maxSeq].
	want := func(from int64) map[string]int64 {
		w := make(map[string]int64, len(ids))
		for _, e := range ledger {
			if int64(e&(1<<40-1)) >= from {
				w[ids[e>>40]] += per
			}
		}
		return w
	}
	tailWant, allWant := want(tailFrom), want(0)
	at := func(seq int64) int64 { return base.Add(time.Duration(seq) * stamp).UnixNano() }
	last := at(maxSeq) + (per-1)/pointsPerBatch // the newest request's last point

	// check counts [from, maxSeq] and compares; it fills v's totals when from is 0.
	check := func(from int64, w map[string]int64) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		got, err := q.counts(ctx, at(from), last)
		if err != nil {
			return false, err
		}
		v.Polls++
		complete := true
		var pts, vals, lost, extra int64
		for agent, n := range w {
			s := got[agent]
			pts += min(s.points, n)
			vals += min(s.values, n*valuesPerPoint)
			lost += max(0, n-s.points)
			extra += max(0, s.points-n)
			if s.points < n || s.values < n*valuesPerPoint {
				complete = false
			}
		}
		if from == 0 {
			v.PersistedPoints, v.PersistedValues, v.LostPoints, v.ExtraPoints = pts, vals, lost, extra
		}
		return complete, nil
	}

	if len(ledger) == 0 {
		v.Complete = true
		return v, nil
	}
	logger.Info("verifying: waiting until InfluxDB holds every acknowledged point", "points", v.AckedPoints, "timeout", timeout)
	deadline := time.Now().Add(timeout)
	tail := true
	for {
		var complete bool
		var err error
		if tail {
			complete, err = check(tailFrom, tailWant)
			if err == nil && complete {
				tail = false
				continue // the whole range at once
			}
		} else {
			complete, err = check(0, allWant)
		}
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("verifying: %w", ctx.Err())
			}
			logger.Warn("counting points in InfluxDB; retrying", "err", err)
		}
		if complete {
			v.Complete = true
			v.DrainS = now.Sub(res.end).Seconds()
			v.EndToEndS = now.Sub(res.start).Seconds()
			v.ValuesPerS = float64(v.AckedValues) / v.EndToEndS
			return v, nil
		}
		if now.After(deadline) {
			if tail {
				tail = false
				deadline = now // one count of the whole range for the totals, then give up
				continue
			}
			v.DrainS = now.Sub(res.end).Seconds()
			v.EndToEndS = now.Sub(res.start).Seconds()
			logger.Error("verifying: not every acknowledged point reached InfluxDB", "acked", v.AckedPoints, "persisted", v.PersistedPoints, "lost", v.LostPoints)
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("verifying: %w", ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}
