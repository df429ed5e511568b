package gateway

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// credentialError is the 401 for a request whose Authorization header carries no credential
// under one of schemes. It says what was wrong: no header ("missing <what>"), a header without
// credentials, or a credential under another scheme (naming the scheme sent and the one wanted),
// so that Basic or Token where Bearer belongs is not reported as missing. usage is how to send
// it, e.g. "Authorization: Bearer <token>".
func credentialError(r *http.Request, what, usage string, schemes ...string) *apiError {
	h := strings.TrimSpace(r.Header.Get(echo.HeaderAuthorization))
	if h == "" {
		return newError(http.StatusUnauthorized, "missing %s: send %s", what, usage)
	}
	scheme, cred, _ := strings.Cut(h, " ")
	for _, s := range schemes {
		if strings.EqualFold(scheme, s) && strings.TrimSpace(cred) == "" {
			return newError(http.StatusUnauthorized, "Authorization: %s carries no %s: send %s", s, what, usage)
		}
	}
	if cred == "" {
		return newError(http.StatusUnauthorized, "Authorization header has no scheme: send %s", usage)
	}
	return newError(http.StatusUnauthorized, "Authorization scheme %q is not accepted here, want %s: send %s",
		truncate(scheme, 32), strings.Join(schemes, " or "), usage)
}
