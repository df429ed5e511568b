package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// commandCounter is a go-redis hook counting the commands a client sends, by name, among those
// whose key contains substr (it counts, it does not stand in for Redis).
type commandCounter struct {
	substr string
	mu     sync.Mutex
	counts map[string]int
}

func newCommandCounter(substr string) *commandCounter {
	return &commandCounter{substr: substr, counts: map[string]int{}}
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *commandCounter) count(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 2 {
		return
	}
	if key, _ := args[1].(string); strings.Contains(key, c.substr) {
		c.mu.Lock()
		c.counts[cmd.Name()]++
		c.mu.Unlock()
	}
}

// take returns the counts so far and starts again from zero.
func (c *commandCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.counts
	c.counts = map[string]int{}
	return got
}

// TestSessionReadsDoNotWrite: N reads of an API route in a row cost Redis one session write
// (the TTL renewal of the first) and, within the session cache's second, nothing else.
func TestSessionReadsDoNotWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil) // SESSION_TTL 12h: renewed at most every 5s
	token := e.adminToken()
	counter := newCommandCounter(e.prefix + "session:")
	e.g.rdb.AddHook(counter)

	const n = 20
	began := time.Now()
	for i := range n {
		if r := e.do(req{method: "GET", path: "/api/v1/agents", auth: bearer(token)}); r.status != http.StatusOK {
			t.Fatalf("read %d = %s, want 200", i+1, r)
		}
	}
	if took := time.Since(began); took >= maxSessionCache {
		t.Skipf("%d reads took %v, longer than the session cache's time: too slow a machine to tell", n, took)
	}
	got := counter.take()
	if got["getex"] != 1 || len(got) != 1 {
		t.Errorf("session commands of %d reads = %v, want one getex (the renewal) and nothing else", n, got)
	}
}

// TestSessionCache: a session read from Redis serves the reads of the next cacheFor without a
// command; ended through this gateway copy it is refused at once, and ended elsewhere (its key
// deleted, as another copy does) it is refused once cacheFor has passed.
func TestSessionCache(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	clock, advance := fakeClock()
	s := newSessions(rdb, prefix, time.Hour, clock)
	if got := s.cacheFor(); got != maxSessionCache {
		t.Fatalf("cacheFor() with a 1h TTL = %v, want %v", got, maxSessionCache)
	}
	counter := newCommandCounter(prefix + "session:")
	rdb.AddHook(counter)
	ctx := context.Background()
	login := func(user string) string {
		token, _, err := s.create(ctx, user, "viewer", clock())
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	lookup := func(what, token string, wantOK bool, wantCommands int) {
		t.Helper()
		_, _, err := s.lookup(ctx, token)
		if wantOK && err != nil || !wantOK && !errors.Is(err, errNoSession) {
			t.Fatalf("%s: lookup error %v, want ok=%v", what, err, wantOK)
		}
		got := counter.take()
		n := 0
		for _, c := range got {
			n += c
		}
		if n != wantCommands {
			t.Errorf("%s: session commands %v, want %d", what, got, wantCommands)
		}
	}

	ada := login("ada")
	counter.take()
	lookup("first read", ada, true, 1)
	advance(maxSessionCache / 2)
	lookup("read within the cache time", ada, true, 0)

	// Ended elsewhere: still served from the cache until cacheFor has passed since the read.
	if err := rdb.Del(ctx, s.key(hashToken(ada))).Err(); err != nil {
		t.Fatal(err)
	}
	counter.take()
	lookup("read after another copy ended it, within the cache time", ada, true, 0)
	advance(maxSessionCache / 2)
	lookup("read once the cache time has passed", ada, false, 1)

	// Ended through this copy: refused at once.
	bob := login("bob")
	counter.take()
	lookup("bob's first read", bob, true, 1)
	if err := s.end(ctx, "bob", hashToken(bob)); err != nil {
		t.Fatal(err)
	}
	counter.take()
	lookup("read after ending it here", bob, false, 1)
	cleo := login("cleo")
	counter.take()
	lookup("cleo's first read", cleo, true, 1)
	if err := s.endAll(ctx, "cleo"); err != nil {
		t.Fatal(err)
	}
	counter.take()
	lookup("read after deleting the user here", cleo, false, 1)
}

// fakeClock returns a clock that stands still until advanced.
func fakeClock() (clock func() time.Time, advance func(time.Duration)) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	return func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
}

// TestSessionRenewal: a session's TTL is renewed by the first read and then once refreshEvery
// has passed, not by the reads between; a session read that fails (ended) renews nothing.
func TestSessionRenewal(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.Redis(t)
	clock, advance := fakeClock()
	s := newSessions(rdb, prefix, 10*time.Second, clock) // renewed at most every second
	if got := s.refreshEvery(); got != time.Second {
		t.Fatalf("refreshEvery() with a 10s TTL = %v, want 1s", got)
	}
	counter := newCommandCounter(prefix + "session:")
	rdb.AddHook(counter)
	ctx := context.Background()
	token, _, err := s.create(ctx, "ada", "viewer", clock())
	if err != nil {
		t.Fatal(err)
	}
	counter.take()

	read := func(what string, wantGetex int) {
		t.Helper()
		sess, _, err := s.lookup(ctx, token)
		if err != nil || sess.Username != "ada" {
			t.Fatalf("%s: lookup = %+v, %v; want ada's session", what, sess, err)
		}
		if got := counter.take(); got["getex"] != wantGetex {
			t.Errorf("%s: commands %v, want %d getex", what, got, wantGetex)
		}
	}
	read("first read", 1)
	for range 5 {
		advance(150 * time.Millisecond)
		read("read within a second of the renewal", 0)
	}
	advance(250 * time.Millisecond) // 1s since the renewal
	read("read a second after the renewal", 1)
	if ttl := rdb.TTL(ctx, s.key(hashToken(token))).Val(); ttl <= 9*time.Second {
		t.Errorf("TTL after the renewal = %v, want about 10s", ttl)
	}

	h := hashToken(token)
	if err := s.end(ctx, "ada", h); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.lookup(ctx, token); !errors.Is(err, errNoSession) {
		t.Errorf("lookup after end = %v, want errNoSession", err)
	}
	s.mu.Lock()
	_, tracked := s.renewed[h]
	s.mu.Unlock()
	if tracked {
		t.Error("an ended session is still tracked for renewal")
	}
}

// TestSessionRenewalBounded: past maxRenewedSessions tracked tokens, entries older than the
// renewal interval make room, and when none are, reads renew every time (never skip a renewal).
func TestSessionRenewalBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	s := newSessions(nil, "p:", time.Hour, func() time.Time { return now })
	for i := range maxRenewedSessions {
		if !s.claimRenewal(strings.Repeat("x", 8)+string(rune('a'+i%26))+time.Duration(i).String(), now) {
			t.Fatalf("claimRenewal of new token %d = false, want true", i)
		}
	}
	for i := range 2 {
		if !s.claimRenewal("one more", now) {
			t.Errorf("claimRenewal %d with the table full of fresh entries = false, want true every time", i+1)
		}
	}
	later := now.Add(s.refreshEvery())
	if !s.claimRenewal("one more", later) || s.claimRenewal("one more", later) {
		t.Error("claimRenewal once the old entries are stale: want a renewal, then none within the interval")
	}
	if n := len(s.renewed); n != 1 {
		t.Errorf("tracked sessions after pruning = %d, want 1", n)
	}
}
