package gateway

import (
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// auditClientAddr puts the client's address into the request's context, where the stores'
// audit rows find it (postgres.WithClientAddr): the TCP peer, or with TRUSTED_PROXIES the
// address the proxy names (ipExtractor), the same one the login limits count against. It runs
// for the requests that can write audit rows: those requireRole admits, and logins. (It copies
// the request, so the agents' writes, which write none, do without it.)
func auditClientAddr(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		setAuditClientAddr(c)
		return next(c)
	}
}

// setAuditClientAddr is auditClientAddr for a request in hand.
func setAuditClientAddr(c echo.Context) {
	r := c.Request()
	c.SetRequest(r.WithContext(postgres.WithClientAddr(r.Context(), c.RealIP())))
}
