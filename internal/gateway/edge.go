package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/labstack/echo/v4"
)

// EdgeConfig configures how the gateway's HTTP server holds up against clients that are slow,
// careless or hostile: login limits by source address, the proxies whose X-Forwarded-For is
// believed, and the bounds on request headers and on how slowly a body may arrive.
type EdgeConfig struct {
	// LoginAttemptsPerIPPerMinute limits every login attempt from one source address, whatever
	// the username, so that one address cannot try many usernames.
	LoginAttemptsPerIPPerMinute int `env:"LOGIN_ATTEMPTS_PER_IP_PER_MINUTE" envDefault:"30" help:"login attempts allowed from one source address a minute, whatever the username"`
	// LoginFailuresPerUserPerMinute limits failed logins of one username from all addresses
	// together; while it is exceeded only addresses without a recent failure for that user may
	// still try (so an attacker cannot lock the real user out).
	LoginFailuresPerUserPerMinute int `env:"LOGIN_FAILURES_PER_USER_PER_MINUTE" envDefault:"100" help:"failed logins of one username allowed a minute from all addresses together; above it only addresses with no recent failure for that user may try"`
	// TrustedProxies lists the reverse proxies (IP addresses or CIDRs) whose X-Forwarded-For
	// header names the client. Empty: the TCP peer is the client and X-Forwarded-For is ignored.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:"," help:"comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For names the client (for login limits); empty: the TCP peer is the client"`
	// MaxHeaderBytes bounds the request line and headers; larger ones get a JSON 431. Go's server
	// itself closes requests above twice this with a plain-text 431 (see README).
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" envDefault:"32768" help:"largest request line and headers in bytes; larger requests get 431"`
	// BodyReadGrace is how long a request body may take before BodyMinBytesPerSec applies.
	BodyReadGrace time.Duration `env:"BODY_READ_GRACE" envDefault:"10s" help:"how long a request body may take to start arriving before BODY_MIN_BYTES_PER_SEC applies"`
	// BodyMinBytesPerSec is the least average rate a body must arrive at after BodyReadGrace:
	// by grace+n/rate after the headers, at least n bytes must have come, or the request is
	// answered 408 and the connection closed.
	BodyMinBytesPerSec int `env:"BODY_MIN_BYTES_PER_SEC" envDefault:"1024" help:"least average rate in bytes/s a request body must keep after BODY_READ_GRACE, or 408 and the connection closes"`
	// BodyReadTimeout bounds the reading of one request body however fast it arrives.
	BodyReadTimeout time.Duration `env:"BODY_READ_TIMEOUT" envDefault:"2m" help:"longest time reading one request body may take, however steadily it arrives"`
}

// DefaultEdgeConfig returns EdgeConfig's defaults.
func DefaultEdgeConfig() EdgeConfig {
	var c EdgeConfig
	// Only a tag that does not parse can fail here, and TestDefaultConfig parses every tag.
	_ = config.Defaults(&c)
	return c
}

// Validate reports every setting that cannot work, each naming its variable.
func (c EdgeConfig) Validate() error {
	var errs []error
	if c.LoginAttemptsPerIPPerMinute < 1 {
		errs = append(errs, fmt.Errorf("LOGIN_ATTEMPTS_PER_IP_PER_MINUTE=%d: want > 0", c.LoginAttemptsPerIPPerMinute))
	}
	if c.LoginFailuresPerUserPerMinute < 1 {
		errs = append(errs, fmt.Errorf("LOGIN_FAILURES_PER_USER_PER_MINUTE=%d: want > 0", c.LoginFailuresPerUserPerMinute))
	}
	if _, err := parseProxies(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %w", err))
	}
	if c.MaxHeaderBytes < 4096 || c.MaxHeaderBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("MAX_HEADER_BYTES=%d: want 4096 to 1048576", c.MaxHeaderBytes))
	}
	if c.BodyReadGrace <= 0 {
		errs = append(errs, fmt.Errorf("BODY_READ_GRACE=%s: want > 0", c.BodyReadGrace))
	}
	if c.BodyMinBytesPerSec < 1 {
		errs = append(errs, fmt.Errorf("BODY_MIN_BYTES_PER_SEC=%d: want > 0", c.BodyMinBytesPerSec))
	}
	if c.BodyReadTimeout < c.BodyReadGrace {
		errs = append(errs, fmt.Errorf("BODY_READ_TIMEOUT=%s: want at least BODY_READ_GRACE (%s)", c.BodyReadTimeout, c.BodyReadGrace))
	}
	return errors.Join(errs...)
}

