package influx

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// TestClassify covers answers the local 1.8 server cannot be made to give (429, 503 with
// Retry-After, 2.x's 422 and JSON messages); the real-server cases are in TestWriteClassifiesErrors.
func TestClassify(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name  string
		err   error
		want  error // ErrInvalid, ErrTooLarge or nil (transient)
		retry time.Duration
		msg   string
	}{
		{"connection refused", ihttp.NewError(syscall.ECONNREFUSED), nil, 0, "connection refused"},
		{"plain error", errors.New("boom"), nil, 0, "boom"},
		{"1.8 parse error in header", &ihttp.Error{StatusCode: 400, Header: hdr("X-Influxdb-Error", "unable to parse 'x': missing fields")}, ErrInvalid, 0, "unable to parse"},
		{"2.x partial write", &ihttp.Error{StatusCode: 422, Code: "unprocessable entity", Message: "failure writing points to database: partial write: field type conflict", Header: hdr()}, ErrInvalid, 0, "field type conflict"},
		{"2.x beyond retention", &ihttp.Error{StatusCode: 422, Message: "partial write: points beyond retention policy dropped=1", Header: hdr()}, ErrInvalid, 0, "beyond retention"},
		{"400 about configuration", &ihttp.Error{StatusCode: 400, Message: "database is required", Header: hdr()}, nil, 0, "database is required"},
		{"413", &ihttp.Error{StatusCode: 413, Header: hdr()}, ErrTooLarge, 0, "Request Entity Too Large"},
		{"429 with Retry-After", &ihttp.Error{StatusCode: 429, Message: "exceeded rate limit", RetryAfter: 7, Header: hdr()}, nil, 7 * time.Second, "rate limit"},
		{"503 with Retry-After", &ihttp.Error{StatusCode: 503, Message: "unavailable", RetryAfter: 30, Header: hdr()}, nil, 30 * time.Second, "unavailable"},
		{"500", &ihttp.Error{StatusCode: 500, Message: "timeout", Header: hdr()}, nil, 0, "timeout"},
		{"401", &ihttp.Error{StatusCode: 401, Message: "unauthorized access", Header: hdr()}, nil, 0, "unauthorized"},
		{"403", &ihttp.Error{StatusCode: 403, Message: "user is not authorized to write", Header: hdr()}, nil, 0, "not authorized"},
		{"404 with bad-data words", &ihttp.Error{StatusCode: 404, Message: "unable to parse bucket", Header: hdr()}, nil, 0, "bucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			for _, class := range []error{ErrInvalid, ErrTooLarge} {
				if is, want := errors.Is(got, class), errors.Is(class, tt.want); is != want {
					t.Errorf("errors.Is(classify(%v), %v) = %t, want %t", tt.err, class, is, want)
				}
			}
			if got.Transient() != (tt.want == nil) {
				t.Errorf("classify(%v).Transient() = %t, want %t", tt.err, got.Transient(), tt.want == nil)
			}
			if got.RetryAfter() != tt.retry {
				t.Errorf("classify(%v).RetryAfter() = %v, want %v", tt.err, got.RetryAfter(), tt.retry)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) does not wrap the client's error", tt.err)
			}
			if msg := got.Error(); !strings.Contains(msg, tt.msg) {
				t.Errorf("classify(%v).Error() = %q, want it to contain %q", tt.err, msg, tt.msg)
			}
		})
	}
}

func TestParseMajor(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"1.8.10", 1},
		{"v1.8.10", 1},
		{"2.7.11", 2},
		{"v2.7.11", 2},
		{"3.0.0", 2},
		{"unknown", 0},
		{"", 0},
		{"0.9", 0},
	}
	for _, tt := range tests {
		if got := parseMajor(tt.in); got != tt.want {
			t.Errorf("parseMajor(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestRetentionV1(t *testing.T) {
	tests := []struct {
		days            int
		duration, shard string
	}{
		{0, "INF", "7d"},
		{1, "1d", "1h"},
		{2, "2d", "1d"},
		{30, "30d", "1d"},
		{179, "179d", "1d"},
		{180, "180d", "7d"},
	}
	for _, tt := range tests {
		if d, s := retentionV1(tt.days); d != tt.duration || s != tt.shard {
			t.Errorf("retentionV1(%d) = %q, %q; want %q, %q", tt.days, d, s, tt.duration, tt.shard)
		}
	}
}

// TestProbeMajor checks the fallback for servers whose version header says "unknown" (influxd
// built from source without a version), whatever the local binary reports.
func TestProbeMajor(t *testing.T) {
	env := testenv.Influx(t)
	c, err := New(Config{URL: env.URL, Bucket: env.Database, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m, err := c.probeMajor(context.Background()); err != nil || m != 1 {
		t.Fatalf("probeMajor() against influxd 1.8 = %d, %v; want 1", m, err)
	}
}
