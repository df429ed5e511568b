package gateway

import (
	"net/http"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
)

type latestResponse struct {
	Agent   string           `json:"agent"`
	Metrics []jsontext.Value `json:"metrics"`
}

type recentResponse struct {
	Agent   string           `json:"agent"`
	Metric  string           `json:"metric"`
	Samples []jsontext.Value `json:"samples"`
}

// latest answers GET /api/v1/agents/{id}/metrics/latest from the hot cache: the latest value of
// every series the agent sent within REDIS_TTL_SECONDS. PostgreSQL is asked only when the cache is
// empty, to tell an unknown agent (404) from a quiet one (empty list).
func (g *Gateway) latest(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	values, err := g.hot.Latest(ctx, id)
	if err != nil {
		return unavailable("hot cache", err)
	}
	if len(values) == 0 {
		if _, err := g.agents.Get(ctx, id); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, latestResponse{Agent: id, Metrics: values})
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
