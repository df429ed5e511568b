package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// databaseName turns a test name into a database name no other test or rerun uses: prefix, the
// name lowercased with anything outside [a-z0-9_] replaced, cut to 40 bytes, "_" and 12 random
// hex digits. With a prefix of up to 10 bytes it fits PostgreSQL's 63-byte identifiers, and
// InfluxQL takes it quoted or not.
func databaseName(prefix, testName string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToLower(testName) {
		if b.Len()-len(prefix) >= 40 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:]) // crypto/rand.Read never fails on supported platforms
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(suffix[:]))
	return b.String()
}