// parseProxies reads TRUSTED_PROXIES entries: CIDRs, or single addresses.
func parseProxies(entries []string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, s := range entries {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			ip := net.ParseIP(s)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", s)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", s)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

// ipExtractor returns how the client's address is found: the TCP peer, or with trusted proxies
// the right-most X-Forwarded-For entry that is not one of them. Only those proxies are believed:
// Echo's default would take a client-sent X-Forwarded-For as is, letting anyone pick the address
// the login limit counts against.
func ipExtractor(proxies []string) echo.IPExtractor {
	nets, _ := parseProxies(proxies) // validated with the config
	if len(nets) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range nets {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// headerBytes is the size of the request line and headers as received, near enough (Go's own
// MaxHeaderBytes counts the same bytes).
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host: ") + len(r.Host) + 2
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// limitHeaders is middleware answering 431 in the JSON error shape, with the usual headers, when
// the request line and headers exceed MaxHeaderBytes. The server's own limit is set at twice
// this, so that only truly huge headers meet Go's plain-text answer.
func (g *Gateway) limitHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	limit := g.cfg.Edge.MaxHeaderBytes
	return func(c echo.Context) error {
		if n := headerBytes(c.Request()); n > limit {
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return newError(http.StatusRequestHeaderFieldsTooLarge, "request line and headers are %d bytes, more than the %d allowed", n, limit)
		}
		return next(c)
	}
}

// paceBody is middleware bounding how slowly a request body may arrive: nothing is required for
// BodyReadGrace, then on average BodyMinBytesPerSec, and all of it within BodyReadTimeout. It
// sets the connection's read deadline before each read of the body (http.ResponseController),
// so a stalled or trickling body fails its read; the request is then answered 408 and the
// connection closed, whatever the handler made of the failed read.
func (g *Gateway) paceBody(next echo.HandlerFunc) echo.HandlerFunc {
	cfg := g.cfg.Edge
	return func(c echo.Context) error {
		r := c.Request()
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			return next(c)
		}
		now := time.Now()
		pb := &pacedBody{
			body:  r.Body,
			rc:    http.NewResponseController(c.Response()),
			start: now.Add(cfg.BodyReadGrace),
			rate:  float64(cfg.BodyMinBytesPerSec),
			cap:   now.Add(cfg.BodyReadTimeout),
		}
		r.Body = pb
		err := next(c)
		// Give net/http its own body back (it drains what the handler left, up to 256 KiB, to
		// keep the connection) and bound that drain by the same pace: a handler that refused
		// the request early must not leave a trickle holding the connection until ReadTimeout.
		r.Body = pb.body
		if !pb.done.Load() {
			_ = pb.rc.SetReadDeadline(pb.deadline())
		}
		if pb.timedOut.Load() && !c.Response().Committed {
			c.Response().Header().Set(echo.HeaderConnection, "close")
			return newError(http.StatusRequestTimeout, "request body arrived too slowly: at least %d bytes/s after the first %s, all within %s",
				cfg.BodyMinBytesPerSec, cfg.BodyReadGrace, cfg.BodyReadTimeout)
		}
		return err
	}
}

// pacedBody is a request body whose every read must finish by the deadline its pace allows.
type pacedBody struct {
	body     io.ReadCloser
	rc       *http.ResponseController
	start    time.Time   // when the grace ends
	rate     float64     // least bytes a second after start
	cap      time.Time   // when the whole body must be in
	n        int64       // bytes read so far
	done     atomic.Bool // the body ended (EOF or an error)
	timedOut atomic.Bool // a read ran past its deadline
}

// deadline is when more than the n bytes read so far must have come: start + n/rate, at most cap.
func (b *pacedBody) deadline() time.Time { return b.deadlineFor(0) }

// deadlineFor is when the n bytes read so far and want more must have come at the least rate:
// start + (n+want)/rate, at most cap.
func (b *pacedBody) deadlineFor(want int) time.Time {
	d := b.start.Add(time.Duration(float64(b.n+int64(want)) / b.rate * float64(time.Second)))
	if d.After(b.cap) {
		return b.cap
	}
	return d
}

func (b *pacedBody) Read(p []byte) (int, error) {
	// A chunked body's reader keeps reading until p is full or its chunk ends, so one Read of a
	// large buffer can wait for many bytes: ask for no more than the sender is ahead of the pace
	// (at least half a second's worth at the least rate), and allow for those bytes in the
	// deadline, so that a sender keeping the pace is never cut whatever its chunk sizes, and a
	// fast one still reads whole buffers. A sender ahead by X bytes that then stalls is cut
	// after at most 2X/rate.
	ahead := float64(b.n) - max(0, time.Since(b.start).Seconds())*b.rate
	if limit := max(512, int(b.rate/2), int(min(ahead, 1<<30))); len(p) > limit {
		p = p[:limit]
	}
	// Not every ResponseWriter can (httptest's cannot): then only the server's timeouts apply.
	_ = b.rc.SetReadDeadline(b.deadlineFor(len(p)))
	n, err := b.body.Read(p)
	b.n += int64(n)
	if err != nil {
		b.done.Store(true)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			b.timedOut.Store(true)
		}
		// The handler's own work must not run into the pace deadline, which would cancel the
		// request's context; the server's ReadTimeout remains.
		_ = b.rc.SetReadDeadline(b.cap)
	}
	return n, err
}

func (b *pacedBody) Close() error { return b.body.Close() }
