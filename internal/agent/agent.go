// Package agent is the domain of monitored agents: the registered agent and the form in which its
// API key is stored and looked up.
package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Agent is a registered agent. Labels is never nil. LastSeen is when the gateway last accepted a
// batch from it, nil until the first one. PreviousKeyExpiresAt is when the key replaced by the
// last rotation stops working, nil when it no longer does (no grace period, expired or revoked).
type Agent struct {
	ID                   string            `json:"id"`
	Name                 string            `json:"name"`
	Labels               map[string]string `json:"labels"`
	CreatedAt            time.Time         `json:"created_at"`
	LastSeen             *time.Time        `json:"last_seen"`
	PreviousKeyExpiresAt *time.Time        `json:"previous_key_expires_at,omitempty"`
}

// HashAPIKey returns the form in which an agent key is stored and looked up: the lowercase hex
// SHA-256 of the key. Keys are high-entropy random strings, so a fast unsalted hash is safe and lets
// ingest find the agent by hash; passwords, which are guessable, use bcrypt instead.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Agent keys: KeyPrefix and 32 random bytes in unpadded base64url (43 characters). Only their
// SHA-256 (HashAPIKey) is stored.
const (
	KeyPrefix = "amk_"
	KeyLen    = len(KeyPrefix) + 43
)

// WellFormedKey reports whether key could be an agent key at all; anything else is refused
// without a lookup.
func WellFormedKey(key string) bool {
	if len(key) != KeyLen || !strings.HasPrefix(key, KeyPrefix) {
		return false
	}
	for i := len(KeyPrefix); i < len(key); i++ {
		b := key[i]
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}
