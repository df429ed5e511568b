package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// agent is a registered agent as the load sees it.
type agent struct {
	ID           string `json:"id"`
	APIKey       string `json:"api_key"`
	index        int
	lineProtocol bool // posts line protocol to /api/v2/write, else JSON
}

// Every request of agent a is batch seq: seriesPerBatch points of measurement "fault", tag s=0..3,
// field v=seq, all at base+seq*tick. A point is identified by (agent, s, time).
const (
	seriesPerBatch = 4
	tick           = time.Millisecond
	measurement    = "fault"
)

// verdict is what one request's answer says about its points.
type verdict uint8

const (
	sent    verdict = iota // no answer yet
	acked                  // 2xx: every point must be stored exactly once
	refused                // a definite refusal (4xx, 429, a 503 before the write): none may be stored
	unknown                // a transport error or a 503 that may come after the write: either way
)

// request is one request of the run, as the ledger keeps it.
type request struct {
	agent      int
	seq        int64
	sentAt     time.Time
	doneAt     time.Time
	status     int // 0: transport error
	retryAfter bool
	body       string // the error answer, cut
	verdict    verdict
}

// load is the agents' traffic: each agent sends a batch, waits pause (or the Retry-After it was
// given, capped at a second so that faults stay busy), and sends the next, until stopped. Batches
// are not resent: each is one entry of the ledger.
type load struct {
	gateway string
	agents  []agent
	base    time.Time
	pause   time.Duration
	hc      *http.Client

	mu       sync.Mutex
	requests []*request
	stop     chan struct{}
	wg       sync.WaitGroup
}

func newLoad(gateway string, agents []agent, pause time.Duration) *load {
	return &load{
		gateway: gateway, agents: agents, pause: pause,
		// Timestamps an hour back: inside every retention and accepted as recent.
		base: time.Now().Add(-time.Hour).Truncate(time.Second),
		hc: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: len(agents) + 4,
		}},
		stop: make(chan struct{}),
	}
}

// start launches one sender per agent.
func (l *load) start() {
	for _, a := range l.agents {
		l.wg.Go(func() { l.run(a) })
	}
}

// finish stops the senders and waits for their last answers.
func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
	l.hc.CloseIdleConnections()
}

func (l *load) run(a agent) {
	for seq := int64(0); ; seq++ {
		select {
		case <-l.stop:
			return
		default:
		}
		r := l.send(a, seq)
		wait := l.pause
		if r.retryAfter && (r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable) {
			wait = max(wait, 200*time.Millisecond)
		}
		if r.status == 0 {
			wait = max(wait, 100*time.Millisecond) // the gateway is down: do not spin
		}
		select {
		case <-l.stop:
			return
		case <-time.After(wait):
		}
	}
}

// at is the timestamp of batch seq.
func (l *load) at(seq int64) int64 { return l.base.Add(time.Duration(seq) * tick).UnixNano() }

func (l *load) body(a agent, seq int64) []byte {
	ts := l.at(seq)
	var b bytes.Buffer
	if a.lineProtocol {
		for s := range seriesPerBatch {
			fmt.Fprintf(&b, "%s,s=%d v=%d,lp=true %d\n", measurement, s, seq, ts)
		}
		return b.Bytes()
	}
	b.WriteString(`{"points":[`)
	for s := range seriesPerBatch {
		if s > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"measurement":%q,"tags":{"s":"%d"},"fields":{"v":%d,"lp":false},"time":%d}`, measurement, s, seq, ts)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func (l *load) send(a agent, seq int64) *request {
	r := &request{agent: a.index, seq: seq, sentAt: time.Now()}
	l.mu.Lock()
	l.requests = append(l.requests, r)
	l.mu.Unlock()

	var url, auth, ctype string
	if a.lineProtocol {
		url, auth, ctype = l.gateway+"/api/v2/write?precision=ns", "Token "+a.APIKey, "text/plain; charset=utf-8"
	} else {
		url, auth, ctype = l.gateway+"/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey, "application/json"
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(l.body(a, seq)))
	if err == nil {
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", ctype)
		var resp *http.Response
		if resp, err = l.hc.Do(req); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			r.status, r.retryAfter, r.body = resp.StatusCode, resp.Header.Get("Retry-After") != "", string(b)
		}
	}
	if err != nil {
		r.body = err.Error()
	}
	r.verdict = classify(r.status, r.body)
	l.mu.Lock()
	r.doneAt = time.Now()
	l.mu.Unlock()
	return r
}

// classify tells what an answer says about its points. A 503 the gateway gives before writing
// (the backlog over its bound, Redis out of memory) is a definite refusal; other 503s and
// transport errors may come after the write reached Redis, so either outcome is allowed.
func classify(status int, body string) verdict {
	switch {
	case status >= 200 && status < 300:
		return acked
	case status == http.StatusServiceUnavailable &&
		(strings.Contains(body, "pipeline is behind") || strings.Contains(body, "out of memory")):
		return refused
	case status >= 400 && status < 500:
		return refused
	default:
		return unknown
	}
}

// snapshot returns the requests answered so far.
func (l *load) snapshot() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]request, 0, len(l.requests))
	for _, r := range l.requests {
		if !r.doneAt.IsZero() {
			out = append(out, *r)
		}
	}
	return out
}

// waitAcked waits until at least n more requests have been acknowledged than when it was called
// (the load is flowing), at most timeout; it reports whether they were.
func (l *load) waitAcked(n int, timeout time.Duration) bool {
	count := func() int {
		k := 0
		for _, r := range l.snapshot() {
			if r.verdict == acked {
				k++
			}
		}
		return k
	}
	from := count()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if count() >= from+n {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// statusCounts formats the answers of reqs by status: "204:1200 503:40 err:3".
func statusCounts(reqs []request) string {
	counts := map[int]int{}
	for _, r := range reqs {
		counts[r.status]++
	}
	keys := make([]int, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "err"
		}
		parts = append(parts, fmt.Sprintf("%s:%d", name, counts[k]))
	}
	return strings.Join(parts, " ")
}
