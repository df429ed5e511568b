// Package httpapi holds what every handler of the HTTP API shares: the error type that knows its
// answer, its constructors, the one mapping from any error to status, body and Retry-After, and
// the credential and content-type checks whose failures are such errors. The gateway's Echo error
// handler and the ingest handler both answer through it.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
)

// Body is the shape of every error answer: {"error": "...", "details": [...]}.
type Body struct {
	Error   string   `json:"error"`
	Details []string `json:"details,omitempty"`
}

// Error is an error that knows its HTTP answer. Err, when set, is the internal cause: it is
// logged, never sent.
type Error struct {
	Status     int
	Message    string
	Details    []string
	RetryAfter time.Duration // sent as Retry-After (whole seconds, at least 1) when positive
	Outcome    string        // ingest outcome label, when the status alone does not say it
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error with a formatted message.
func New(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Retry-After values sent with 503.
const (
	RetryUnavailable = 2 * time.Second // Redis or PostgreSQL did not answer
	RetryBacklog     = 5 * time.Second // consumers are behind; give them time
)

// Unavailable wraps the failure of a dependency as a 503 that asks the client to retry.
func Unavailable(what string, err error) *Error {
	return &Error{
		Status:     http.StatusServiceUnavailable,
		Message:    what + " is unavailable, retry later",
		RetryAfter: RetryUnavailable,
		Outcome:    "unavailable",
		Err:        err,
	}
}

// Answer maps any error a handler returns to the status, body and Retry-After it is answered with.
// It is the only place that decides statuses. internal reports an error whose text is not for the
// client (it is logged instead).
func Answer(err error) (status int, body Body, retryAfter time.Duration, internal bool) {
	var (
		ae  *Error
		pe  *metric.PointError
		he  *echo.HTTPError
		mbe *http.MaxBytesError
		ne  net.Error
	)
	switch {
	case badTextError(err): // before apiError: a store failure wrapped as 503 may be this
		return http.StatusBadRequest, Body{Error: "a text value contains a NUL character or invalid UTF-8, which cannot be stored"}, 0, false
	case redisconn.IsOOM(err): // before apiError: whatever wrapped it, nothing was written
		return http.StatusServiceUnavailable, Body{Error: "the stream store (Redis) is out of memory, retry later"}, RetryBacklog, true
	case redisconn.IsTransient(err):
		return http.StatusServiceUnavailable, Body{Error: "the stream store (Redis) is unavailable, retry later"}, RetryUnavailable, true
	case errors.As(err, &ae):
		status, body, retryAfter = ae.Status, Body{Error: ae.Message, Details: ae.Details}, ae.RetryAfter
		return status, body, retryAfter, status >= 500
	case errors.As(err, &pe):
		return http.StatusBadRequest, Body{Error: pe.Error()}, 0, false
	case errors.Is(err, hotcache.ErrInvalidMetric), errors.Is(err, postgres.ErrInvalid):
		return http.StatusBadRequest, Body{Error: err.Error()}, 0, false
	case errors.Is(err, postgres.ErrNotFound):
		return http.StatusNotFound, Body{Error: err.Error()}, 0, false
	case errors.Is(err, postgres.ErrConflict):
		return http.StatusConflict, Body{Error: err.Error()}, 0, false
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, Body{Error: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}, 0, false
	case errors.As(err, &he):
		return echoError(he)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return http.StatusServiceUnavailable, Body{Error: "a dependency is unavailable, retry later"}, RetryUnavailable, true
	default:
		return http.StatusInternalServerError, Body{Error: "internal error"}, 0, true
	}
}

// echoError translates Echo's own errors (no route, wrong method, and the like) into our shape.
func echoError(he *echo.HTTPError) (int, Body, time.Duration, bool) {
	switch he.Code {
	case http.StatusNotFound:
		return he.Code, Body{Error: "no such route"}, 0, false
	case http.StatusMethodNotAllowed:
		return he.Code, Body{Error: "method not allowed on this route"}, 0, false
	}
	msg, ok := he.Message.(string)
	if !ok || he.Code >= 500 {
		msg = http.StatusText(he.Code)
	}
	return he.Code, Body{Error: msg}, 0, he.Code >= 500
}

// sqlStater is what PostgreSQL drivers' errors (lib/pq, pgx) answer the SQLSTATE with.
type sqlStater interface{ SQLState() string }

// badTextError reports whether err is PostgreSQL refusing text bytes: 22021
// (character_not_in_repertoire: NUL, invalid UTF-8) or 22P05 (untranslatable_character). It is the
// safety net of Answer for text that an edge check missed: the client's input, so a 400.
func badTextError(err error) bool {
	var se sqlStater
	if !errors.As(err, &se) {
		return false
	}
	switch se.SQLState() {
	case "22021", "22P05":
		return true
	}
	return false
}
