package gateway

import (
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// auditClientAddr puts the client's address into the request's context, where the stores'
// audit rows find it (postgres.WithClientAddr): the TCP peer, or with TRUSTED_PROXIES the
// address the proxy names (ipExtractor), the same one the login limits count against.
func auditClientAddr(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		c.SetRequest(r.WithContext(postgres.WithClientAddr(r.Context(), c.RealIP())))
		return next(c)
	}
}
