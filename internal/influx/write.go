package influx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// ErrInvalid marks data InfluxDB refused as bad (a line it cannot parse, a field type conflict,
// points outside the retention period): writing the same data again fails the same way. Part of
// the body may have been written.
var ErrInvalid = errors.New("influxdb rejected the data as invalid")

// ErrTooLarge marks a write refused because its body is over the server's size limit (413):
// smaller writes of the same data may succeed.
var ErrTooLarge = errors.New("influxdb rejected the write as too large")

// WriteError is a failed Write. It matches ErrInvalid or ErrTooLarge (errors.Is) when InfluxDB
// refused the data itself; any other WriteError is transient: the server is down, overloaded, slow,
// or misconfigured (401, 403, 404), and the same write may succeed later.
type WriteError struct {
	StatusCode int           // the HTTP status, 0 when no answer was received
	Message    string        // InfluxDB's message, or the transport error
	Retry      time.Duration // the server's Retry-After, 0 when it gave none
	kind       error         // ErrInvalid, ErrTooLarge or nil (transient)
	err        error         // the client's error
}

// Error returns InfluxDB's answer, or the transport error.
func (e *WriteError) Error() string {
	if e.StatusCode == 0 {
		return "writing to influxdb: " + e.Message
	}
	return fmt.Sprintf("influxdb answered %d: %s", e.StatusCode, e.Message)
}

// Unwrap returns the class sentinel (if any) and the client's error.
func (e *WriteError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// RetryAfter returns how long the server asked the client to wait before retrying, 0 if it did
// not say. The stream consumer's backoff honours it.
func (e *WriteError) RetryAfter() time.Duration { return e.Retry }

// Transient reports whether the same write may succeed later.
func (e *WriteError) Transient() bool { return e.kind == nil }

// Write posts body, line protocol with nanosecond timestamps and one point per line, to the
// bucket in one request. It returns nil once InfluxDB answered 204, else a *WriteError (see its
// classes). It never retries; the caller does.
//
// It goes through WriteAPIBlocking.WriteRecord, which takes a string: converting body costs one
// copy, a few tens of microseconds for a 5000-point batch against tens of milliseconds for the
// write itself (BenchmarkWrite), so the lower-level HTTP service is not worth bypassing the API for.
func (c *Client) Write(ctx context.Context, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := c.write.WriteRecord(ctx, string(body)); err != nil {
		return classify(err)
	}
	return nil
}

// badData lists the messages InfluxDB (1.8 and 2.x) gives when the points themselves are at
// fault. A 400 without one of them (such as "database is required") is a configuration or
// transport problem and stays transient: data is never rejected for it.
var badData = []string{
	"unable to parse",
	"partial write",
	"field type conflict",
	"beyond retention",
}

func classify(err error) *WriteError {
	var herr *ihttp.Error
	if !errors.As(err, &herr) || herr.StatusCode == 0 {
		return &WriteError{Message: err.Error(), err: err}
	}
	msg := herr.Message
	if msg == "" {
		// 1.8 answers {"error": "..."}, which the client does not decode; the header has it.
		msg = herr.Header.Get("X-Influxdb-Error")
	}
	if msg == "" {
		msg = http.StatusText(herr.StatusCode)
	}
	we := &WriteError{
		StatusCode: herr.StatusCode,
		Message:    msg,
		Retry:      time.Duration(herr.RetryAfter) * time.Second,
		err:        herr,
	}
	switch herr.StatusCode {
	case http.StatusRequestEntityTooLarge:
		we.kind = ErrTooLarge
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		lower := strings.ToLower(msg)
		for _, s := range badData {
			if strings.Contains(lower, s) {
				we.kind = ErrInvalid
				break
			}
		}
	}
	return we
}
