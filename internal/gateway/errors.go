package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/httpapi"
)

// The handlers answer errors through package httpapi; these short names keep them readable.
type (
	apiError  = httpapi.Error
	errorBody = httpapi.Body
)

// newError returns an apiError with a formatted message (httpapi.New).
func newError(status int, format string, args ...any) *apiError {
	return httpapi.New(status, format, args...)
}

// unavailable wraps the failure of a dependency as a 503 that asks the client to retry.
func unavailable(what string, err error) *apiError { return httpapi.Unavailable(what, err) }

// answer maps any error a handler returns to its answer (httpapi.Answer, the one mapping).
func answer(err error) (status int, body errorBody, retryAfter time.Duration, internal bool) {
	return httpapi.Answer(err)
}

// credentialError is the 401 for a request without a credential under one of schemes.
func credentialError(r *http.Request, what, usage string, schemes ...string) *apiError {
	return httpapi.CredentialError(r, what, usage, schemes...)
}

// bearerToken returns the credentials of an Authorization header using one of schemes, or "".
func bearerToken(r *http.Request, schemes ...string) string {
	return httpapi.BearerToken(r, schemes...)
}

// requireJSON answers 415 unless the request says its body is application/json.
func requireJSON(r *http.Request) error { return httpapi.RequireJSON(r) }

// truncate shortens client text echoed in an error.
func truncate(s string, n int) string { return httpapi.Truncate(s, n) }

// wellFormedKey reports whether key could be an agent key at all (agent.WellFormedKey).
func wellFormedKey(key string) bool { return agent.WellFormedKey(key) }

// handleError is Echo's HTTPErrorHandler: it answers err in the common shape and logs what the
// client is not told.
func (g *Gateway) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, body, retryAfter, internal := answer(err)
	if internal {
		g.logger.Error("request failed", "err", err, "method", c.Request().Method,
			"path", c.Path(), "status", status, "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
	}
	if retryAfter > 0 {
		secs := int64((retryAfter + time.Second - 1) / time.Second)
		c.Response().Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	if status == http.StatusUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="agentmonitor"`)
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(status)
	} else {
		err = c.JSON(status, body)
	}
	if err != nil {
		g.logger.Debug("writing error answer", "err", err)
	}
}
