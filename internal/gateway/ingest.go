package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/fieldtype"
	"github.com/agentmonitor/agentmonitor/internal/keycache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stream"
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
	br      *bufio.Reader // gzip reads through it (it would allocate its own otherwise)
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
	ingestBufs.Put(b)
}

// ingestJSON answers POST /api/v1/agents/{id}/metrics (JSON points, key as Bearer).
func (g *Gateway) ingestJSON(c echo.Context) error {
	return g.ingest(c, routeJSON)
}

// ingestLine answers POST /api/v2/write (line protocol, key as Token or Bearer). bucket and org are
// accepted and ignored: every agent's points go to the configured bucket.
func (g *Gateway) ingestLine(c echo.Context) error {
	return g.ingest(c, routeLine)
}

// ingest runs one batch through, in this order: authenticate the key; read the body within the
// limit; parse and validate every point (400 with the first bad one, nothing stored); charge the
// agent's rate (429); refuse while the backlog is over its bound (503); check the field types
// (400 naming the field and its type, 503 if Redis cannot be asked); append the canonical batch
// to the agent's stream shard (503 if Redis refuses); refresh the hot cache; 204.
func (g *Gateway) ingest(c echo.Context, route string) (err error) {
	start := time.Now()
	var points int
	defer func() {
		g.metrics.observeIngest(route, err, points, time.Since(start))
	}()

	r := c.Request()
	var key string
	if route == routeJSON {
		key = bearerToken(r, "Bearer")
	} else {
		key = bearerToken(r, "Token", "Bearer")
	}
	if key == "" {
		if route == routeJSON {
			return credentialError(r, "agent key", "Authorization: Bearer <agent key>", "Bearer")
		}
		return credentialError(r, "agent key", "Authorization: Token <agent key> (or Bearer <agent key>)", "Token", "Bearer")
	}
	if !wellFormedKey(key) {
		return newError(http.StatusUnauthorized, "invalid agent key")
	}
	agentID, err := g.keys.Resolve(r.Context(), key)
	if errors.Is(err, keycache.ErrUnknownKey) {
		return newError(http.StatusUnauthorized, "invalid agent key")
	}
	if err != nil {
		return unavailable("agent registry", err)
	}
	if route == routeJSON && !strings.EqualFold(c.Param("id"), agentID) {
		return newError(http.StatusForbidden, "this key belongs to another agent: post to /api/v1/agents/%s/metrics", agentID)
	}

	precision := ""
	if route == routeJSON {
		if err := requireJSON(r); err != nil {
			return err
		}
	} else {
		precision = c.QueryParam("precision")
		switch precision {
		case "", "ns", "us", "ms", "s":
		default:
			return newError(http.StatusBadRequest, "precision %q must be one of ns, us, ms, s", truncate(precision, 16))
		}
	}

	buf := ingestBufs.Get().(*ingestBuf)
	defer putIngestBuf(buf)
	if err := g.readBody(r, buf); err != nil {
		return err
	}

	now := g.now()
	var pts []metric.Point
	if route == routeJSON {
		pts, err = metric.ParseJSON(buf.body.Bytes(), now, g.limits)
	} else {
		pts, err = metric.ParseLineProtocol(buf.body.Bytes(), precision, now, g.limits)
	}
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Message: err.Error()}
	}

	res, err := g.limiter.AllowN(r.Context(), g.cfg.Redis.Prefix+"ingest:"+agentID, g.agentLimit, len(pts))
	if err != nil {
		return unavailable("rate limiter", err)
	}
	if res.Allowed == 0 {
		return &apiError{
			Status:     http.StatusTooManyRequests,
			Message:    fmt.Sprintf("agent over its rate of %d points/s (burst %d); retry later", g.agentLimit.Rate, g.agentLimit.Burst),
			RetryAfter: max(res.RetryAfter, time.Second),
		}
	}
	if g.backlog != nil && g.backlog.Over() {
		return &apiError{
			Status:     http.StatusServiceUnavailable,
			Message:    "the pipeline is behind (stream backlog over its bound); retry later",
			RetryAfter: retryBacklog,
			Outcome:    "backlog_full",
		}
	}

	if err := g.checkFieldTypes(r.Context(), pts, route, buf.body.Bytes()); err != nil {
		return err
	}

	buf.payload = metric.AppendLineProtocol(buf.payload[:0], pts, agentID)
	meta := map[string]string{
		stream.MetaAgent:      agentID,
		stream.MetaReceivedAt: strconv.FormatInt(now.UnixNano(), 10),
		stream.MetaPoints:     strconv.Itoa(len(pts)),
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), publishTimeout)
	defer cancel()
	if err := g.publisher.Publish(pctx, agentID, buf.payload, meta); err != nil {
		return unavailable("stream", err)
	}
	points = len(pts)

	// The batch is in the stream: from here on the answer is 204 whatever happens. A failed cache
	// refresh only delays the live view; failing the request would make the agent resend a batch
	// that is already stored.
	if err := g.hot.Update(pctx, agentID, pts, now); err != nil {
		g.metrics.hotCacheErrors.Inc()
		g.logger.Warn("refreshing hot cache failed", "agent", agentID, "err", err)
	}
	return c.NoContent(http.StatusNoContent)
}

// checkFieldTypes refuses points whose field types differ from those InfluxDB holds (see package
// fieldtype): a 400 naming the point (its line, for line protocol), the field and its type.
func (g *Gateway) checkFieldTypes(ctx context.Context, pts []metric.Point, route string, body []byte) error {
	src := fieldtype.LineProtocol
	if route == routeJSON {
		src = fieldtype.JSON
	}
	err := g.fieldTypes.Check(ctx, pts, src)
	var pe *metric.PointError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		if route == routeLine {
			pe.Line = metric.LineOf(body, pe.Index)
		}
		return &apiError{Status: http.StatusBadRequest, Message: pe.Error()}
	}
	return unavailable("field-type registry", err)
}

// readBody reads the request body into buf.body, decompressing gzip, and enforces the body limit
// both on the bytes received and on the bytes decompressed (so a gzip bomb gets 413 after reading
// at most the limit).
func (g *Gateway) readBody(r *http.Request, buf *ingestBuf) error {
	limit := g.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return newError(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", limit)
	}
	tooLarge := func(what string) error {
		return newError(http.StatusRequestEntityTooLarge, "%s exceeds %d bytes", what, limit)
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
			return newError(http.StatusBadRequest, "invalid gzip body: %v", err)
		}
		src = buf.gz
	default:
		return newError(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported: send gzip or no encoding", truncate(enc, 32))
	}
	n, err := buf.body.ReadFrom(io.LimitReader(src, limit+1))
	switch {
	case buf.raw.over:
		return tooLarge("request body")
	case n > limit:
		return tooLarge("decompressed request body")
	case err != nil && compressed:
		return newError(http.StatusBadRequest, "invalid gzip body: %v", err)
	case err != nil:
		return newError(http.StatusBadRequest, "reading request body: %v", err)
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
