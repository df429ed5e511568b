package gateway

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/history"
)

// maxFleetAgents bounds the agents one fleet history query names (each is one InfluxQL term).
const maxFleetAgents = 1000

// initHistory builds the history engine on the gateway's InfluxDB client; it does not contact
// InfluxDB.
func (g *Gateway) initHistory() error {
	var err error
	g.history, err = history.New(g.influx, history.LayoutOf(g.influx, g.cfg.Influx.RetentionDays), g.cfg.History, func() time.Time { return g.now() })
	return err
}

// historyParams are the query parameters every history route reads; the fleet route adds its own.
var historyParams = []string{"metric", "start", "end", "every", "fn", "tier"}

// parseHistoryQuery reads the parameters common to both history routes, refusing unknown ones
// with 400 naming the parameter.
func (g *Gateway) parseHistoryQuery(c echo.Context, extra ...string) (history.Query, error) {
	q, err := g.parseHistoryParams(c, extra...)
	return q, badParam(err)
}

// badParam turns a *history.ParamError into a 400 naming the parameter; other errors pass.
func badParam(err error) error {
	var pe *history.ParamError
	if errors.As(err, &pe) {
		return newError(http.StatusBadRequest, "%s", pe.Error())
	}
	return err
}

func (g *Gateway) parseHistoryParams(c echo.Context, extra ...string) (history.Query, error) {
	qs := c.QueryParams()
	for p, vs := range qs {
		known := strings.HasPrefix(p, "tag.") || slices.Contains(historyParams, p) || slices.Contains(extra, p)
		if !known {
			return history.Query{}, newError(http.StatusBadRequest, "unknown parameter %q: want metric, start, end, every, fn, tier, tag.<key>%s", truncate(p, 64), strings.Join(prefixed(", ", extra), ""))
		}
		if len(vs) > 1 && !strings.HasPrefix(p, "tag.") {
			return history.Query{}, newError(http.StatusBadRequest, "invalid %s: given %d times", p, len(vs))
		}
	}
	var q history.Query
	var err error
	if q.Measurement, q.Field, err = history.ParseMetric(qs.Get("metric")); err != nil {
		return q, err
	}
	if q.Fn, err = history.ParseFn(qs.Get("fn")); err != nil {
		return q, err
	}
	if q.Start, q.End, err = history.ParseRange(qs.Get("start"), qs.Get("end"), g.now()); err != nil {
		return q, err
	}
	if q.Every, err = history.ParseEvery(qs.Get("every")); err != nil {
		return q, err
	}
	if q.Tags, err = history.ParseTagFilters(qs); err != nil {
		return q, err
	}
	q.Tier = qs.Get("tier")
	return q, nil
}

// agentHistory answers GET /api/v1/agents/{id}/metrics/history: one agent's series of a metric.
func (g *Gateway) agentHistory(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	q, err := g.parseHistoryQuery(c)
	if err != nil {
		return err
	}
	if _, err := g.agents.Get(c.Request().Context(), id); err != nil {
		return err
	}
	q.Agents, q.OmitAgent = []string{id}, true
	return g.answerHistory(c, q)
}

// fleetHistory answers GET /api/v1/metrics/history: a metric over several agents (agents= ids or
// a label selector, every agent when left out), one series per group_by value (agent by default).
func (g *Gateway) fleetHistory(c echo.Context) error {
	q, err := g.parseHistoryQuery(c, "agents", "group_by")
	if err != nil {
		return err
	}
	groupBy := c.QueryParam("group_by")
	if groupBy == "" {
		groupBy = "agent"
	}
	if err := history.ValidName("group_by", groupBy); err != nil {
		return badParam(err)
	}
	q.GroupBy = []string{groupBy}
	if q.Agents, err = g.resolveAgents(c, c.QueryParam("agents")); err != nil {
		return err
	}
	if q.Agents != nil && len(q.Agents) == 0 {
		// A selector that matches no agent: an empty answer, planned as any other.
		p, err := g.history.Plan(q)
		if err != nil {
			return historyError(err)
		}
		return c.JSON(http.StatusOK, history.Result{Metric: q.Measurement + "." + q.Field, Fn: q.Fn,
			Every: history.FormatEvery(p.Every), Tier: p.Tier, Start: p.Start, End: p.End, Series: []history.Series{}})
	}
	return g.answerHistory(c, q)
}

