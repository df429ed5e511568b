package faults

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// result is what a scenario's checker found, one line of the table.
type result struct {
	scenario       string
	requests       int
	sent           int // points sent
	acked          int // points acknowledged (2xx)
	found          int // acknowledged points found in InfluxDB
	lost           int // acknowledged points not found
	duplicated     int // acknowledged points found more than once, or with another batch's value
	refusedPresent int // definitely refused points found anyway
	unknownPresent int // points of ambiguous answers (transport error, 503) found: allowed
	strangers      int // points found that no request sent
	missingRetry   int // 429/503 answers without Retry-After
	statuses       string
	faultStatuses  string        // answers to requests sent during the fault
	recovery       time.Duration // from the fault's end to the first 2xx of every agent; -1: no fault
	drain          time.Duration // from the end of the load until the groups' lag was 0
	extra          string
	problems       []string // what breaks the guarantees; the scenario fails with them
}

func (r result) line() string {
	rec := "-"
	if r.recovery >= 0 {
		rec = r.recovery.Round(10 * time.Millisecond).String()
	}
	s := fmt.Sprintf("%-22s sent %7d acked %7d found %7d lost %d dup %d refused-present %d unknown-present %d | answers %s | during fault %s | no-Retry-After %d | recovery %s drain %s",
		r.scenario, r.sent, r.acked, r.found, r.lost, r.duplicated, r.refusedPresent, r.unknownPresent,
		r.statuses, r.faultStatuses, r.missingRetry, rec, r.drain.Round(10*time.Millisecond))
	if r.extra != "" {
		s += " | " + r.extra
	}
	return s
}

// fault is the window in which the scenario's fault was in effect.
type fault struct{ begin, end time.Time }

// check compares the ledger of l with InfluxDB after the pipeline has drained, and fails t for
// every acknowledged point lost or duplicated, every refused point present, and every 429/503
// without Retry-After. f may be zero (no fault: the soak).
func (c *cluster) check(t *testing.T, name string, l *load, f fault, drain time.Duration) result {
	t.Helper()
	reqs := l.snapshot()
	res := result{scenario: name, requests: len(reqs), statuses: statusCounts(reqs), drain: drain, recovery: -1}

	// The ledger: per agent, per seq, the verdict of its request.
	type key struct {
		agent int
		seq   int64
	}
	ledger := make(map[key]verdict, len(reqs))
	var during []request
	for _, r := range reqs {
		ledger[key{r.agent, r.seq}] = r.verdict
		res.sent += seriesPerBatch
		if r.verdict == acked {
			res.acked += seriesPerBatch
		}
		if (r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable) && !r.retryAfter {
			res.missingRetry++
		}
		if !f.begin.IsZero() && !r.sentAt.Before(f.begin) && r.sentAt.Before(f.end) {
			during = append(during, r)
		}
	}
	res.faultStatuses = statusCounts(during)
	if res.faultStatuses == "" {
		res.faultStatuses = "-"
	}
	if !f.end.IsZero() {
		first := map[int]time.Time{}
		for _, r := range reqs {
			if r.verdict == acked && r.sentAt.After(f.end) {
				if cur, ok := first[r.agent]; !ok || r.doneAt.Before(cur) {
					first[r.agent] = r.doneAt
				}
			}
		}
		for _, at := range first {
			res.recovery = max(res.recovery, at.Sub(f.end))
		}
		if len(first) < len(l.agents) {
			res.problems = append(res.problems, fmt.Sprintf("only %d of %d agents had a request acknowledged after the fault ended", len(first), len(l.agents)))
		}
	}

	// What InfluxDB holds: every point of the measurement, by agent and series.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	series, err := influxql.Client{URL: c.influxd.URL()}.Query(ctx, database, "",
		`SELECT "v" FROM "`+measurement+`" GROUP BY "agent", "s"`)
	if err != nil {
		t.Fatalf("%s: reading back the points: %v", name, err)
	}
	byID := map[string]int{}
	for _, a := range l.agents {
		byID[a.ID] = a.index
	}
	type point struct {
		key
		s string
	}
	seen := map[point]int{}
	for _, s := range series {
		ai, ok := byID[s.Tags["agent"]]
		if !ok {
			res.strangers += len(s.Values)
			continue
		}
		for _, row := range s.Values {
			ts, _ := row[0].(float64) // epoch ns as a JSON number: exact to the millisecond tick
			v, _ := row[1].(float64)
			seq := int64(math.Round((ts - float64(l.base.UnixNano())) / float64(tick)))
			k := key{ai, seq}
			vd, sentIt := ledger[k]
			if !sentIt {
				res.strangers++
				continue
			}
			if int64(v) != seq {
				res.duplicated++ // another write at this point's time: not the acknowledged point
				continue
			}
			p := point{k, s.Tags["s"]}
			seen[p]++
			switch {
			case vd == refused:
				res.refusedPresent++
			case vd == unknown || vd == sent:
				res.unknownPresent++
			case seen[p] == 1:
				res.found++
			default:
				res.duplicated++
			}
		}
	}
	res.lost = res.acked - res.found
	if res.lost != 0 || res.duplicated != 0 || res.refusedPresent != 0 || res.strangers != 0 || res.missingRetry != 0 {
		res.problems = append(res.problems, fmt.Sprintf("%d acknowledged points lost, %d duplicated, %d refused points present, %d points nobody sent, %d 429/503 answers without Retry-After",
			res.lost, res.duplicated, res.refusedPresent, res.strangers, res.missingRetry))
		var samples []string
		for _, r := range reqs {
			if r.status != 0 && r.status/100 != 2 && len(samples) < 5 {
				samples = append(samples, fmt.Sprintf("%d %s", r.status, strings.TrimSpace(r.body)))
			}
		}
		t.Logf("%s: sample error answers: %q", name, samples)
	}
	if res.acked == 0 {
		res.problems = append(res.problems, "no request was acknowledged: the load did not run")
	}
	return res
}

// report adds the scenario's line to the table and logs it.
func report(t *testing.T, r result) {
	t.Helper()
	for _, p := range r.problems {
		t.Errorf("%s: %s", r.scenario, p)
	}
	line := r.line()
	t.Log(line)
	table.Lock()
	table.lines = append(table.lines, line)
	table.Unlock()
}
