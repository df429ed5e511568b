package gateway

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// rotateKeyRequest is the optional body of POST /api/v1/agents/{id}/rotate-key.
type rotateKeyRequest struct {
	// Grace is how long the replaced key keeps working, as a Go duration ("1h", "90m"); empty or
	// "0s": it stops at once.
	Grace string `json:"grace"`
}

type rotatedKey struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
	// PreviousKeyExpiresAt is when the replaced key stops working; null: it already has.
	PreviousKeyExpiresAt *time.Time `json:"previous_key_expires_at"`
}

// rotateKey answers POST /api/v1/agents/{id}/rotate-key with a new key. The body is optional:
// {"grace":"1h"} keeps the old key working for that long (at most postgres.MaxKeyGrace), so a
// fleet can be re-keyed without dropping data; without it the old key stops at once on this
// gateway and within KEY_CACHE_TTL on the others. A key replaced by an earlier rotation and still
// in its grace period stops at once either way.
func (g *Gateway) rotateKey(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	var req rotateKeyRequest
	if r := c.Request(); r.ContentLength != 0 {
		if err := decodeBody(c, &req); err != nil {
			return err
		}
	}
	var grace time.Duration
	if req.Grace != "" {
		grace, err = time.ParseDuration(req.Grace)
		if err != nil || grace < 0 || grace > postgres.MaxKeyGrace {
			return newError(http.StatusBadRequest, "grace %q must be a duration from 0s to %s, such as \"1h\"", truncate(req.Grace, 32), postgres.MaxKeyGrace)
		}
	}
	key, err := newAgentKey()
	if err != nil {
		return err
	}
	actor := sessionOf(c).Username
	a, err := g.agents.RotateKeyGrace(c.Request().Context(), id, agent.HashAPIKey(key), grace, actor)
	if err != nil {
		return err
	}
	g.keys.InvalidateAgent(id)
	g.logger.Info("agent key rotated", "agent", id, "actor", actor, "grace", grace)
	return c.JSON(http.StatusOK, rotatedKey{ID: id, APIKey: key, PreviousKeyExpiresAt: a.PreviousKeyExpiresAt})
}

// revokePreviousKey answers DELETE /api/v1/agents/{id}/previous-key: the key replaced by the
// last rotation stops working now instead of at the end of its grace period (at once on this
// gateway, within KEY_CACHE_TTL on the others). 404 when there is no such key in its grace
// period.
func (g *Gateway) revokePreviousKey(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	actor := sessionOf(c).Username
	if err := g.agents.RevokePreviousKey(c.Request().Context(), id, actor); err != nil {
		return err
	}
	g.keys.InvalidateAgent(id)
	g.logger.Info("previous agent key revoked", "agent", id, "actor", actor)
	return c.NoContent(http.StatusNoContent)
}
