package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/keycache"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// entry is one decoded stream entry.
type entry struct {
	stream  string
	payload string
	meta    map[string]string
}

// entries returns every entry of every metrics stream of the env.
func (e *env) entries() []entry {
	e.t.Helper()
	var out []entry
	for _, key := range stream.StreamKeys(e.prefix, e.cfg.Publish.Shards) {
		msgs, err := e.rdb.XRange(context.Background(), key, "-", "+").Result()
		if err != nil {
			e.t.Fatalf("XRANGE %s: %v", key, err)
		}
		for _, m := range msgs {
			msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(m.Values)
			if err != nil {
				e.t.Fatalf("decoding entry %s of %s: %v", m.ID, key, err)
			}
			out = append(out, entry{stream: key, payload: string(msg.Payload), meta: msg.Metadata})
		}
	}
	return out
}

// streamLen is the number of entries in all metrics streams together.
func (e *env) streamLen() int64 {
	e.t.Helper()
	var n int64
	for _, key := range stream.StreamKeys(e.prefix, e.cfg.Publish.Shards) {
		l, err := e.rdb.XLen(context.Background(), key).Result()
		if err != nil {
			e.t.Fatalf("XLEN %s: %v", key, err)
		}
		n += l
	}
	return n
}

// hotKeys lists the hot-cache keys of the env.
func (e *env) hotKeys() []string {
	e.t.Helper()
	keys, err := e.rdb.Keys(context.Background(), e.prefix+"hot:*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return keys
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestIngestJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "json-host")

	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	body := fmt.Sprintf(`{"points":[
		{"measurement":"cpu","tags":{"core":"0","agent":"someone-else"},"fields":{"usage_percent":12.5,"idle":true,"state":"ok"},"time":%q},
		{"measurement":"mem","fields":{"used":1024}}
	]}`, ts.Format(time.RFC3339Nano))
	before := time.Now()
	for _, r := range []resp{
		e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: body}),
		e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: gzipped(t, []byte(body)),
			headers: map[string]string{"Content-Encoding": "gzip"}}),
	} {
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("POST metrics = %s, want 204 without body", r)
		}
	}
	after := time.Now()

	got := e.entries()
	if len(got) != 2 {
		t.Fatalf("stream entries = %d, want 2", len(got))
	}
	wantStream := stream.StreamKeys(e.prefix, 2)[stream.ShardFor(a.ID, 2)]
	for i, en := range got {
		if en.stream != wantStream {
			t.Errorf("entry %d on %s, want the agent's shard %s", i, en.stream, wantStream)
		}
		recv, err := strconv.ParseInt(en.meta[stream.MetaReceivedAt], 10, 64)
		if err != nil || recv < before.UnixNano() || recv > after.UnixNano() {
			t.Errorf("entry %d received_at = %q, want a ns time of the request", i, en.meta[stream.MetaReceivedAt])
		}
		if en.meta[stream.MetaAgent] != a.ID || en.meta[stream.MetaPoints] != "2" {
			t.Errorf("entry %d metadata = %v, want agent %s and points 2", i, en.meta, a.ID)
		}
		// The client's agent tag is replaced; the point without a time is stamped with the
		// time the gateway received it.
		want := fmt.Sprintf("cpu,agent=%s,core=0 idle=true,state=\"ok\",usage_percent=12.5 %d\nmem,agent=%s used=1024 %d\n",
			a.ID, ts.UnixNano(), a.ID, recv)
		if en.payload != want {
			t.Errorf("entry %d payload =\n%q\nwant\n%q", i, en.payload, want)
		}
	}
}

