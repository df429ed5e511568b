package gateway

import (
	"net/url"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/textcheck"
)

// TestWellFormedRequestID: the byte loop accepts exactly what requestIDPattern accepts.
func TestWellFormedRequestID(t *testing.T) {
	for _, id := range []string{
		"", "a", "abc-123", "A.b:c_d-9", strings.Repeat("x", 64), strings.Repeat("x", 65),
		"<script>", "a b", "a\x00", "é", "a/b", "a\n", "01HZX3Q2V6N7", "trace:span.1",
	} {
		if got, want := wellFormedRequestID(id), requestIDPattern.MatchString(id); got != want {
			t.Errorf("wellFormedRequestID(%q) = %v, want %v (requestIDPattern)", id, got, want)
		}
	}
}

// TestPlainQuery: a query plainQuery lets through parses without error into storable names and
// values, so checkURLText may skip it; anything else is parsed and checked as before.
func TestPlainQuery(t *testing.T) {
	for _, tt := range []struct {
		q     string
		plain bool
	}{
		{"bucket=metrics&org=&precision=s", true},
		{"a+b=c+d&x", true},
		{"bucket=a%00b", false},
		{"bucket=a;b", false},
		{"bucket=\xff", false},
		{"bucket=\x00", false},
		{"name=caf%C3%A9", false},
	} {
		if got := plainQuery(tt.q); got != tt.plain {
			t.Errorf("plainQuery(%q) = %v, want %v", tt.q, got, tt.plain)
		}
		if !tt.plain {
			continue
		}
		q, err := url.ParseQuery(tt.q)
		if err != nil {
			t.Errorf("plainQuery(%q) = true, but url.ParseQuery fails: %v", tt.q, err)
		}
		for k, vs := range q {
			for _, s := range append(vs, k) {
				if err := textcheck.Storable(s); err != nil {
					t.Errorf("plainQuery(%q) = true, but %q is not storable: %v", tt.q, s, err)
				}
			}
		}
	}
}
