package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// TestAnswer checks the one mapping from errors to status, Retry-After and whether the cause is
// internal (logged, not sent).
func TestAnswer(t *testing.T) {
	tests := []struct {
		err          error
		status       int
		retryAfter   time.Duration
		internal     bool
		bodyContains string
	}{
		{New(http.StatusBadRequest, "bad %s", "thing"), http.StatusBadRequest, 0, false, "bad thing"},
		{fmt.Errorf("wrapped: %w", Unavailable("stream", errors.New("dial tcp"))), http.StatusServiceUnavailable, RetryUnavailable, true, "stream is unavailable"},
		{fmt.Errorf("get: %w", postgres.ErrNotFound), http.StatusNotFound, 0, false, ""},
		{fmt.Errorf("create: %w", postgres.ErrConflict), http.StatusConflict, 0, false, ""},
		{&http.MaxBytesError{Limit: 10}, http.StatusRequestEntityTooLarge, 0, false, "10 bytes"},
		{echo.ErrNotFound, http.StatusNotFound, 0, false, "no such route"},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, RetryUnavailable, true, "unavailable"},
		{errors.New("boom"), http.StatusInternalServerError, 0, true, "internal error"},
	}
	for _, tt := range tests {
		status, body, retryAfter, internal := Answer(tt.err)
		if status != tt.status || retryAfter != tt.retryAfter || internal != tt.internal {
			t.Errorf("Answer(%v) = %d, retry %v, internal %v, want %d, %v, %v", tt.err, status, retryAfter, internal, tt.status, tt.retryAfter, tt.internal)
		}
		if tt.bodyContains != "" && !strings.Contains(body.Error, tt.bodyContains) {
			t.Errorf("Answer(%v) body = %q, want it to contain %q", tt.err, body.Error, tt.bodyContains)
		}
		if body.Error == "dial tcp" {
			t.Errorf("Answer(%v) leaks the cause", tt.err)
		}
	}
}