// resolveAgents reads agents=: "" is every agent (nil), "id,id,..." those agents, and a label
// selector "key=value[,key=value]" the registered agents having all those labels (possibly none).
func (g *Gateway) resolveAgents(c echo.Context, spec string) ([]string, error) {
	if spec == "" {
		return nil, nil
	}
	bad := func(format string, args ...any) error {
		return newError(http.StatusBadRequest, "invalid agents: "+format, args...)
	}
	items := strings.Split(spec, ",")
	if len(items) > maxFleetAgents {
		return nil, bad("%d entries, at most %d", len(items), maxFleetAgents)
	}
	if !strings.Contains(spec, "=") {
		ids := make([]string, 0, len(items))
		for _, it := range items {
			if len(it) != 36 || uuid.Validate(it) != nil {
				return nil, bad("%q is not an agent id (a UUID); for a label selector write key=value", truncate(it, 64))
			}
			if id := strings.ToLower(it); !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		return ids, nil
	}
	want := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || !labelKeyPattern.MatchString(k) || v == "" || utf8.RuneCountInString(v) > maxLabelValueLen ||
			!utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, bad("%q: want a label selector key=value[,key=value] or agent ids", truncate(it, 64))
		}
		want[k] = v
	}
	ids := []string{}
	const page = 500
	for offset := 0; ; offset += page {
		agents, total, err := g.agents.List(c.Request().Context(), page, offset)
		if err != nil {
			return nil, err
		}
	next:
		for _, a := range agents {
			for k, v := range want {
				if a.Labels[k] != v {
					continue next
				}
			}
			ids = append(ids, a.ID)
		}
		if len(agents) < page || offset+page >= total {
			break
		}
	}
	if len(ids) > maxFleetAgents {
		return nil, bad("the selector matches %d agents, at most %d: narrow it", len(ids), maxFleetAgents)
	}
	return ids, nil
}

// answerHistory runs q and answers its result.
func (g *Gateway) answerHistory(c echo.Context, q history.Query) error {
	res, err := g.history.Query(c.Request().Context(), q)
	if err != nil {
		return historyError(err)
	}
	return c.JSON(http.StatusOK, res)
}

// listMetrics answers GET /api/v1/metrics[?agent=id]: the measurements and fields stored, with
// their types and tag keys, for the fleet or for one agent.
func (g *Gateway) listMetrics(c echo.Context) error {
	for p := range c.QueryParams() {
		if p != "agent" {
			return newError(http.StatusBadRequest, "unknown parameter %q: want agent", truncate(p, 64))
		}
	}
	agent := c.QueryParam("agent")
	if agent != "" {
		if len(agent) != 36 || uuid.Validate(agent) != nil {
			return newError(http.StatusBadRequest, "invalid agent: %q is not an agent id (a UUID)", truncate(agent, 64))
		}
		agent = strings.ToLower(agent)
		if _, err := g.agents.Get(c.Request().Context(), agent); err != nil {
			return err
		}
	}
	ms, err := g.history.Metrics(c.Request().Context(), agent)
	if err != nil {
		return historyError(err)
	}
	return c.JSON(http.StatusOK, map[string]any{"metrics": ms})
}

// historyError maps the history engine's errors: a bad parameter is 400 naming it, a refused
// aggregation 400, a timeout 504, anything else InfluxDB being unavailable (503).
func historyError(err error) error {
	var pe *history.ParamError
	var qe *history.QueryError
	switch {
	case errors.As(err, &pe):
		return badParam(err)
	case errors.As(err, &qe):
		return &apiError{Status: http.StatusBadRequest, Message: "invalid metric or fn: InfluxDB cannot compute this (is the field numeric?)", Details: []string{qe.Msg}, Err: err}
	case errors.Is(err, history.ErrTimeout):
		return &apiError{Status: http.StatusGatewayTimeout, Message: "the history query took longer than HISTORY_QUERY_TIMEOUT: narrow the range, raise every or filter the series", Err: err}
	}
	return unavailable("influxdb", err)
}

func prefixed(sep string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = sep + s
	}
	return out
}
