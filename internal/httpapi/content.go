package httpapi

import (
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// RequireJSON answers 415 unless the request says its body is application/json.
func RequireJSON(r *http.Request) error {
	ct := r.Header.Get(echo.HeaderContentType)
	if ct == "" {
		return New(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	// What nearly every client sends, answered without parsing (mime.ParseMediaType allocates
	// its parameters' map), with the same outcome as the parse below.
	if strings.EqualFold(ct, echo.MIMEApplicationJSON) || strings.EqualFold(ct, "application/json; charset=utf-8") {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != echo.MIMEApplicationJSON {
		return New(http.StatusUnsupportedMediaType, "Content-Type must be application/json, got %q", ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return New(http.StatusUnsupportedMediaType, "charset must be utf-8, got %q", cs)
	}
	return nil
}

// Truncate shortens client text echoed in an error.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
