// Package ingest is the agents' write path of the gateway: it authenticates an agent key, reads
// the body within its limit (gzip included), parses and validates the points, refuses while the
// stream backlog is over its bound, checks the field types, then charges the agent's rate,
// appends the batch to the agent's stream shard and refreshes the hot cache in one Redis round
// trip (package ingestredis). Its dependencies are injected (Deps); errors are answered through
// package httpapi like every other handler's.
package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/fieldtype"
	"github.com/agentmonitor/agentmonitor/internal/httpapi"
	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/keycache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// Ingest routes, as labels of the ingest metrics.
const (
	routeJSON = "json"
	routeLine = "line_protocol"
)

// publishTimeout bounds the append and the cache refresh of one accepted batch. They run detached
// from the request's context: once the append starts, a client that hangs up must not leave the
// batch half done.
const publishTimeout = 5 * time.Second

// ingestBuf is the reusable memory of one ingest request.
type ingestBuf struct {
	body    bytes.Buffer
	payload []byte
	raw     limitedReader
	limited io.LimitedReader // what readBody copies from (io.LimitReader would allocate one)
	br      *bufio.Reader    // gzip reads through it (it would allocate its own otherwise)
	gz      *gzip.Reader
}

var ingestBufs = sync.Pool{New: func() any { return new(ingestBuf) }}

// maxPooledBody keeps a rare huge request from pinning its buffers in the pool.
const maxPooledBody = 1 << 20

func putIngestBuf(b *ingestBuf) {
	if b.body.Cap() > maxPooledBody || cap(b.payload) > 4*maxPooledBody {
		return
	}
	b.body.Reset()
	b.payload = b.payload[:0]
	b.raw = limitedReader{} // drop the request body; br and gz only point at raw
	b.limited = io.LimitedReader{}
	ingestBufs.Put(b)
}

// JSON answers POST /api/v1/agents/{id}/metrics (JSON points, key as Bearer).
func (h *Handler) JSON(c echo.Context) error {
	return h.ingest(c, routeJSON)
}

// Line answers POST /api/v2/write (line protocol, key as Token or Bearer). bucket and org are
// accepted and ignored: every agent's points go to the configured bucket.
func (h *Handler) Line(c echo.Context) error {
	return h.ingest(c, routeLine)
}

// ingest runs one batch through, in this order: authenticate the key; read the body within the
// limit; parse and validate every point (400 with the first bad one, nothing stored); refuse
// while the backlog is over its bound (503); check the field types (400 naming the field and its
// type, 503 if Redis cannot be asked); then in one script charge the agent's rate (429, nothing
// stored), append the canonical batch to the agent's stream shard (503 if Redis refuses) and
// refresh the hot cache; with REDIS_WAIT_REPLICAS, 503 when too few replicas confirm; 204.
func (h *Handler) ingest(c echo.Context, route string) (err error) {
	start := time.Now()
	var points int
	defer func() {
		h.metrics.observe(route, err, points, time.Since(start))
	}()

	r := c.Request()
	var key string
	if route == routeJSON {
		key = httpapi.BearerToken(r, "Bearer")
	} else {
		key = httpapi.BearerToken(r, "Token", "Bearer")
	}
	if key == "" {
		if route == routeJSON {
			return httpapi.CredentialError(r, "agent key", "Authorization: Bearer <agent key>", "Bearer")
		}
		return httpapi.CredentialError(r, "agent key", "Authorization: Token <agent key> (or Bearer <agent key>)", "Token", "Bearer")
	}
	if !agent.WellFormedKey(key) {
		return httpapi.New(http.StatusUnauthorized, "invalid agent key")
	}
	agentID, err := h.keys.Resolve(r.Context(), key)
	if errors.Is(err, keycache.ErrUnknownKey) {
		return httpapi.New(http.StatusUnauthorized, "invalid agent key")
	}
	if err != nil {
		return httpapi.Unavailable("agent registry", err)
	}
	if route == routeJSON && !strings.EqualFold(c.Param("id"), agentID) {
		return httpapi.New(http.StatusForbidden, "this key belongs to another agent: post to /api/v1/agents/%s/metrics", agentID)
	}

	precision := ""
	if route == routeJSON {
		if err := httpapi.RequireJSON(r); err != nil {
			return err
		}
	} else {
		precision = queryParam(c, "precision")
		switch precision {
		case "", "ns", "us", "ms", "s":
		default:
			return httpapi.New(http.StatusBadRequest, "precision %q must be one of ns, us, ms, s", httpapi.Truncate(precision, 16))
		}
	}

	buf := ingestBufs.Get().(*ingestBuf)
	defer putIngestBuf(buf)
	if err := h.readBody(r, buf); err != nil {
		return err
	}

	now := h.now()
	var pts []metric.Point
	if route == routeJSON {
		pts, err = metric.ParseJSON(buf.body.Bytes(), now, h.limits)
	} else {
		pts, err = metric.ParseLineProtocol(buf.body.Bytes(), precision, now, h.limits)
	}
	if err != nil {
		return &httpapi.Error{Status: http.StatusBadRequest, Message: err.Error()}
	}

	if h.backlog != nil && h.backlog.Over() {
		return &httpapi.Error{
			Status:     http.StatusServiceUnavailable,
			Message:    "the pipeline is behind (stream backlog over its bound); retry later",
			RetryAfter: httpapi.RetryBacklog,
			Outcome:    "backlog_full",
		}
	}

	if err := h.checkFieldTypes(r.Context(), pts, route, buf.body.Bytes()); err != nil {
		return err
	}

	buf.payload = metric.AppendLineProtocol(buf.payload[:0], pts, agentID)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), publishTimeout)
	defer cancel()
	res, err := h.appender.Append(pctx, agentID, pts, buf.payload, now)
	switch {
	case err != nil:
		return publishError(err)
	case !res.Allowed:
		return &httpapi.Error{
			Status:     http.StatusTooManyRequests,
			Message:    fmt.Sprintf("agent over its rate of %d points/s (burst %d); retry later", h.agentRate, h.agentBurst),
			RetryAfter: max(res.RetryAfter, time.Second),
		}
	}
	points = len(pts)

	// The batch is in the stream: from here on the answer is 204 whatever happens. A failed cache
	// refresh only delays the live view; failing the request would make the agent resend a batch
	// that is already stored.
	if res.CacheErr != nil {
		h.metrics.hotCacheErrors.Inc()
		h.logger.Warn("refreshing hot cache failed", "agent", agentID, "err", res.CacheErr)
	}
	return c.NoContent(http.StatusNoContent)
}