func TestIngestLineProtocol(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "telegraf-host")

	sec := time.Now().Add(-time.Minute).Unix()
	lp := fmt.Sprintf("# comment\ncpu,host=h1,agent=evil usage=1.5,count=3i,up=t %d\n\ndisk,path=/var\\ log free=10i %d\n", sec, sec+1)
	r := e.do(req{method: "POST", path: "/api/v2/write?bucket=other&org=someone&precision=s", auth: "Token " + a.APIKey,
		body: gzipped(t, []byte(lp)), contentType: "text/plain; charset=utf-8", headers: map[string]string{"Content-Encoding": "gzip"}})
	if r.status != http.StatusNoContent {
		t.Fatalf("POST /api/v2/write = %s, want 204", r)
	}
	// Bearer works too, and no precision means nanoseconds.
	r = e.do(req{method: "POST", path: "/api/v2/write", auth: bearer(a.APIKey), body: fmt.Sprintf("net rx=1i %d", sec*1e9), contentType: "text/plain"})
	if r.status != http.StatusNoContent {
		t.Fatalf("POST /api/v2/write with Bearer = %s, want 204", r)
	}
	got := e.entries()
	if len(got) != 2 {
		t.Fatalf("stream entries = %d, want 2", len(got))
	}
	want := []string{
		fmt.Sprintf("cpu,agent=%s,host=h1 count=3i,up=true,usage=1.5 %d\ndisk,agent=%s,path=/var\\ log free=10i %d\n", a.ID, sec*1e9, a.ID, (sec+1)*1e9),
		fmt.Sprintf("net,agent=%s rx=1i %d\n", a.ID, sec*1e9),
	}
	var payloads []string
	for _, en := range got {
		payloads = append(payloads, en.payload)
	}
	if strings.Join(payloads, "|") != strings.Join(want, "|") {
		t.Errorf("payloads =\n%q\nwant\n%q", payloads, want)
	}
}

