package gateway

import (
	"net/http"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
)

// latestResponse is the body of GET .../metrics/latest; Metrics is the JSON array the hot cache
// built (hotcache.AppendLatest).
type latestResponse struct {
	Agent   string         `json:"agent"`
	Metrics jsontext.Value `json:"metrics"`
}

type recentResponse struct {
	Agent   string           `json:"agent"`
	Metric  string           `json:"metric"`
	Samples []jsontext.Value `json:"samples"`
}

// latestBufs holds the buffers latest builds its responses in.
var latestBufs = sync.Pool{New: func() any { return new([]byte) }}

// latest answers GET /api/v1/agents/{id}/metrics/latest from the hot cache: the latest value of
// every series the agent sent within REDIS_TTL_SECONDS, as this copy read it at most
// LATEST_READ_MAX_AGE ago (latestCache). PostgreSQL is asked only when the cache is empty, to tell
// an unknown agent (404) from a quiet one (empty list).
//
// The body is latestResponse, written straight from the JSON the hot cache builds rather than
// through the JSON encoder, which would parse and check every value again: this is the most
// frequent read of the API (a dashboard polls it per agent), with a 1 ms p99 budget. ?pretty
// (Echo's indented JSON) goes through the encoder.
func (g *Gateway) latest(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	bp := latestBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 1<<20 {
			latestBufs.Put(bp)
		}
	}()
	buf := append((*bp)[:0], `{"agent":`...)
	buf, _ = jsontext.AppendQuote(buf, id)
	buf = append(buf, `,"metrics":`...)
	from := len(buf)
	buf, n, err := g.latestReads.AppendLatest(ctx, buf, id)
	*bp = buf
	if err != nil {
		return unavailable("hot cache", err)
	}
	if n == 0 {
		if _, err := g.agents.Get(ctx, id); err != nil {
			return err
		}
	}
	if _, pretty := c.QueryParams()["pretty"]; pretty || c.Echo().Debug {
		return c.JSON(http.StatusOK, latestResponse{Agent: id, Metrics: jsontext.Value(buf[from:])})
	}
	buf = append(buf, '}')
	*bp = buf
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, buf)
}

// recent answers GET /api/v1/agents/{id}/metrics/recent?metric=measurement.field: the samples of
// the last HOT_CACHE_WINDOW, oldest first.
func (g *Gateway) recent(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	name := c.QueryParam("metric")
	if err := hotcache.ValidMetric(name); err != nil {
		return err
	}
	ctx := c.Request().Context()
	samples, err := g.hot.Recent(ctx, id, name, g.now())
	if err != nil {
		return unavailable("hot cache", err)
	}
	if len(samples) == 0 {
		if _, err := g.agents.Get(ctx, id); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, recentResponse{Agent: id, Metric: name, Samples: samples})
}
