package httpapi

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// CredentialError is the 401 for a request whose Authorization header carries no credential
// under one of schemes. It says what was wrong: no header ("missing <what>"), a header without
// credentials, or a credential under another scheme (naming the scheme sent and the one wanted),
// so that Basic or Token where Bearer belongs is not reported as missing. usage is how to send
// it, e.g. "Authorization: Bearer <token>".
func CredentialError(r *http.Request, what, usage string, schemes ...string) *Error {
	h := strings.TrimSpace(r.Header.Get(echo.HeaderAuthorization))
	if h == "" {
		return New(http.StatusUnauthorized, "missing %s: send %s", what, usage)
	}
	scheme, cred, _ := strings.Cut(h, " ")
	for _, s := range schemes {
		if strings.EqualFold(scheme, s) && strings.TrimSpace(cred) == "" {
			return New(http.StatusUnauthorized, "Authorization: %s carries no %s: send %s", s, what, usage)
		}
	}
	if cred == "" {
		return New(http.StatusUnauthorized, "Authorization header has no scheme: send %s", usage)
	}
	return New(http.StatusUnauthorized, "Authorization scheme %q is not accepted here, want %s: send %s",
		Truncate(scheme, 32), strings.Join(schemes, " or "), usage)
}

// BearerToken returns the credentials of an Authorization header using one of schemes
// (case-insensitive), or "".
func BearerToken(r *http.Request, schemes ...string) string {
	h := r.Header.Get(echo.HeaderAuthorization)
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok {
		return ""
	}
	for _, s := range schemes {
		if strings.EqualFold(scheme, s) {
			return strings.TrimSpace(cred)
		}
	}
	return ""
}