// TestIngestRejects sends every kind of bad request: each gets its status with a message naming
// the problem, and nothing reaches the stream or the hot cache.
func TestIngestRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.MaxPoints = 3
		c.AgentRateBurst = 3
		c.MaxBodyBytes = 64 << 10
	})
	admin := e.adminToken()
	a := e.register(admin, "bad-host")
	b := e.register(admin, "other-host")
	jsonPath := "/api/v1/agents/" + a.ID + "/metrics"
	old := time.Now().Add(-30 * 24 * time.Hour)

	type tc struct {
		name   string
		r      req
		status int
		msg    string
	}
	js := func(name, body string, msg string) tc {
		return tc{name, req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: body}, 400, msg}
	}
	lp := func(name, body string, msg string) tc {
		return tc{name, req{method: "POST", path: "/api/v2/write", auth: "Token " + a.APIKey, body: body, contentType: "text/plain"}, 400, msg}
	}
	good := `{"points":[{"measurement":"cpu","fields":{"v":1}}]}`
	tests := []tc{
		js("null field", `{"points":[{"measurement":"cpu","fields":{"v":null}}]}`, `point 0: field "v": null is not allowed`),
		js("wrong type of tag", `{"points":[{"measurement":"cpu","tags":{"a":1},"fields":{"v":1}}]}`, `point 0: tag "a": value must be a string`),
		js("wrong type of time", `{"points":[{"measurement":"cpu","fields":{"v":1},"time":true}]}`, "point 0: time must be"),
		js("out of range number", `{"points":[{"measurement":"cpu","fields":{"v":1e999}}]}`, "out of float64 range"),
		js("missing fields", `{"points":[{"measurement":"cpu","fields":{"v":1}},{"measurement":"cpu"}]}`, "point 1: has no fields"),
		js("empty batch", `{"points":[]}`, "no points"),
		js("empty body", ``, "no points"),
		js("invalid UTF-8", "{\"points\":[{\"measurement\":\"c\xffpu\",\"fields\":{\"v\":1}}]}", "invalid UTF-8"),
		js("unknown key", `{"points":[{"measurement":"cpu","fields":{"v":1}}],"extra":1}`, `unknown key "extra"`),
		js("duplicate key", `{"points":[{"measurement":"cpu","measurement":"mem","fields":{"v":1}}]}`, `duplicate key "measurement"`),
		js("trailing data", good+` {}`, "trailing data"),
		js("long name", `{"points":[{"measurement":"`+strings.Repeat("m", 300)+`","fields":{"v":1}}]}`, "exceeds 256 bytes"),
		js("too many points", `{"points":[`+strings.Repeat(`{"measurement":"a","fields":{"v":1}},`, 3)+`{"measurement":"a","fields":{"v":1}}]}`, "too many points"),
		js("too many tags", `{"points":[{"measurement":"cpu","tags":`+manyLabels(65)+`,"fields":{"v":1}}]}`, "tags"),
		js("reserved measurement", `{"points":[{"measurement":"_cpu","fields":{"v":1}}]}`, "reserved"),
		js("reserved field", `{"points":[{"measurement":"cpu","fields":{"time":1}}]}`, `field key "time" is reserved`),
		js("time too old", fmt.Sprintf(`{"points":[{"measurement":"cpu","fields":{"v":1},"time":%q}]}`, old.Format(time.RFC3339)), "in the past"),
		js("time too new", fmt.Sprintf(`{"points":[{"measurement":"cpu","fields":{"v":1},"time":%d}]}`, time.Now().Add(time.Hour).UnixNano()), "future"),
		lp("NaN", "cpu v=NaN", "line 1"),
		lp("escaping", "cpu v=1\ncpu,=x v=1", "line 2"),
		lp("bad timestamp", "cpu v=1 12ab", "invalid timestamp"),
		lp("unterminated string", `cpu v="open`, "closing quote"),
		lp("duplicate field", "cpu v=1i,v=2i", `duplicate field key "v"`),
		lp("time too old", fmt.Sprintf("cpu v=1 %d", old.UnixNano()), "in the past"),
		lp("empty", "\n# only a comment\n", "no points"),
		lp("too many points", "a v=1\na v=1\na v=1\na v=1", "too many points"),
		{"bad precision", req{method: "POST", path: "/api/v2/write?precision=h", auth: "Token " + a.APIKey, body: "cpu v=1"}, 400, `precision "h"`},
		{"bad gzip", req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: "not gzip", headers: map[string]string{"Content-Encoding": "gzip"}}, 400, "invalid gzip"},
		{"truncated gzip", req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: gzipped(t, []byte(good))[:20], headers: map[string]string{"Content-Encoding": "gzip"}}, 400, "invalid gzip"},

		{"no key", req{method: "POST", path: jsonPath, body: good}, 401, "missing agent key"},
		{"unknown key", req{method: "POST", path: jsonPath, auth: bearer("amk_" + strings.Repeat("A", 43)), body: good}, 401, "invalid agent key"},
		{"malformed key", req{method: "POST", path: jsonPath, auth: bearer("letmein"), body: good}, 401, "invalid agent key"},
		{"session token as key", req{method: "POST", path: jsonPath, auth: bearer(admin), body: good}, 401, "invalid agent key"},
		{"Token scheme on JSON route", req{method: "POST", path: jsonPath, auth: "Token " + a.APIKey, body: good}, 401, `Authorization scheme "Token" is not accepted here, want Bearer`},
		{"key of another agent", req{method: "POST", path: "/api/v1/agents/" + b.ID + "/metrics", auth: bearer(a.APIKey), body: good}, 403, "belongs to another agent"},
		{"not JSON", req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: good, contentType: "text/plain"}, 415, "Content-Type"},
		{"brotli", req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: good, headers: map[string]string{"Content-Encoding": "br"}}, 415, `"br"`},
		{"body too large", req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: `{"points":[` + strings.Repeat(" ", 70<<10) + `]}`}, 413, "exceeds 65536 bytes"},
		{"body too large, chunked", req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: io.MultiReader(strings.NewReader(`{"points":[`), strings.NewReader(strings.Repeat(" ", 70<<10)))}, 413, "exceeds 65536 bytes"},
		{"gzip bomb", req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: gzipped(t, append([]byte(`{"points":[`), bytes.Repeat([]byte(" "), 1<<20)...)),
			headers: map[string]string{"Content-Encoding": "gzip"}}, 413, "decompressed request body exceeds 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.refused(t, tt.r.method+" "+tt.r.path, tt.r, tt.status, tt.msg)
		})
	}
	if n := e.streamLen(); n != 0 {
		t.Errorf("after only bad requests the streams hold %d entries, want 0: %v", n, e.entries())
	}
	if keys := e.hotKeys(); len(keys) != 0 {
		t.Errorf("after only bad requests the hot cache holds %v, want nothing", keys)
	}
	// The same agent's good request still goes through.
	if r := e.do(req{method: "POST", path: jsonPath, auth: bearer(a.APIKey), body: good}); r.status != http.StatusNoContent {
		t.Errorf("good request after the bad ones = %s, want 204", r)
	}
}

func TestIngestRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.AgentRatePointsPerSec = 1
		c.AgentRateBurst = 10
		c.MaxPoints = 10
	})
	a := e.register(e.adminToken(), "chatty")
	t.Cleanup(func() { e.rdb.Del(context.Background(), ingestredis.RateKey(e.prefix, 2, a.ID)) })
	six := `{"points":[` + strings.TrimSuffix(strings.Repeat(`{"measurement":"m","fields":{"v":1}},`, 6), ",") + `]}`
	path := "/api/v1/agents/" + a.ID + "/metrics"
	if r := e.do(req{method: "POST", path: path, auth: bearer(a.APIKey), body: six}); r.status != http.StatusNoContent {
		t.Fatalf("first 6 points = %s, want 204", r)
	}
	r := e.do(req{method: "POST", path: path, auth: bearer(a.APIKey), body: six})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("next 6 points within the burst of 10 = %s, want 429", r)
	}
	// 2 more points are due at 1/s: Retry-After says so.
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 3 {
		t.Errorf("Retry-After = %q, want 1 to 3 seconds", r.header.Get("Retry-After"))
	}
	if n := e.streamLen(); n != 1 {
		t.Errorf("streams hold %d entries, want only the first batch", n)
	}
}

func TestIngestBacklogFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Backlog.Max = 1 })
	a := e.register(e.adminToken(), "behind")
	path := "/api/v1/agents/" + a.ID + "/metrics"
	body := `{"points":[{"measurement":"m","fields":{"v":1}}]}`
	for i := range 2 {
		if r := e.do(req{method: "POST", path: path, auth: bearer(a.APIKey), body: body}); r.status != http.StatusNoContent {
			t.Fatalf("batch %d = %s, want 204", i+1, r)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !e.g.backlog.Over() {
		if time.Now().After(deadline) {
			t.Fatal("backlog of 2 entries over a bound of 1 not noticed within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := e.do(req{method: "POST", path: path, auth: bearer(a.APIKey), body: body})
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("batch over the backlog = %s (Retry-After %q), want 503 with Retry-After", r, r.header.Get("Retry-After"))
	}
	if msg := r.errorMessage(t); !strings.Contains(msg, "backlog") {
		t.Errorf("error = %q, want it to name the backlog", msg)
	}
	if n := e.streamLen(); n != 2 {
		t.Errorf("streams hold %d entries, want 2 (nothing appended over the bound)", n)
	}
	m := e.do(req{method: "GET", path: "/metrics"})
	if !strings.Contains(string(m.body), `agentmonitor_gateway_ingest_requests_total{outcome="backlog_full",route="json"} 1`) {
		t.Errorf("/metrics does not count the backlog refusal")
	}
}

// closedAddr returns an address where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestIngestRedisDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a := e.register(e.adminToken(), "lonely")
	// The stream's Redis is unreachable (the shared Redis stays up for the other tests).
	down := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { down.Close() })
	hot, err := hotcache.New(down, e.prefix, 2, e.cfg.HotCache)
	if err != nil {
		t.Fatal(err)
	}
	app, err := ingestredis.New(down, hot, ingestredis.Config{Prefix: e.prefix, Shards: 2, Rate: 1000, Burst: 1000, Period: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.g.appender = app // only e.serve, in this goroutine, uses the gateway from here on
	if e.g.ingest, err = e.g.newIngest(); err != nil {
		t.Fatal(err)
	}
	r := e.serve(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey),
		body: `{"points":[{"measurement":"m","fields":{"v":1}}]}`, contentType: "application/json"})
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("ingest with the stream down = %s (Retry-After %q), want 503 with Retry-After", r, r.header.Get("Retry-After"))
	}
	if msg := r.errorMessage(t); strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "dial") {
		t.Errorf("error %q leaks internals", msg)
	}
	if keys := e.hotKeys(); len(keys) != 0 {
		t.Errorf("hot cache updated for a refused batch: %v", keys)
	}
}

