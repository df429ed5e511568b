package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/textcheck"
)

// agentKeyPrefix starts every agent key (agent.KeyPrefix, agent.WellFormedKey).
const agentKeyPrefix = agent.KeyPrefix

// newAgentKey returns a fresh random agent key.
func newAgentKey() (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generating agent key: %w", err)
	}
	return agentKeyPrefix + base64.RawURLEncoding.EncodeToString(raw), nil
}

// Agent registration limits.
const (
	maxAgentNameLen  = 200 // characters, as the schema allows
	maxLabels        = 32
	maxLabelValueLen = 256 // characters
)

// labelKeyPattern is the charset of label keys: what Prometheus and InfluxDB tags accept without
// escaping, so labels can become tags or selectors later.
var labelKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,62}$`)

// agentView is an agent as the API shows it: its stored members and whether it is online.
type agentView struct {
	agent.Agent
	Status string `json:"status"`
	// PreviousKeyExpiresAt is when the key replaced by the last rotation stops working; null (not
	// left out, as agent.Agent does) when it no longer does.
	PreviousKeyExpiresAt *time.Time `json:"previous_key_expires_at"`
}

// viewOfAgent adds the online status: online while last_seen lies within AGENT_ONLINE_WINDOW.
func (g *Gateway) viewOfAgent(a agent.Agent, now time.Time) agentView {
	status := "offline"
	if a.LastSeen != nil && now.Sub(*a.LastSeen) <= g.cfg.AgentOnlineWindow {
		status = "online"
	}
	if a.Labels == nil {
		a.Labels = map[string]string{}
	}
	return agentView{Agent: a, Status: status, PreviousKeyExpiresAt: a.PreviousKeyExpiresAt}
}

type createAgentRequest struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// validate names the first field that is wrong.
func (r createAgentRequest) validate() error {
	name := r.Name
	switch {
	case name == "":
		return newError(http.StatusBadRequest, "name is required")
	case utf8.RuneCountInString(name) > maxAgentNameLen:
		return newError(http.StatusBadRequest, "name is longer than %d characters", maxAgentNameLen)
	case strings.TrimSpace(name) != name:
		return newError(http.StatusBadRequest, "name must not start or end with white space")
	case textcheck.Name(name) != nil:
		return newError(http.StatusBadRequest, "name %v", textcheck.Name(name))
	}
	if len(r.Labels) > maxLabels {
		return newError(http.StatusBadRequest, "labels: at most %d labels, got %d", maxLabels, len(r.Labels))
	}
	for k, v := range r.Labels {
		if !labelKeyPattern.MatchString(k) {
			return newError(http.StatusBadRequest, "labels: key %q must match %s", k, labelKeyPattern)
		}
		if utf8.RuneCountInString(v) > maxLabelValueLen {
			return newError(http.StatusBadRequest, "labels: value of %q is longer than %d characters", k, maxLabelValueLen)
		}
		if err := textcheck.Name(v); err != nil {
			return newError(http.StatusBadRequest, "labels: value of %q %v", k, err)
		}
	}
	return nil
}

type createdAgent struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`
	APIKey    string            `json:"api_key"`
}

// createAgent answers POST /api/v1/agents: 201 with the key, shown this once.
func (g *Gateway) createAgent(c echo.Context) error {
	var req createAgentRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	key, err := newAgentKey()
	if err != nil {
		return err
	}
	actor := sessionOf(c).Username
	a, err := g.agents.Create(c.Request().Context(), req.Name, req.Labels, agent.HashAPIKey(key), actor)
	if err != nil {
		return err
	}
	g.logger.Info("agent registered", "agent", a.ID, "name", a.Name, "actor", actor)
	labels := a.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return c.JSON(http.StatusCreated, createdAgent{ID: a.ID, Name: a.Name, Labels: labels, CreatedAt: a.CreatedAt, APIKey: key})
}

type agentList struct {
	Agents []agentView `json:"agents"`
	Total  int         `json:"total"`
	Limit  int         `json:"limit"`
	Offset int         `json:"offset"`
}

// listAgents answers GET /api/v1/agents, ordered by name.
func (g *Gateway) listAgents(c echo.Context) error {
	limit, offset, err := paging(c)
	if err != nil {
		return err
	}
	agents, total, err := g.agents.List(c.Request().Context(), limit, offset)
	if err != nil {
		return err
	}
	now := g.now()
	out := agentList{Agents: make([]agentView, len(agents)), Total: total, Limit: limit, Offset: offset}
	for i, a := range agents {
		out.Agents[i] = g.viewOfAgent(a, now)
	}
	return c.JSON(http.StatusOK, out)
}

// agentID returns the {id} path parameter. An id that is not a UUID names no agent: 404, the
// same answer as for an unknown one.
func agentID(c echo.Context) (string, error) {
	id := c.Param("id")
	if len(id) != 36 || uuid.Validate(id) != nil {
		return "", newError(http.StatusNotFound, "agent %q not found: ids are UUIDs", truncate(id, 64))
	}
	return strings.ToLower(id), nil
}

// getAgent answers GET /api/v1/agents/{id}.
func (g *Gateway) getAgent(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	a, err := g.agents.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, g.viewOfAgent(a, g.now()))
}

// deleteAgent answers DELETE /api/v1/agents/{id}: the agent, its key and its cached values go.
func (g *Gateway) deleteAgent(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	actor := sessionOf(c).Username
	if err := g.agents.Delete(c.Request().Context(), id, actor); err != nil {
		return err
	}
	g.keys.InvalidateAgent(id)
	if err := g.hot.Forget(c.Request().Context(), id); err != nil {
		// The agent is gone; its cached values expire after REDIS_TTL_SECONDS anyway.
		g.logger.Warn("forgetting hot cache of deleted agent failed", "agent", id, "err", err)
	}
	// After the hot cache, so that reads that begin from here on find it empty; forget also keeps
	// out what reads begun before bring back. (Other copies answer from their memory for up to
	// LATEST_READ_MAX_AGE.)
	g.latestReads.forget(id)
	g.logger.Info("agent deleted", "agent", id, "actor", actor)
	return c.NoContent(http.StatusNoContent)
}

// Paging bounds of list routes.
const (
	defaultPageLimit = 50
	maxPageLimit     = 1000
)

// paging reads ?limit= (1..1000, default 50) and ?offset= (>= 0, default 0).
func paging(c echo.Context) (limit, offset int, err error) {
	limit, offset = defaultPageLimit, 0
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageLimit {
			return 0, 0, newError(http.StatusBadRequest, "limit must be an integer from 1 to %d, got %q", maxPageLimit, truncate(s, 32))
		}
		limit = n
	}
	if s := c.QueryParam("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, 0, newError(http.StatusBadRequest, "offset must be a non-negative integer, got %q", truncate(s, 32))
		}
		offset = n
	}
	return limit, offset, nil
}
