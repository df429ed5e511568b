package gateway

import (
	"context"
	"sync"
	"time"
)

// latestCacheBytes bounds the memory of a gateway's latestCache: what the latest values of the
// agents read within LATEST_READ_MAX_AGE take as JSON (a few KiB an agent).
const latestCacheBytes = 64 << 20

// latestFetch appends the latest values of agent id as a JSON array to dst and returns it with
// the number of series (hotcache.Cache.AppendLatest).
type latestFetch func(ctx context.Context, dst []byte, id string) ([]byte, int, error)

// latestCache answers the latest-values read of an agent from this gateway copy's memory when it
// read the hot cache for that agent less than maxAge ago (issue 13: the read's 1 ms p99 budget,
// which a Redis round trip misses while Redis fsyncs the ingest stream under load).
//
// So an answer is at most maxAge older than the hot cache, whichever copy took the batch. A read
// of an entry older than maxAge/2 still answers from memory and refreshes the entry in the
// background (one refresh per agent at a time): an agent read more often than every maxAge/2,
// as a dashboard polling it or several dashboards showing it are, never waits for Redis. An agent
// read less often is fetched when read, as without the cache. Empty answers are not kept (the
// handler asks PostgreSQL whether such an agent exists).
//
// Hand-written: the LRU and TTL caches we looked at (hashicorp/golang-lru's expirable LRU,
// jellydator/ttlcache) expire entries but do not refresh them ahead of their expiry.
type latestCache struct {
	maxAge time.Duration
	fetch  latestFetch
	now    func() time.Time
	ctx    context.Context // background refreshes; cancelled when the gateway stops
	// maxBytes bounds the bodies held (latestCacheBytes).
	maxBytes int

	mu    sync.Mutex
	m     map[string]*latestEntry
	bytes int
	// gone holds, per agent forgotten within maxAge, when: a read that began before is not kept
	// (a refresh racing the agent's delete would otherwise put its values back).
	gone map[string]time.Time
}

type latestEntry struct {
	body       []byte    // the JSON array; never changed once stored
	series     int       // its number of series (> 0)
	at         time.Time // when the read that got body started
	refreshing bool
}

func newLatestCache(ctx context.Context, maxAge time.Duration, fetch latestFetch, now func() time.Time) *latestCache {
	return &latestCache{maxAge: maxAge, fetch: fetch, now: now, ctx: ctx, maxBytes: latestCacheBytes,
		m: make(map[string]*latestEntry), gone: make(map[string]time.Time)}
}

// AppendLatest is latestFetch answered from memory where it can be.
func (c *latestCache) AppendLatest(ctx context.Context, dst []byte, id string) ([]byte, int, error) {
	if c.maxAge <= 0 {
		return c.fetch(ctx, dst, id)
	}
	now := c.now()
	c.mu.Lock()
	if e, ok := c.m[id]; ok {
		if age := now.Sub(e.at); age >= 0 && age < c.maxAge {
			if age >= c.maxAge/2 && !e.refreshing {
				e.refreshing = true
				go c.refresh(id)
			}
			c.mu.Unlock()
			return append(dst, e.body...), e.series, nil // body never changes: copied unlocked
		}
	}
	c.mu.Unlock()
	from := len(dst)
	dst, n, err := c.fetch(ctx, dst, id)
	if err == nil {
		c.store(id, dst[from:], n, now)
	}
	return dst, n, err
}

// refresh reads the latest values of id again for the entry in memory.
func (c *latestCache) refresh(id string) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	at := c.now()
	body, n, err := c.fetch(ctx, nil, id)
	if err != nil {
		c.mu.Lock()
		if e, ok := c.m[id]; ok {
			e.refreshing = false // the next read past maxAge/2 tries again
		}
		c.mu.Unlock()
		return
	}
	c.store(id, body, n, at)
}

// store keeps a copy of body, read at at, as the latest values of id unless the entry holds a
// later read (not one from the future: the clock went back); an empty answer drops the entry.
func (c *latestCache) store(id string, body []byte, n int, at time.Time) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if g, ok := c.gone[id]; ok && !at.After(g) {
		return
	}
	old, ok := c.m[id]
	if ok && old.at.After(at) && !old.at.After(now) {
		return
	}
	if ok {
		c.bytes -= len(old.body)
		delete(c.m, id)
	}
	if n == 0 || !c.makeRoom(len(body), at) {
		return
	}
	c.m[id] = &latestEntry{body: append([]byte(nil), body...), series: n, at: at}
	c.bytes += len(body)
}

// makeRoom reports whether size more bytes fit in maxBytes, dropping the entries too old
// to answer from (or from the future: the clock went back) when they do not.
func (c *latestCache) makeRoom(size int, now time.Time) bool {
	if c.bytes+size <= c.maxBytes {
		return true
	}
	dropStale(c.m, func(e *latestEntry) time.Time { return e.at }, now, c.maxAge, func(e *latestEntry) { c.bytes -= len(e.body) })
	return c.bytes+size <= c.maxBytes
}

// forget drops what the cache holds for id (the agent was deleted), and keeps out for maxAge
// what reads that began before bring back.
func (c *latestCache) forget(id string) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok {
		c.bytes -= len(e.body)
		delete(c.m, id)
	}
	dropStale(c.gone, func(t time.Time) time.Time { return t }, now, c.maxAge, nil)
	c.gone[id] = now
}