// queryParam is c.QueryParam(name) without parsing the whole query into a map (three
// allocations per line-protocol request, issue 13) when the query holds no '%', '+' or ';':
// then url.ParseQuery has nothing to unescape and no pair to refuse, and splitting on '&' and
// '=' is all it does. Any other query goes through c.QueryParam.
func queryParam(c echo.Context, name string) string {
	q := c.Request().URL.RawQuery
	if strings.ContainsAny(q, "%+;") {
		return c.QueryParam(name)
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if k, v, _ := strings.Cut(pair, "="); k == name {
			return v
		}
	}
	return ""
}

// publishError answers an append that failed: 503, naming the replicas when the batch reached
// too few of them. (Apart from the happy path, so that its errors.As target is not allocated
// for every request.)
func publishError(err error) error {
	var re *ingestredis.ReplicaError
	if errors.As(err, &re) {
		// Stored on the master, not on as many replicas as asked: a failover could lose it.
		return &httpapi.Error{
			Status:     http.StatusServiceUnavailable,
			Message:    fmt.Sprintf("the batch reached %d of the %d Redis replicas required (REDIS_WAIT_REPLICAS) within %s; retry later (it may then be stored twice)", re.Got, re.Want, re.Timeout),
			RetryAfter: httpapi.RetryUnavailable,
			Outcome:    "replicas_short",
			Err:        err,
		}
	}
	return httpapi.Unavailable("stream", err)
}

// checkFieldTypes refuses points whose field types differ from those InfluxDB holds (see package
// fieldtype): a 400 naming the point (its line, for line protocol), the field and its type.
func (h *Handler) checkFieldTypes(ctx context.Context, pts []metric.Point, route string, body []byte) error {
	src := fieldtype.LineProtocol
	if route == routeJSON {
		src = fieldtype.JSON
	}
	err := h.fieldTypes.Check(ctx, pts, src)
	if err == nil {
		return nil
	}
	// Declared past the happy path: errors.As moves it to the heap.
	var pe *metric.PointError
	if errors.As(err, &pe) {
		if route == routeLine {
			pe.Line = metric.LineOf(body, pe.Index)
		}
		return &httpapi.Error{Status: http.StatusBadRequest, Message: pe.Error()}
	}
	return httpapi.Unavailable("field-type registry", err)
}

// readBody reads the request body into buf.body, decompressing gzip, and enforces the body limit
// both on the bytes received and on the bytes decompressed (so a gzip bomb gets 413 after reading
// at most the limit).
func (h *Handler) readBody(r *http.Request, buf *ingestBuf) error {
	limit := h.maxBodyBytes
	if r.ContentLength > limit {
		return httpapi.New(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", limit)
	}
	tooLarge := func(what string) error {
		return httpapi.New(http.StatusRequestEntityTooLarge, "%s exceeds %d bytes", what, limit)
	}
	buf.raw = limitedReader{r: r.Body, left: limit}
	var src io.Reader = &buf.raw
	compressed := false
	enc := strings.TrimSpace(r.Header.Get(echo.HeaderContentEncoding))
	switch {
	case enc == "", strings.EqualFold(enc, "identity"):
	case strings.EqualFold(enc, "gzip"), strings.EqualFold(enc, "x-gzip"):
		compressed = true
		if buf.br == nil {
			buf.br = bufio.NewReaderSize(src, 32<<10)
		} else {
			buf.br.Reset(src)
		}
		var err error
		if buf.gz == nil {
			buf.gz, err = gzip.NewReader(buf.br)
		} else {
			err = buf.gz.Reset(buf.br)
		}
		if err != nil {
			if buf.raw.over {
				return tooLarge("request body")
			}
			return httpapi.New(http.StatusBadRequest, "invalid gzip body: %v", err)
		}
		src = buf.gz
	default:
		return httpapi.New(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported: send gzip or no encoding", httpapi.Truncate(enc, 32))
	}
	buf.limited = io.LimitedReader{R: src, N: limit + 1}
	n, err := buf.body.ReadFrom(&buf.limited)
	switch {
	case buf.raw.over:
		return tooLarge("request body")
	case n > limit:
		return tooLarge("decompressed request body")
	case err != nil && compressed:
		return httpapi.New(http.StatusBadRequest, "invalid gzip body: %v", err)
	case err != nil:
		return httpapi.New(http.StatusBadRequest, "reading request body: %v", err)
	}
	return nil
}

// limitedReader reads at most left bytes from r and records whether r had more: unlike
// io.LimitReader it tells a body that ended at the limit from one that went past it.
type limitedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// Probe for one more byte: only a body that goes on is over the limit.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, errBodyTooLarge
		}
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

var errBodyTooLarge = errors.New("request body too large")
