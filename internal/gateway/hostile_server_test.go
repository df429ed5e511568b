package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest writes head (request line and headers, without the blank line) and a body whose
// bytes are sent by send, on a fresh connection, and returns the answer or the error reading
// it, and how long that took from the first byte sent.
func rawRequest(t *testing.T, addr, head string, send func(w io.Writer) error) (*http.Response, []byte, time.Duration, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	start := time.Now()
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() { _ = send(conn) }()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil, time.Since(start), err
	}
	body, _ := io.ReadAll(res.Body) // to EOF: the server closes the connection after an error
	res.Body.Close()
	return res, body, time.Since(start), nil
}

// trickle writes total bytes of body at about rate bytes a second, in small writes.
func trickle(body string, rate int) func(w io.Writer) error {
	return func(w io.Writer) error {
		const tick = 50 * time.Millisecond
		per := max(1, rate*int(tick)/int(time.Second))
		for len(body) > 0 {
			n := min(per, len(body))
			if _, err := io.WriteString(w, body[:n]); err != nil {
				return err
			}
			body = body[n:]
			time.Sleep(tick)
		}
		return nil
	}
}

// lineBody returns line protocol of about size bytes.
func lineBody(size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "cpu v=%d\n", i%10)
	}
	return b.String()
}

// TestSlowBodies: a body that stalls or trickles below the minimum rate is cut off with 408 and a
// closed connection soon after the grace, and one past BODY_READ_TIMEOUT too; a slow but steady
// upload above the rate still succeeds (issue 7, item 6).
func TestSlowBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		// A grace well above what a loaded CI machine needs to schedule the sender and run the
		// handler up to its first read, so only the pace decides.
		c.Edge.BodyReadGrace = 1500 * time.Millisecond
		c.Edge.BodyMinBytesPerSec = 2000
		c.Edge.BodyReadTimeout = 4 * time.Second
	})
	key := e.register(e.adminToken(), "slow-agent").APIKey
	body := lineBody(16 << 10)
	tests := []struct {
		name    string
		badKey  bool // refused before the body is read
		chunked bool
		length  int // Content-Length sent (when not chunked)
		send    func(w io.Writer) error
		want    int
		within  time.Duration
		atLeast time.Duration
	}{
		// 1.5s grace + 100 bytes / 2000 B/s: cut within a couple of seconds, not after 30s.
		{"stalls after 100 bytes", false, false, len(body), func(w io.Writer) error { _, err := io.WriteString(w, body[:100]); return err }, 408, 4 * time.Second, 1500 * time.Millisecond},
		{"trickles 40 bytes/s", false, false, len(body), trickle(body, 40), 408, 4 * time.Second, 1500 * time.Millisecond},
		{"trickles chunked", false, true, 0, trickle(chunk(body), 40), 408, 4 * time.Second, 1500 * time.Millisecond},
		// Refused before the body is read: the trickle must not hold the connection either.
		{"trickles to a refusing route", true, false, len(body), trickle(body, 40), 401, 4 * time.Second, 1500 * time.Millisecond},
		// Above the minimum rate but too long in all: cut at BODY_READ_TIMEOUT.
		{"steady but longer than the timeout", false, false, 40 << 10, trickle(lineBody(40<<10), 5000), 408, 6 * time.Second, 4 * time.Second},
		// A slow link: 16 KiB at 8 KB/s, two seconds, well above the minimum.
		{"slow but steady", false, false, len(body), trickle(body, 8000), 204, 10 * time.Second, 0},
		{"slow but steady, chunked", false, true, 0, trickle(chunk(body), 8000), 204, 10 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			auth := key
			if tt.badKey {
				auth = "amk_" + strings.Repeat("A", 43)
			}
			head := "POST /api/v2/write HTTP/1.1\r\nHost: " + e.g.Addr() + "\r\nAuthorization: Token " + auth + "\r\nContent-Type: text/plain\r\n"
			if tt.chunked {
				head += "Transfer-Encoding: chunked\r\n"
			} else {
				head += fmt.Sprintf("Content-Length: %d\r\n", tt.length)
			}
			res, got, took, err := rawRequest(t, e.g.Addr(), head, tt.send) //nolint:bodyclose // rawRequest reads and closes the body itself
			if err != nil {
				t.Fatalf("reading the answer: %v after %s", err, took)
			}
			if res.StatusCode != tt.want {
				t.Fatalf("answer = %d %s after %s, want %d", res.StatusCode, got, took, tt.want)
			}
			if took > tt.within || took < tt.atLeast {
				t.Errorf("answered after %s, want between %s and %s", took, tt.atLeast, tt.within)
			}
			if tt.want >= 400 && !res.Close {
				t.Errorf("%d answer to an unfinished body: the connection stays open, want it closed", res.StatusCode)
			}
			if tt.want == http.StatusRequestTimeout {
				if !res.Close || res.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(string(got), "too slowly") {
					t.Errorf("408 answer: close=%v headers=%v body=%s, want a JSON error with the usual headers on a closing connection", res.Close, res.Header, got)
				}
			}
		})
	}
}

// chunk encodes body as HTTP/1.1 chunks of at most 512 bytes, with the final empty chunk.
func chunk(body string) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(512, len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// TestOversizedHeadersAreJSON: headers over MAX_HEADER_BYTES get the gateway's JSON 431 with the
// security headers, not Go's plain-text one (issue 7, item 6).
func TestOversizedHeadersAreJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	big := strings.Repeat("a", e.cfg.Edge.MaxHeaderBytes)
	r := e.do(req{method: "GET", path: "/api/v1/agents", headers: map[string]string{"X-Junk": big}})
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("GET with %d bytes of headers = %s, want 431", len(big), r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("431 Content-Type = %q, want JSON", ct)
	}
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "X-Request-Id", "Cache-Control"} {
		if r.header.Get(h) == "" {
			t.Errorf("431 answer lacks %s; headers %v", h, r.header)
		}
	}
	if msg := r.errorMessage(t); !strings.Contains(msg, "headers") {
		t.Errorf("431 error %q does not say what was too large", msg)
	}
	// Just under the limit is fine (401 here: no token).
	small := strings.Repeat("a", e.cfg.Edge.MaxHeaderBytes-1024)
	if r := e.do(req{method: "GET", path: "/api/v1/agents", headers: map[string]string{"X-Junk": small}}); r.status != http.StatusUnauthorized {
		t.Errorf("GET with %d bytes of headers = %s, want 401", len(small), r)
	}
}
