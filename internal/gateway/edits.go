package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// patchAgentRequest is the body of PATCH /api/v1/agents/{id}: the members given replace the
// agent's; labels replace the whole set ({} removes every label).
type patchAgentRequest struct {
	Name   *string            `json:"name"`
	Labels *map[string]string `json:"labels"`
}

// patchAgent answers PATCH /api/v1/agents/{id}: a new name, new labels, or both (400 when
// neither is given), checked as at registration; audited as agent.update. The alerter's
// label-selected rules follow within AGENTS_REFRESH_INTERVAL.
func (g *Gateway) patchAgent(c echo.Context) error {
	id, err := agentID(c)
	if err != nil {
		return err
	}
	var req patchAgentRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Name == nil && req.Labels == nil {
		return newError(http.StatusBadRequest, "nothing to change: give name, labels or both")
	}
	ctx := c.Request().Context()
	cur, err := g.agents.Get(ctx, id)
	if err != nil {
		return err
	}
	next := createAgentRequest{Name: cur.Name, Labels: cur.Labels}
	if req.Name != nil {
		next.Name = *req.Name
	}
	if req.Labels != nil {
		next.Labels = *req.Labels
	}
	if err := next.validate(); err != nil {
		return err
	}
	actor := sessionOf(c).Username
	a, err := g.agents.Update(ctx, cur.ID, next.Name, next.Labels, actor)
	if err != nil {
		return err
	}
	g.logger.Info("agent updated", "agent", a.ID, "name", a.Name, "actor", actor)
	return c.JSON(http.StatusOK, g.viewOfAgent(a, g.now()))
}

// patchUserRequest is the body of PATCH /api/v1/users/{username}.
type patchUserRequest struct {
	Role string `json:"role"`
}

// patchUser answers PATCH /api/v1/users/{username} (admin): a new role, audited as user.update.
// Taking the admin role from the last admin is 409. The user's sessions end, so that no session
// keeps the old role: they log in again.
func (g *Gateway) patchUser(c echo.Context) error {
	username := c.Param("username")
	var req patchUserRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if _, ok := roleRank[req.Role]; !ok {
		return newError(http.StatusBadRequest, "role %q must be one of admin, operator, viewer", truncate(req.Role, 32))
	}
	ctx := c.Request().Context()
	me := sessionOf(c).Username
	u, err := g.users.SetRole(ctx, username, req.Role, me)
	if err != nil {
		return err
	}
	if err := g.sessions.endAll(ctx, username); err != nil {
		// The role is changed; a session left with the old one would be a privilege kept.
		return unavailable("session store", err)
	}
	g.logger.Info("user role changed", "username", username, "role", u.Role, "actor", me)
	return c.JSON(http.StatusOK, viewOfUser(u))
}

// changePasswordRequest is the body of POST /api/v1/auth/password.
type changePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// changePassword answers POST /api/v1/auth/password: any signed-in user changes their own
// password, giving the current one (a wrong one counts as a failed login, limited the same
// way); audited as user.change_password. Every other session of the user ends; the one of the
// request stays.
func (g *Gateway) changePassword(c echo.Context) error {
	var req changePasswordRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	switch {
	case req.CurrentPassword == "":
		return newError(http.StatusBadRequest, "current_password is required")
	case utf8.RuneCountInString(req.NewPassword) < minPasswordLen:
		return newError(http.StatusBadRequest, "new_password must be at least %d characters", minPasswordLen)
	case len(req.NewPassword) > maxPasswordLen:
		return newError(http.StatusBadRequest, "new_password must be at most %d bytes", maxPasswordLen)
	case req.NewPassword == req.CurrentPassword:
		return newError(http.StatusBadRequest, "new_password must differ from current_password")
	}
	ctx := c.Request().Context()
	me := sessionOf(c).Username
	wrong := newError(http.StatusForbidden, "current_password is wrong")
	if len(req.CurrentPassword) > maxPasswordLen {
		return wrong
	}
	attempt, err := g.admitLogin(ctx, me, c.RealIP())
	if err != nil {
		return err
	}
	_, hash, err := g.users.Credentials(ctx, me)
	if err != nil {
		if errors.Is(err, postgres.ErrNotFound) {
			return err
		}
		return unavailable("user store", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(req.CurrentPassword)); err != nil {
		return cmp.Or[error](attempt.failed(ctx), wrong)
	}
	if err := attempt.succeeded(ctx); err != nil {
		return err
	}
	newHash, err := bcrypt.GenerateFromPassword([]byte(req.NewPassword), g.cfg.BcryptCost)
	if err != nil {
		return newError(http.StatusBadRequest, "new_password cannot be hashed: %v", err)
	}
	if err := g.users.SetPassword(ctx, me, string(newHash)); err != nil {
		return err
	}
	keep, _ := c.Get(ctxTokenHash).(string)
	if err := g.sessions.endOthers(ctx, me, keep); err != nil {
		return unavailable("session store", fmt.Errorf("password changed, other sessions not ended: %w", err))
	}
	g.logger.Info("user changed their password", "username", me)
	return c.NoContent(http.StatusNoContent)
}

// endOthers deletes every session of username but the one whose token hashes to keep (none when
// keep is ""): the sessions first (one DEL each, as they live in different cluster slots), then
// their index members, so that a failure half-way leaves no live session unindexed.
func (s *sessions) endOthers(ctx context.Context, username, keep string) error {
	idx := s.indexKey(username)
	members, err := s.rdb.SMembers(ctx, idx).Result()
	if err != nil {
		return fmt.Errorf("reading sessions of %s: %w", username, err)
	}
	ended := make([]any, 0, len(members))
	pipe := s.rdb.Pipeline()
	for _, m := range members {
		if m == keep {
			continue
		}
		pipe.Del(ctx, s.key(m))
		s.forget(m)
		ended = append(ended, m)
	}
	if len(ended) == 0 {
		return nil
	}
	_, err = pipe.Exec(ctx)
	for _, m := range ended {
		s.forget(m.(string)) // a read racing the DELs may have cached it again
	}
	if err != nil {
		return fmt.Errorf("ending sessions of %s: %w", username, err)
	}
	if err := s.rdb.SRem(ctx, idx, ended...).Err(); err != nil {
		return fmt.Errorf("ending sessions of %s (index): %w", username, err)
	}
	return nil
}
