package metric

import (
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// names interns the measurements, tag keys, tag values and field keys the parsers read. An agent
// sends the same few dozen names in every request, so after its first request they cost the
// parser no allocation (issue 13: the names were 58 of a 6-point batch's 73 allocations).
var names = interner{max: 1 << 14, maxLen: 128}

// interner is a bounded set of strings, safe for concurrent use. When it is full it starts
// again empty, so a client sending ever-new names costs memory only up to max entries and
// keeps no one else's names out for long.
type interner struct {
	max    int // entries before starting again
	maxLen int // longer strings are not interned

	mu sync.RWMutex
	m  map[string]string
}

// lookup returns the interned copy of s, if there is one. s does not escape: it may be backed
// by a temporary buffer.
func (in *interner) lookup(s string) (string, bool) {
	in.mu.RLock()
	v, ok := in.m[s]
	in.mu.RUnlock()
	return v, ok
}

// token returns the string of a JSON string token (an object name or a string value), the
// interned copy when there is one. jsontext.Token.String is inlined here, so its string
// conversion of the decoder's bytes is a stack temporary when no longer than 32 bytes: a name
// seen before costs no allocation.
func (in *interner) token(tok jsontext.Token) string {
	s := tok.String()
	if v, ok := in.lookup(s); ok {
		return v
	}
	if len(s) > in.maxLen {
		return strings.Clone(s)
	}
	return in.add(strings.Clone(s))
}

// add interns s, starting again empty when full.
func (in *interner) add(s string) string {
	in.mu.Lock()
	if len(in.m) >= in.max || in.m == nil {
		in.m = make(map[string]string, min(in.max, 256))
	}
	in.m[s] = s
	in.mu.Unlock()
	return s
}

// string returns b as a string: the interned copy when there is one, else a new string that
// is interned for next time (unless longer than maxLen).
func (in *interner) string(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > in.maxLen {
		return string(b)
	}
	in.mu.RLock()
	s, ok := in.m[string(b)] // the conversion in a map index does not allocate
	in.mu.RUnlock()
	if ok {
		return s
	}
	return in.add(string(b))
}
