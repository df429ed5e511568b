package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// latestCacheEnv is a latestCache on a hot cache in Redis, with a clock that stands still until
// advanced and a count of the reads that reached Redis.
type latestCacheEnv struct {
	t       *testing.T
	hot     *hotcache.Cache
	c       *latestCache
	advance func(time.Duration)
	fetches atomic.Int64
}

func newLatestCacheEnv(t *testing.T, maxAge time.Duration) *latestCacheEnv {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	hot, err := hotcache.New(rdb, prefix, 1, DefaultConfig().HotCache)
	if err != nil {
		t.Fatal(err)
	}
	e := &latestCacheEnv{t: t, hot: hot}
	clock, advance := fakeClock()
	e.advance = advance
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.c = newLatestCache(ctx, maxAge, func(ctx context.Context, dst []byte, id string) ([]byte, int, error) {
		e.fetches.Add(1)
		return hot.AppendLatest(ctx, dst, id)
	}, clock)
	return e
}

// write stores v as agent's latest cpu.usage in the hot cache, with a tag of pad bytes.
func (e *latestCacheEnv) write(agent string, v float64, pad int) {
	e.t.Helper()
	p := metric.Point{Measurement: "cpu", Tags: []metric.Tag{{Key: "pad", Value: strings.Repeat("x", pad)}},
		Fields: []metric.Field{{Key: "usage", Value: metric.Value{Kind: metric.KindFloat, F: v}}}, Time: time.Now().UnixNano()}
	if err := e.hot.Update(context.Background(), agent, []metric.Point{p}, time.Now()); err != nil {
		e.t.Fatal(err)
	}
}

// read returns what the cache answers for agent: the value of cpu.usage ("" when there is none).
func (e *latestCacheEnv) read(agent string) string {
	e.t.Helper()
	body, n, err := e.c.AppendLatest(context.Background(), []byte("prefix:"), agent)
	if err != nil {
		e.t.Fatal(err)
	}
	s, ok := strings.CutPrefix(string(body), "prefix:")
	if !ok {
		e.t.Fatalf("AppendLatest dropped what dst held: %q", body)
	}
	if n == 0 {
		if s != "[]" {
			e.t.Fatalf("AppendLatest = %q with 0 series", s)
		}
		return ""
	}
	_, after, ok := strings.Cut(s, `"value":`)
	if !ok {
		e.t.Fatalf("AppendLatest = %q, no value", s)
	}
	v, _, _ := strings.Cut(after, ",")
	return v
}

func (e *latestCacheEnv) wantFetches(want int64) {
	e.t.Helper()
	if got := e.fetches.Load(); got != want {
		e.t.Fatalf("reads of Redis so far = %d, want %d", got, want)
	}
}

