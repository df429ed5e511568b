package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
)

// errorBody is the shape of every error answer: {"error": "...", "details": [...]}.
type errorBody struct {
	Error   string   `json:"error"`
	Details []string `json:"details,omitempty"`
}

// apiError is an error that knows its HTTP answer. Err, when set, is the internal cause: it is
// logged, never sent.
type apiError struct {
	Status     int
	Message    string
	Details    []string
	RetryAfter time.Duration // sent as Retry-After (whole seconds, at least 1) when positive
	Outcome    string        // ingest outcome label, when the status alone does not say it
	Err        error
}

func (e *apiError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *apiError) Unwrap() error { return e.Err }

// newError returns an apiError with a formatted message.
func newError(status int, format string, args ...any) *apiError {
	return &apiError{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Retry-After values sent with 503.
const (
	retryUnavailable = 2 * time.Second // Redis or PostgreSQL did not answer
	retryBacklog     = 5 * time.Second // consumers are behind; give them time
)

// unavailable wraps the failure of a dependency as a 503 that asks the client to retry.
func unavailable(what string, err error) *apiError {
	return &apiError{
		Status:     http.StatusServiceUnavailable,
		Message:    what + " is unavailable, retry later",
		RetryAfter: retryUnavailable,
		Outcome:    "unavailable",
		Err:        err,
	}
}

// answer maps any error a handler returns to the status, body and Retry-After it is answered with.
// It is the only place that decides statuses. internal reports an error whose text is not for the
// client (it is logged instead).
func answer(err error) (status int, body errorBody, retryAfter time.Duration, internal bool) {
	var (
		ae  *apiError
		pe  *metric.PointError
		he  *echo.HTTPError
		mbe *http.MaxBytesError
		ne  net.Error
	)
	switch {
	case badTextError(err): // before apiError: a store failure wrapped as 503 may be this
		return http.StatusBadRequest, errorBody{Error: "a text value contains a NUL character or invalid UTF-8, which cannot be stored"}, 0, false
	case redisconn.IsOOM(err): // before apiError: whatever wrapped it, nothing was written
		return http.StatusServiceUnavailable, errorBody{Error: "the stream store (Redis) is out of memory, retry later"}, retryBacklog, true
	case redisconn.IsTransient(err):
		return http.StatusServiceUnavailable, errorBody{Error: "the stream store (Redis) is unavailable, retry later"}, retryUnavailable, true
	case errors.As(err, &ae):
		status, body, retryAfter = ae.Status, errorBody{Error: ae.Message, Details: ae.Details}, ae.RetryAfter
		return status, body, retryAfter, status >= 500
	case errors.As(err, &pe):
		return http.StatusBadRequest, errorBody{Error: pe.Error()}, 0, false
	case errors.Is(err, hotcache.ErrInvalidMetric), errors.Is(err, postgres.ErrInvalid):
		return http.StatusBadRequest, errorBody{Error: err.Error()}, 0, false
	case errors.Is(err, postgres.ErrNotFound):
		return http.StatusNotFound, errorBody{Error: err.Error()}, 0, false
	case errors.Is(err, postgres.ErrConflict):
		return http.StatusConflict, errorBody{Error: err.Error()}, 0, false
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}, 0, false
	case errors.As(err, &he):
		return echoError(he)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return http.StatusServiceUnavailable, errorBody{Error: "a dependency is unavailable, retry later"}, retryUnavailable, true
	default:
		return http.StatusInternalServerError, errorBody{Error: "internal error"}, 0, true
	}
}

// echoError translates Echo's own errors (no route, wrong method, and the like) into our shape.
func echoError(he *echo.HTTPError) (int, errorBody, time.Duration, bool) {
	switch he.Code {
	case http.StatusNotFound:
		return he.Code, errorBody{Error: "no such route"}, 0, false
	case http.StatusMethodNotAllowed:
		return he.Code, errorBody{Error: "method not allowed on this route"}, 0, false
	}
	msg, ok := he.Message.(string)
	if !ok || he.Code >= 500 {
		msg = http.StatusText(he.Code)
	}
	return he.Code, errorBody{Error: msg}, 0, he.Code >= 500
}

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
