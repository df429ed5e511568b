package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/silence"
)

// silenceStore keeps silences (postgres.SilenceStore).
type silenceStore interface {
	Create(ctx context.Context, s silence.Silence, actor string) (silence.Silence, error)
	List(ctx context.Context, includeExpired bool) ([]silence.Silence, error)
	Get(ctx context.Context, id string) (silence.Silence, error)
	Delete(ctx context.Context, id, actor string) error
}

// silenceRequest is the body of POST /api/v1/silences: a silence without the members the
// server sets (id, created_by, created_at), which are refused as unknown.
type silenceRequest struct {
	Matchers silence.Matchers `json:"matchers"`
	StartsAt *time.Time       `json:"starts_at"`
	EndsAt   *time.Time       `json:"ends_at"`
	Weekly   *silence.Weekly  `json:"weekly"`
	Comment  string           `json:"comment"`
}

type silenceList struct {
	Silences []silence.Silence `json:"silences"`
}

// listSilences answers GET /api/v1/silences (viewer): the silences that can still hold back a
// notification, or every one with ?expired=true.
func (g *Gateway) listSilences(c echo.Context) error {
	var expired bool
	switch v := c.QueryParam("expired"); v {
	case "", "false":
	case "true":
		expired = true
	default:
		return newError(http.StatusBadRequest, "expired must be true or false, got %q", truncate(v, 32))
	}
	ss, err := g.silences.List(c.Request().Context(), expired)
	if err != nil {
		return err
	}
	if ss == nil {
		ss = []silence.Silence{}
	}
	return c.JSON(http.StatusOK, silenceList{Silences: ss})
}

// getSilence answers GET /api/v1/silences/{id} (viewer).
func (g *Gateway) getSilence(c echo.Context) error {
	s, err := g.silences.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s)
}

// createSilence answers POST /api/v1/silences (operator); created_by is the session's user.
func (g *Gateway) createSilence(c echo.Context) error {
	var req silenceRequest
	if err := decodeInto(c, &req); err != nil {
		return err
	}
	user := sessionOf(c).Username
	s := silence.Silence{
		Matchers: req.Matchers, StartsAt: req.StartsAt, EndsAt: req.EndsAt, Weekly: req.Weekly,
		Comment: req.Comment, CreatedBy: user,
	}
	if err := s.Validate(); err != nil {
		return fieldProblem(err)
	}
	created, err := g.silences.Create(c.Request().Context(), s, user)
	if err != nil {
		return fieldProblem(err)
	}
	g.logger.Info("silence created", "silence", created.ID, "actor", user)
	return c.JSON(http.StatusCreated, created)
}

// deleteSilence answers DELETE /api/v1/silences/{id} (operator): the silence ends at once.
func (g *Gateway) deleteSilence(c echo.Context) error {
	id := c.Param("id")
	if err := g.silences.Delete(c.Request().Context(), id, sessionOf(c).Username); err != nil {
		return err
	}
	g.logger.Info("silence deleted", "silence", id, "actor", sessionOf(c).Username)
	return c.NoContent(http.StatusNoContent)
}
