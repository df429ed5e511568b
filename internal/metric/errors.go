package metric

import (
	"errors"
	"strconv"
)

// ErrEmptyBatch is wrapped by the parsers' error when a body holds no point at all.
var ErrEmptyBatch = errors.New("no points in the request")

// ErrTooManyPoints is wrapped by the parsers' error when a body holds more than
// Limits.MaxPoints points.
var ErrTooManyPoints = errors.New("too many points in the request")

// PointError describes the first invalid point of a request. Every error the parsers return
// for a problem inside one point is a *PointError; problems with the body as a whole (not
// JSON, trailing data, no points, too many points) are plain errors.
type PointError struct {
	// Index is the 0-based position of the point in the request, as in the JSON pointer
	// /points/{Index}.
	Index int
	// Line is the 1-based line of the point in a line-protocol body; 0 for JSON.
	Line int
	// Reason says what is wrong, naming the offending key.
	Reason string
}

// Error returns "line L: reason" for line protocol and "point I: reason" for JSON.
func (e *PointError) Error() string {
	if e.Line > 0 {
		return "line " + strconv.Itoa(e.Line) + ": " + e.Reason
	}
	return "point " + strconv.Itoa(e.Index) + ": " + e.Reason
}