// settle waits until the cache is refreshing nothing.
func (e *latestCacheEnv) settle() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.c.mu.Lock()
		busy := false
		for _, entry := range e.c.m {
			busy = busy || entry.refreshing
		}
		e.c.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("a background refresh did not end within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLatestReadCache: the latest-values read answers from memory for up to maxAge, refreshes
// an entry in the background (once) when it is read past maxAge/2, reads Redis when the entry is
// older than maxAge, keeps no empty answer, forgets a deleted agent, and holds at most maxBytes.
func TestLatestReadCache(t *testing.T) {
	t.Parallel()
	e := newLatestCacheEnv(t, time.Second)

	e.write("a", 1, 0)
	if got := e.read("a"); got != "1" {
		t.Fatalf("first read = %q, want 1", got)
	}
	e.wantFetches(1)
	e.write("a", 2, 0)
	if got := e.read("a"); got != "1" {
		t.Fatalf("read within maxAge/2 = %q, want 1 from memory", got)
	}
	e.wantFetches(1)

	// Past maxAge/2: the old answer at once, and one refresh however many reads there are.
	e.advance(600 * time.Millisecond)
	for range 20 {
		if got := e.read("a"); got != "1" && got != "2" {
			t.Fatalf("read past maxAge/2 = %q, want 1 or 2", got)
		}
	}
	e.settle()
	e.wantFetches(2)
	if got := e.read("a"); got != "2" {
		t.Fatalf("read after the refresh = %q, want 2", got)
	}
	e.wantFetches(2)

	// Older than maxAge: read from Redis before answering.
	e.write("a", 3, 0)
	e.advance(time.Second)
	if got := e.read("a"); got != "3" {
		t.Fatalf("read past maxAge = %q, want 3", got)
	}
	e.wantFetches(3)

	// An agent with nothing cached is asked every time; a forgotten agent is asked again.
	for range 2 {
		if got := e.read("quiet"); got != "" {
			t.Fatalf("read of a quiet agent = %q, want nothing", got)
		}
	}
	e.wantFetches(5)
	if err := e.hot.Forget(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	e.c.forget("a")
	if got := e.read("a"); got != "" {
		t.Fatalf("read after forget = %q, want nothing", got)
	}
	e.wantFetches(6)
	e.c.mu.Lock()
	if len(e.c.m) != 0 || e.c.bytes != 0 {
		t.Errorf("cache holds %d entries, %d bytes after forgetting all; want none", len(e.c.m), e.c.bytes)
	}
	e.c.mu.Unlock()

	// The clock goes back an hour: the entry from the future is read again and replaced, and the
	// new one answers.
	e.write("b", 7, 0)
	e.read("b")
	e.advance(-time.Hour)
	if got := e.read("b"); got != "7" {
		t.Fatalf("read after the clock went back = %q, want 7", got)
	}
	e.wantFetches(8)
	if got := e.read("b"); got != "7" {
		t.Fatalf("second read after the clock went back = %q, want 7", got)
	}
	e.wantFetches(8)
}

// TestLatestReadCacheForgetRace: a read that began before the agent was forgotten (a background
// refresh racing its delete) is not kept; one that began after is.
func TestLatestReadCacheForgetRace(t *testing.T) {
	t.Parallel()
	e := newLatestCacheEnv(t, time.Second)
	e.write("a", 5, 0)
	kept := func() bool {
		e.c.mu.Lock()
		defer e.c.mu.Unlock()
		_, ok := e.c.m["a"]
		return ok
	}
	before := e.c.now()
	e.advance(time.Millisecond)
	e.c.forget("a")
	e.c.store("a", e.c.fetchBody(t, "a"), 1, before)
	if kept() {
		t.Error("a read begun before forget was kept")
	}
	e.advance(time.Millisecond)
	if got := e.read("a"); got != "5" || !kept() {
		t.Errorf("a read begun after forget = %q, kept %v; want 5, kept", got, kept())
	}
	// The mark lasts maxAge, and a later forget prunes it.
	e.advance(time.Second)
	e.c.forget("other")
	e.c.mu.Lock()
	_, marked := e.c.gone["a"]
	e.c.mu.Unlock()
	if marked {
		t.Error("the forget mark of a outlived maxAge")
	}
}

// TestLatestReadCacheBytes: the cache keeps at most maxBytes of answers, making room by dropping
// the ones too old to answer from, and answers what does not fit from Redis.
func TestLatestReadCacheBytes(t *testing.T) {
	t.Parallel()
	e := newLatestCacheEnv(t, time.Second)
	agents := []string{"a", "b", "c", "d", "e"}
	for i, a := range agents {
		e.write(a, float64(i), 1000)
	}
	size := len(e.c.fetchBody(t, "a"))
	e.c.maxBytes = size*2 + size/2
	e.fetches.Store(0)

	held := func() (ids []string) {
		e.c.mu.Lock()
		defer e.c.mu.Unlock()
		n := 0
		for id, entry := range e.c.m {
			ids = append(ids, id)
			n += len(entry.body)
		}
		if n != e.c.bytes || n > e.c.maxBytes {
			t.Fatalf("entries hold %d bytes, the count says %d, the bound is %d", n, e.c.bytes, e.c.maxBytes)
		}
		return ids
	}
	e.read("a")
	e.read("b")
	if got := held(); len(got) != 2 {
		t.Fatalf("after reading a and b the cache holds %v, want both", got)
	}
	e.advance(time.Second) // a and b are now too old to answer from
	e.read("c")
	if got := held(); fmt.Sprint(got) != "[c]" {
		t.Fatalf("after a and b expired, reading c leaves %v, want [c]", got)
	}
	e.read("d")
	e.read("e") // no room: c and d are fresh
	if got := len(held()); got != 2 {
		t.Fatalf("the cache holds %d entries, want 2 (c, d)", got)
	}
	e.wantFetches(5)
	if got := e.read("e"); got != "4" {
		t.Fatalf("read of e = %q, want 4", got)
	}
	e.wantFetches(6) // e was not kept, so Redis again
	e.read("d")
	e.wantFetches(6)
}

// TestLatestReadCacheOff: with maxAge 0 every read asks Redis.
func TestLatestReadCacheOff(t *testing.T) {
	t.Parallel()
	e := newLatestCacheEnv(t, 0)
	e.write("a", 1, 0)
	e.read("a")
	e.write("a", 2, 0)
	if got := e.read("a"); got != "2" {
		t.Fatalf("second read = %q, want 2", got)
	}
	e.wantFetches(2)
}

// fetchBody is what the hot cache answers for id, without the cache.
func (c *latestCache) fetchBody(t *testing.T, id string) []byte {
	t.Helper()
	body, _, err := c.fetch(context.Background(), nil, id)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestLatestReadFromMemory: the gateway answers the latest-values read from its memory within
// LATEST_READ_MAX_AGE, and forgets a deleted agent at once.
func TestLatestReadFromMemory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.LatestReadMaxAge = time.Minute })
	admin := e.adminToken()
	a := e.register(admin, "mem")
	latest := func() resp {
		return e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID + "/metrics/latest", auth: bearer(admin)})
	}
	post := func(v int) {
		t.Helper()
		if r := e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey),
			body: fmt.Sprintf(`{"points":[{"measurement":"cpu","fields":{"usage_percent":%d}}]}`, v)}); r.status != 204 {
			t.Fatalf("ingest = %s", r)
		}
	}
	post(11)
	if r := latest(); r.status != 200 || !strings.Contains(string(r.body), `"value":11`) {
		t.Fatalf("latest = %s, want 11", r)
	}
	post(22)
	if r := latest(); r.status != 200 || !strings.Contains(string(r.body), `"value":11`) {
		t.Fatalf("latest within LATEST_READ_MAX_AGE = %s, want 11 from memory", r)
	}
	if r := e.do(req{method: "DELETE", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)}); r.status != 204 {
		t.Fatalf("delete = %s", r)
	}
	if r := latest(); r.status != 404 {
		t.Fatalf("latest of the deleted agent = %s, want 404", r)
	}
}