// TestKeyCache proves ingest does not ask PostgreSQL per request, for good keys and bad ones.
func TestKeyCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	a := e.register(e.adminToken(), "cached")
	var lookups atomic.Int64
	inner := e.g.agents.ResolveKeyHash
	e.g.keys = keycache.New(e.g.cfg.KeyCacheTTL, e.g.cfg.KeyCacheStale, func(ctx context.Context, h string) (string, time.Time, error) {
		lookups.Add(1)
		return inner(ctx, h)
	}, time.Now)
	var err error
	if e.g.ingest, err = e.g.newIngest(); err != nil {
		t.Fatal(err)
	}
	body := `{"points":[{"measurement":"m","fields":{"v":1}}]}`
	bad := "amk_" + strings.Repeat("B", 43)
	for range 5 {
		if r := e.serve(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: body, contentType: "application/json"}); r.status != 204 {
			t.Fatalf("ingest = %s", r)
		}
		if r := e.serve(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(bad), body: body, contentType: "application/json"}); r.status != 401 {
			t.Fatalf("ingest with an unknown key = %s, want 401", r)
		}
	}
	if n := lookups.Load(); n != 2 {
		t.Errorf("10 requests with 2 keys made %d registry lookups, want 2", n)
	}
}

func TestRevokedKeysStopWorking(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	e, admin, url2 := newTwoCopies(t, ttl)
	a := e.register(admin, "rotating")
	b := e.register(admin, "deleted")
	for _, base := range []string{e.url, url2} {
		if s := ingestOne(t, base, a.ID, a.APIKey); s != 204 {
			t.Fatalf("ingest before rotation = %d, want 204", s)
		}
		if s := ingestOne(t, base, b.ID, b.APIKey); s != 204 {
			t.Fatalf("ingest before deletion = %d, want 204", s)
		}
	}

	r := e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/rotate-key", auth: bearer(admin)})
	newKey := decode[rotatedKey](t, r).APIKey
	if r := e.do(req{method: "DELETE", path: "/api/v1/agents/" + b.ID, auth: bearer(admin)}); r.status != 204 {
		t.Fatalf("delete = %s", r)
	}
	changed := time.Now()
	// At once on the gateway that made the change.
	if s := ingestOne(t, e.url, a.ID, a.APIKey); s != 401 {
		t.Errorf("old key right after rotation on the same gateway = %d, want 401", s)
	}
	if s := ingestOne(t, e.url, b.ID, b.APIKey); s != 401 {
		t.Errorf("key right after deletion on the same gateway = %d, want 401", s)
	}
	// Within the cache TTL on the other copy.
	for _, k := range []struct{ id, key string }{{a.ID, a.APIKey}, {b.ID, b.APIKey}} {
		for ingestOne(t, url2, k.id, k.key) != 401 {
			if time.Since(changed) > ttl+time.Second {
				t.Fatalf("revoked key still accepted by the other gateway %v after the change (KEY_CACHE_TTL %v)", time.Since(changed), ttl)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, base := range []string{e.url, url2} {
		if s := ingestOne(t, base, a.ID, newKey); s != 204 {
			t.Errorf("new key = %d, want 204", s)
		}
	}
}

func TestLatestAndRecent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "live")
	viewer := e.userToken(admin, "watcher", "viewer")
	t0 := time.Now().Add(-2 * time.Minute).Truncate(time.Second).UTC()
	t1, t2 := t0.Add(time.Minute), t0.Add(-10*time.Minute)

	post := func(body string) {
		t.Helper()
		if r := e.do(req{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: body}); r.status != 204 {
			t.Fatalf("ingest = %s", r)
		}
	}
	post(fmt.Sprintf(`{"points":[
		{"measurement":"cpu","tags":{"core":"0","agent":"x"},"fields":{"usage_percent":10,"state":"busy"},"time":%q},
		{"measurement":"cpu","tags":{"core":"0"},"fields":{"usage_percent":20},"time":%q}]}`, t0.Format(time.RFC3339), t1.Format(time.RFC3339)))
	// An older batch arriving late does not move "latest" back, and is outside the recent window.
	post(fmt.Sprintf(`{"points":[{"measurement":"cpu","tags":{"core":"0"},"fields":{"usage_percent":99},"time":%q}]}`, t2.Format(time.RFC3339)))
	if r := e.do(req{method: "POST", path: "/api/v2/write?precision=s", auth: "Token " + a.APIKey, contentType: "text/plain",
		body: fmt.Sprintf("mem used=512i %d", t0.Unix())}); r.status != 204 {
		t.Fatalf("line protocol = %s", r)
	}

	r := e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID + "/metrics/latest", auth: bearer(viewer)})
	if r.status != 200 {
		t.Fatalf("latest = %s", r)
	}
	want := fmt.Sprintf(`{"agent":%q,"metrics":[`+
		`{"metric":"cpu.state","tags":{"core":"0"},"value":"busy","time":%q},`+
		`{"metric":"cpu.usage_percent","tags":{"core":"0"},"value":20,"time":%q},`+
		`{"metric":"mem.used","tags":{},"value":512,"time":%q}]}`,
		a.ID, t0.Format(time.RFC3339Nano), t1.Format(time.RFC3339Nano), t0.Format(time.RFC3339Nano))
	if string(r.body) != want {
		t.Errorf("latest =\n%s\nwant\n%s", r.body, want)
	}
	// ?pretty indents the same document.
	r = e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID + "/metrics/latest?pretty", auth: bearer(viewer)})
	if v := jsontext.Value(r.body); r.status != 200 || !bytes.Contains(r.body, []byte("\n  ")) || v.Compact() != nil || string(v) != want {
		t.Errorf("latest?pretty = %s, want %s indented", r, want)
	}

	r = e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID + "/metrics/recent?metric=cpu.usage_percent", auth: bearer(viewer)})
	want = fmt.Sprintf(`{"agent":%q,"metric":"cpu.usage_percent","samples":[`+
		`{"tags":{"core":"0"},"value":10,"time":%q},{"tags":{"core":"0"},"value":20,"time":%q}]}`,
		a.ID, t0.Format(time.RFC3339Nano), t1.Format(time.RFC3339Nano))
	if r.status != 200 || string(r.body) != want {
		t.Errorf("recent = %s\nwant %s", r, want)
	}

	other := e.register(admin, "quiet")
	for _, tt := range []struct {
		path   string
		status int
		body   string
	}{
		{"/api/v1/agents/" + a.ID + "/metrics/recent?metric=disk.free", 200, `"samples":[]`},
		{"/api/v1/agents/" + other.ID + "/metrics/latest", 200, `"metrics":[]`},
		{"/api/v1/agents/" + a.ID + "/metrics/recent", 400, "metric is required"},
		{"/api/v1/agents/" + a.ID + "/metrics/recent?metric=cpu", 400, "measurement.field"},
		{"/api/v1/agents/" + a.ID + "/metrics/recent?metric=cpu.%0A", 400, "control character"},
		{"/api/v1/agents/00000000-0000-4000-8000-000000000000/metrics/latest", 404, "not found"},
		{"/api/v1/agents/00000000-0000-4000-8000-000000000000/metrics/recent?metric=a.b", 404, "not found"},
		{"/api/v1/agents/nope/metrics/latest", 404, "not found"},
	} {
		r := e.do(req{method: "GET", path: tt.path, auth: bearer(viewer)})
		if r.status != tt.status || !strings.Contains(string(r.body), tt.body) {
			t.Errorf("GET %s = %s, want %d with %s", tt.path, r, tt.status, tt.body)
		}
	}
	// Everything cached expires REDIS_TTL_SECONDS (300) after the last batch, plus at most a
	// refresh period (a tenth of it).
	keys := e.hotKeys()
	if len(keys) != 2 { // latest points and recent
		t.Errorf("hot keys = %v, want 2", keys)
	}
	for _, k := range keys {
		ttl, err := e.rdb.TTL(context.Background(), k).Result()
		if err != nil || ttl <= 0 || ttl > 330*time.Second {
			t.Errorf("TTL of %s = %v (%v), want up to 330s", k, ttl, err)
		}
	}
	// Deleting the agent deletes its live data.
	if r := e.do(req{method: "DELETE", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)}); r.status != 204 {
		t.Fatalf("delete = %s", r)
	}
	if keys := e.hotKeys(); len(keys) != 0 {
		t.Errorf("hot keys after deleting the agent = %v, want none", keys)
	}
	for _, path := range []string{"/metrics/latest", "/metrics/recent?metric=cpu.usage_percent"} {
		if r := e.do(req{method: "GET", path: "/api/v1/agents/" + a.ID + path, auth: bearer(viewer)}); r.status != 404 {
			t.Errorf("GET %s of a deleted agent = %s, want 404", path, r)
		}
	}
}
