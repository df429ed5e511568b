// Package keycache resolves agent API keys to agent ids for ingest without a PostgreSQL query
// per request: answers are cached for a TTL, concurrent misses share one query, and known keys
// are served stale while the registry is down.
package keycache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// ErrUnknownKey is returned by Cache.Resolve for a key that belongs to no agent.
var ErrUnknownKey = errors.New("unknown agent key")

// Cache resolves agent keys to agent ids without a PostgreSQL query per request. An answer,
// found or not found, is kept for ttl: a rotated or deleted key therefore stops working on every
// gateway within ttl, and at once on the gateway that rotated or deleted it. Concurrent misses on
// one key share one query, and at most lookupConcurrency queries run at once, so a flood of
// invented keys costs PostgreSQL little.
//
// When PostgreSQL fails, a found entry is served for up to stale past its expiry: an outage of the
// registry then does not stop ingest of known agents (a key cannot be revoked during it anyway).
//
// A key replaced by a rotation with a grace period resolves until the grace period ends and not
// after: an entry read during the grace period never outlives it, stale or not. (An entry cached
// before the rotation still lasts its ttl.)
type Cache struct {
	ttl    time.Duration
	stale  time.Duration
	lookup Lookup
	now    func() time.Time

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]keyEntry

	flight singleflight.Group
	sem    chan struct{}
}

type keyEntry struct {
	agentID string    // "" for a key known not to exist
	expires time.Time // when to ask the registry again
	until   time.Time // when the key itself stops working; zero: no end
}

// usable reports whether the key of the entry still works at now (its grace period, if any).
func (e keyEntry) usable(now time.Time) bool { return e.until.IsZero() || now.Before(e.until) }

// Lookup finds the agent whose key (current, or previous within its grace period) hashes to
// keyHash, with the time the key stops working (zero: no end); postgres.ErrNotFound for an
// unknown hash. *postgres.AgentStore's ResolveKeyHash is one.
type Lookup func(ctx context.Context, keyHash string) (agentID string, until time.Time, err error)

const (
	lookupConcurrency = 8
	maxKeyEntries     = 100_000
	lookupTimeout     = 5 * time.Second
)

// New returns a Cache that keeps answers for ttl and serves found keys up to stale past expiry
// when lookup fails; now is the clock.
func New(ttl, stale time.Duration, lookup Lookup, now func() time.Time) *Cache {
	return &Cache{
		ttl:     ttl,
		stale:   stale,
		lookup:  lookup,
		now:     now,
		entries: make(map[[sha256.Size]byte]keyEntry),
		sem:     make(chan struct{}, lookupConcurrency),
	}
}

// Resolve returns the id of the agent whose key is key, ErrUnknownKey, or the registry's error.
func (k *Cache) Resolve(ctx context.Context, key string) (string, error) {
	sum := hashKey(key)
	now := k.now()
	k.mu.RLock()
	e, ok := k.entries[sum]
	k.mu.RUnlock()
	if ok && now.Before(e.expires) && e.usable(now) {
		if e.agentID == "" {
			return "", ErrUnknownKey
		}
		return e.agentID, nil
	}

	hexSum := hex.EncodeToString(sum[:])
	v, err, _ := k.flight.Do(hexSum, func() (any, error) {
		// Detached from the first caller's context: other callers wait on the same answer.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		select {
		case k.sem <- struct{}{}:
		case <-lctx.Done():
			return "", fmt.Errorf("waiting to look up agent key: %w", lctx.Err())
		}
		id, until, err := k.lookup(lctx, hexSum)
		<-k.sem
		switch {
		case errors.Is(err, postgres.ErrNotFound):
			k.store(sum, "", time.Time{})
			return "", ErrUnknownKey
		case err != nil:
			return "", err
		}
		k.store(sum, id, until)
		return id, nil
	})
	if err != nil {
		if !errors.Is(err, ErrUnknownKey) && ok && e.agentID != "" && now.Before(e.expires.Add(k.stale)) && e.usable(now) {
			return e.agentID, nil // registry down: serve the stale answer (see the type comment)
		}
		return "", err
	}
	return v.(string), nil
}

// hashKey is SHA-256 of key, without the heap copy that []byte(key) costs for a string longer
// than 32 bytes (an agent key is 47): a well-formed key is copied to the stack.
func hashKey(key string) [sha256.Size]byte {
	var b [64]byte
	if len(key) > len(b) {
		return sha256.Sum256([]byte(key))
	}
	n := copy(b[:], key)
	return sha256.Sum256(b[:n])
}

func (k *Cache) store(sum [sha256.Size]byte, agentID string, until time.Time) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.entries) >= maxKeyEntries {
		k.sweepLocked(now)
	}
	k.entries[sum] = keyEntry{agentID: agentID, expires: now.Add(k.ttl), until: until}
}

// sweepLocked makes room: first entries past any use, then negative ones, then everything.
func (k *Cache) sweepLocked(now time.Time) {
	for s, e := range k.entries {
		if now.After(e.expires.Add(k.stale)) || (e.agentID == "" && now.After(e.expires)) {
			delete(k.entries, s)
		}
	}
	if len(k.entries) < maxKeyEntries {
		return
	}
	for s, e := range k.entries {
		if e.agentID == "" {
			delete(k.entries, s)
		}
	}
	if len(k.entries) >= maxKeyEntries {
		clear(k.entries)
	}
}

// InvalidateAgent forgets every cached key of agentID, at once.
func (k *Cache) InvalidateAgent(agentID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for s, e := range k.entries {
		if e.agentID == agentID {
			delete(k.entries, s)
		}
	}
}
