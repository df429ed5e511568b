package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
)

// maxJSONBody bounds the body of every operator JSON route; none needs more.
const maxJSONBody = 64 << 10

// strictJSON are the decoding options of every request body. json v2 already rejects duplicate
// names, invalid UTF-8 and trailing data by default and matches names case-sensitively; unknown
// names are rejected on top. (Echo's binder accepts all of these silently: see PITFALLS.md.)
var strictJSON = json.JoinOptions(json.RejectUnknownMembers(true))

// decodeBody reads the request body of a JSON route into v strictly: Content-Type must be JSON
// (415), the body at most maxJSONBody bytes (413) and exactly one JSON value of v's shape (400
// naming the problem).
func decodeBody(c echo.Context, v any) error {
	r := c.Request()
	if err := requireJSON(r); err != nil {
		return err
	}
	if enc := r.Header.Get(echo.HeaderContentEncoding); enc != "" && !strings.EqualFold(enc, "identity") {
		return newError(http.StatusUnsupportedMediaType, "Content-Encoding %q is not accepted on this route", enc)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		return newError(http.StatusBadRequest, "reading request body: %v", err)
	}
	if len(body) > maxJSONBody {
		return newError(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", maxJSONBody)
	}
	if err := json.Unmarshal(body, v, strictJSON); err != nil {
		return &apiError{Status: http.StatusBadRequest, Message: describeJSONError(err)}
	}
	return checkBodyText(body)
}

// describeJSONError turns a json v2 decoding error into a message for the client that names the
// member and the problem, without Go type names.
func describeJSONError(err error) string {
	var (
		se *json.SemanticError
		sx *jsontext.SyntacticError
	)
	switch {
	case errors.As(err, &se):
		where := string(se.JSONPointer)
		if errors.Is(se.Err, json.ErrUnknownName) {
			return fmt.Sprintf("invalid JSON: unknown field %q", where)
		}
		if where == "" {
			where = "/"
		}
		got := metric.JSONKindName(se.JSONKind)
		if got == "" {
			return fmt.Sprintf("invalid JSON at %q: %v", where, se.Err)
		}
		if se.GoType != nil {
			return fmt.Sprintf("invalid JSON at %q: %s is not allowed here, want %s", where, got, goKindName(se.GoType.Kind().String()))
		}
		return fmt.Sprintf("invalid JSON at %q: unexpected %s", where, got)
	case errors.As(err, &sx):
		switch {
		case errors.Is(sx.Err, jsontext.ErrDuplicateName):
			return fmt.Sprintf("invalid JSON: duplicate field %q", string(sx.JSONPointer))
		case errors.Is(sx.Err, io.ErrUnexpectedEOF):
			return "invalid JSON: unexpected end of input"
		}
		reason := sx.Err.Error()
		if strings.Contains(reason, "after top-level value") {
			return fmt.Sprintf("invalid JSON: trailing data after the JSON value at byte %d", sx.ByteOffset)
		}
		if sx.JSONPointer != "" {
			return fmt.Sprintf("invalid JSON at %q (byte %d): %s", string(sx.JSONPointer), sx.ByteOffset, reason)
		}
		return fmt.Sprintf("invalid JSON at byte %d: %s", sx.ByteOffset, reason)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "invalid JSON: unexpected end of input"
	}
	return "invalid JSON"
}

func goKindName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32", "uint", "uint64", "float64", "float32":
		return "a number"
	}
	return "another type"
}

// jsonSerializer makes Echo's c.JSON encode with json v2 (deterministic map order) and refuses
// Echo's lax binder: every body is decoded with decodeBody instead.
type jsonSerializer struct{}

var jsonOut = json.JoinOptions(json.Deterministic(true))

// Serialize writes i as JSON.
func (jsonSerializer) Serialize(c echo.Context, i any, indent string) error {
	opts := jsonOut
	if indent != "" {
		opts = json.JoinOptions(jsonOut, jsontext.WithIndent(indent))
	}
	return json.MarshalWrite(c.Response(), i, opts)
}

// Deserialize is not used: handlers call decodeBody. It decodes strictly all the same.
func (jsonSerializer) Deserialize(c echo.Context, i any) error {
	return decodeBody(c, i)
}
