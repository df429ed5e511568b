package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/textcheck"
)

// Text that reaches PostgreSQL must be valid UTF-8 without NUL (PITFALLS.md: 22021), or a client's
// mistake becomes a 5xx. It is checked at the edge, once for every route: checkURLText covers the
// path and query, checkBodyText every string (member names included) of a JSON body. Echo and
// net/url hand over whatever bytes came, so the checks read what was sent, not a cleaned copy.

// checkURLText is middleware answering 400, naming the parameter, when a path parameter, the path
// or a query parameter (name or value) is not storable text.
func checkURLText(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		names, values := c.ParamNames(), c.ParamValues()
		for i, name := range names {
			if i >= len(values) {
				break
			}
			v := values[i]
			if u, err := url.PathUnescape(v); err == nil {
				v = u
			}
			if err := textcheck.Storable(v); err != nil {
				return newError(http.StatusBadRequest, "path parameter %q %v", name, err)
			}
		}
		r := c.Request()
		if err := textcheck.Storable(r.URL.Path); err != nil {
			return newError(http.StatusBadRequest, "the URL path %v", err)
		}
		if r.URL.RawQuery != "" && !plainQuery(r.URL.RawQuery) {
			q, err := url.ParseQuery(r.URL.RawQuery)
			if err != nil {
				return newError(http.StatusBadRequest, "malformed query string: %v", err)
			}
			for k, vs := range q {
				if err := textcheck.Storable(k); err != nil {
					return newError(http.StatusBadRequest, "a query parameter name %v", err)
				}
				for _, v := range vs {
					if err := textcheck.Storable(v); err != nil {
						return newError(http.StatusBadRequest, "query parameter %q %v", k, err)
					}
				}
			}
		}
		return next(c)
	}
}

// plainQuery reports whether a raw query string is ASCII without NUL, '%' or ';': then
// url.ParseQuery cannot fail on it and every name and value it holds is storable, so it need
// not be parsed here (the query of nearly every request, /api/v2/write?bucket=x&precision=s).
func plainQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c == 0 || c >= 0x80 || c == '%' || c == ';' {
			return false
		}
	}
	return true
}

// checkBodyText answers 400 naming the member (as a JSON pointer) when a string of the JSON body,
// a member name or a value, holds NUL or is not valid UTF-8 (raw, or escaped as a lone surrogate).
// body has already been decoded successfully, so it is well-formed JSON.
func checkBodyText(body []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.ReadToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			// Invalid UTF-8 is refused here as by the decoder; anything else was already caught.
			return &apiError{Status: http.StatusBadRequest, Message: describeJSONError(err)}
		}
		if tok.Kind() != '"' {
			continue
		}
		s := tok.String()
		if !strings.ContainsRune(s, 0) {
			continue
		}
		where := string(dec.StackPointer())
		if where == "" {
			where = "/"
		}
		return newError(http.StatusBadRequest, "invalid JSON at %q: the string %v", where, textcheck.ErrNUL)
	}
}
