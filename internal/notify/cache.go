package notify

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// snapshot caches what load returns. A read older than the asked age reloads it; when the
// reload fails and an older value exists, that value is used (PostgreSQL being down does not
// stop notifications: channels and silences cannot change while it is down) and the reload is
// tried again after the same age.
type snapshot[T any] struct {
	name   string
	logger *slog.Logger
	load   func(context.Context) (T, error)

	mu     sync.Mutex // held during a load, so concurrent readers wait for one load
	val    T
	ok     bool
	loaded time.Time
}

func newSnapshot[T any](name string, logger *slog.Logger, load func(context.Context) (T, error)) *snapshot[T] {
	return &snapshot[T]{name: name, logger: logger, load: load}
}

// get returns the value, reloading it when it is older than maxAge.
func (s *snapshot[T]) get(ctx context.Context, maxAge time.Duration) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok && time.Since(s.loaded) < maxAge {
		return s.val, nil
	}
	lctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	val, err := s.load(lctx)
	if err != nil {
		if s.ok && ctx.Err() == nil {
			s.logger.Warn("reloading failed, using the previous "+s.name, "err", err, "age", time.Since(s.loaded).Round(time.Second))
			s.loaded = time.Now() // the next attempt waits like a reload would
			return s.val, nil
		}
		var zero T
		return zero, fmt.Errorf("listing %s: %w", s.name, err)
	}
	s.val, s.ok, s.loaded = val, true, time.Now()
	return val, nil
}

// recentSet remembers keys for a while: deliveries whose marker could not be written.
type recentSet struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]time.Time
}

func newRecentSet(ttl time.Duration) *recentSet {
	return &recentSet{ttl: ttl, m: make(map[string]time.Time)}
}

func (r *recentSet) add(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for k, at := range r.m {
		if now.Sub(at) > r.ttl {
			delete(r.m, k)
		}
	}
	r.m[key] = now
}

func (r *recentSet) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.m[key]
	return ok && time.Since(at) <= r.ttl
}

func (r *recentSet) remove(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
}
