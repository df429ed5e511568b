package gateway

import (
	"context"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/textcheck"
	"github.com/agentmonitor/agentmonitor/internal/user"
)

// Password policy. bcrypt reads at most 72 bytes, so longer passwords are refused rather than
// silently truncated.
const (
	minPasswordLen = 8
	maxPasswordLen = 72
	maxUsernameLen = 64
)

type userView struct {
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

func viewOfUser(u user.User) userView {
	return userView{Username: u.Username, Role: u.Role, CreatedAt: u.CreatedAt}
}

type userList struct {
	Users []userView `json:"users"`
}

// listUsers answers GET /api/v1/users.
func (g *Gateway) listUsers(c echo.Context) error {
	users, err := g.users.List(c.Request().Context())
	if err != nil {
		return err
	}
	out := userList{Users: make([]userView, len(users))}
	for i, u := range users {
		out.Users[i] = viewOfUser(u)
	}
	return c.JSON(http.StatusOK, out)
}

type createUserRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

// validate checks the request; the store checks the username's charset (lowercase letters, digits
// and . _ @ -) with a message naming it.
func (r createUserRequest) validate() error {
	switch {
	case r.Username == "":
		return newError(http.StatusBadRequest, "username is required")
	case len(r.Username) > maxUsernameLen:
		return newError(http.StatusBadRequest, "username is longer than %d characters", maxUsernameLen)
	case textcheck.Name(r.Username) != nil:
		return newError(http.StatusBadRequest, "username %v", textcheck.Name(r.Username))
	case utf8.RuneCountInString(r.Password) < minPasswordLen:
		return newError(http.StatusBadRequest, "password must be at least %d characters", minPasswordLen)
	case len(r.Password) > maxPasswordLen:
		return newError(http.StatusBadRequest, "password must be at most %d bytes", maxPasswordLen)
	}
	if _, ok := roleRank[r.Role]; !ok {
		return newError(http.StatusBadRequest, "role %q must be one of admin, operator, viewer", r.Role)
	}
	return nil
}

// createUser answers POST /api/v1/users.
func (g *Gateway) createUser(c echo.Context) error {
	var req createUserRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), g.cfg.BcryptCost)
	if err != nil {
		return newError(http.StatusBadRequest, "password cannot be hashed: %v", err)
	}
	u, err := g.users.Create(c.Request().Context(), req.Username, string(hash), req.Role, sessionOf(c).Username)
	if err != nil {
		return err
	}
	g.logger.Info("user created", "username", u.Username, "role", u.Role, "actor", sessionOf(c).Username)
	return c.JSON(http.StatusCreated, viewOfUser(u))
}

// deleteUser answers DELETE /api/v1/users/{username}. An admin cannot delete their own account
// (409): the last admin could otherwise remove themself, and a slip would end the session in use.
// The store refuses to delete the last admin (409). The deleted user's sessions end at once.
func (g *Gateway) deleteUser(c echo.Context) error {
	username := c.Param("username")
	me := sessionOf(c).Username
	if username == me {
		return newError(http.StatusConflict, "you cannot delete your own account; ask another admin")
	}
	ctx := c.Request().Context()
	if err := g.users.Delete(ctx, username, me); err != nil {
		return err
	}
	// The user is gone from PostgreSQL; its sessions must not outlive it. A failure here is
	// retried in the background rather than failing a delete that already happened.
	if err := g.sessions.endAll(ctx, username); err != nil {
		g.logger.Warn("ending sessions of deleted user failed; retrying", "username", username, "err", err)
		g.background(func(bctx context.Context) {
			for range 5 {
				select {
				case <-bctx.Done():
					return
				case <-time.After(time.Second):
				}
				if err := g.sessions.endAll(bctx, username); err == nil {
					return
				}
			}
			g.logger.Error("sessions of deleted user could not be ended; they expire after SESSION_TTL", "username", username)
		})
	}
	g.logger.Info("user deleted", "username", username, "actor", me)
	return c.NoContent(http.StatusNoContent)
}

type auditList struct {
	Entries []postgres.AuditEntry `json:"entries"`
	Total   int                   `json:"total"`
	Limit   int                   `json:"limit"`
	Offset  int                   `json:"offset"`
}

// listAudit answers GET /api/v1/audit, newest first.
func (g *Gateway) listAudit(c echo.Context) error {
	limit, offset, err := paging(c)
	if err != nil {
		return err
	}
	entries, total, err := g.audit.List(c.Request().Context(), limit, offset)
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []postgres.AuditEntry{}
	}
	return c.JSON(http.StatusOK, auditList{Entries: entries, Total: total, Limit: limit, Offset: offset})
}
