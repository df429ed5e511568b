package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentmonitor/agentmonitor/api"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/user"
)

// newEcho builds the Echo instance with every route and middleware.
func (g *Gateway) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.JSONSerializer = jsonSerializer{}
	e.HTTPErrorHandler = g.handleError
	e.StdLogger = slog.NewLogLogger(g.logger.Handler(), slog.LevelWarn) // the http.Server's own errors

	// Every request goes through these, in this order, matched route or not (see useOnce).
	mws := []echo.MiddlewareFunc{requestID,
		// HSTS is sent by g.hsts (tls.go): Echo's would believe any client's X-Forwarded-Proto.
		responseHeaders, g.hsts}
	if len(g.cfg.CORSOrigins) > 0 {
		mws = append(mws, middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:  g.cfg.CORSOrigins,
			AllowMethods:  []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
			AllowHeaders:  []string{echo.HeaderAuthorization, echo.HeaderContentType, echo.HeaderContentEncoding, echo.HeaderXRequestID},
			ExposeHeaders: []string{echo.HeaderXRequestID, "Retry-After"},
			MaxAge:        600,
		}))
	}
	e.IPExtractor = ipExtractor(g.cfg.Edge.TrustedProxies)
	// The client's address for audit rows is set by requireRole and login (auditClientAddr):
	// only operators' requests write audit rows, so agents' writes do not pay for it.
	mws = append(mws, g.observe, g.limitHeaders, checkURLText, g.paceBody,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableStackAll: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				g.logger.Error("handler panicked", "err", err, "path", c.Path(), "stack", string(stack))
				return err
			},
		}))
	useOnce(e, mws...)

	viewer := g.requireRole(user.RoleViewer)
	operator := g.requireRole(user.RoleOperator)
	admin := g.requireRole(user.RoleAdmin)

	e.GET("/healthz", echo.WrapHandler(ops.HealthHandler()))
	// /readyz is ingest readiness (a load balancer in front of agents): Redis is all ingest
	// needs, agent keys come from the key cache while PostgreSQL is away. /readyz?scope=api is
	// the operator API's, which needs PostgreSQL too.
	e.GET("/readyz", echo.WrapHandler(g.readiness().Handler()))
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{Registry: g.reg})))
	e.GET("/api/v1/openapi.yaml", serveOpenAPI)
	e.GET("/", consoleIndex)
	e.GET("/assets/:file", consoleAsset)
	e.GET("/assets/vendor/:file", consoleVendorAsset)

	e.POST("/api/v1/auth/login", g.login, auditClientAddr)
	e.POST("/api/v1/auth/logout", g.logout, viewer)
	e.POST("/api/v1/auth/password", g.changePassword, viewer)

	e.GET("/api/v1/users", g.listUsers, admin)
	e.POST("/api/v1/users", g.createUser, admin)
	e.DELETE("/api/v1/users/:username", g.deleteUser, admin)
	e.PATCH("/api/v1/users/:username", g.patchUser, admin)
	e.GET("/api/v1/audit", g.listAudit, admin)

	e.GET("/api/v1/agents", g.listAgents, viewer)
	e.POST("/api/v1/agents", g.createAgent, operator)
	e.GET("/api/v1/agents/:id", g.getAgent, viewer)
	e.DELETE("/api/v1/agents/:id", g.deleteAgent, operator)
	e.PATCH("/api/v1/agents/:id", g.patchAgent, operator)
	e.POST("/api/v1/agents/:id/rotate-key", g.rotateKey, operator)
	e.DELETE("/api/v1/agents/:id/previous-key", g.revokePreviousKey, operator)
	e.GET("/api/v1/agents/:id/metrics/latest", g.latest, viewer)
	e.GET("/api/v1/agents/:id/metrics/recent", g.recent, viewer)
	e.GET("/api/v1/agents/:id/metrics/history", g.agentHistory, viewer)
	e.GET("/api/v1/metrics/history", g.fleetHistory, viewer)
	e.GET("/api/v1/metrics", g.listMetrics, viewer)

	e.GET("/api/v1/alert-rules", g.listRules, viewer)
	e.POST("/api/v1/alert-rules", g.createRule, operator)
	e.GET("/api/v1/alert-rules/:id", g.getRule, viewer)
	e.PUT("/api/v1/alert-rules/:id", g.updateRule, operator)
	e.DELETE("/api/v1/alert-rules/:id", g.deleteRule, operator)
	e.GET("/api/v1/alerts", g.listAlerts, viewer)
	e.GET("/api/v1/alerts/history", g.alertHistory, viewer)
	e.POST("/api/v1/alerts/:id/ack", g.ackAlert, operator)
	e.GET("/api/v1/silences", g.listSilences, viewer)
	e.POST("/api/v1/silences", g.createSilence, operator)
	e.GET("/api/v1/silences/:id", g.getSilence, viewer)
	e.DELETE("/api/v1/silences/:id", g.deleteSilence, operator)
	e.GET("/api/v1/notification-channels", g.listChannels, operator)
	e.POST("/api/v1/notification-channels", g.createChannel, operator)
	e.GET("/api/v1/notification-channels/:id", g.getChannel, operator)
	e.PUT("/api/v1/notification-channels/:id", g.updateChannel, operator)
	e.DELETE("/api/v1/notification-channels/:id", g.deleteChannel, operator)
	e.POST("/api/v1/notification-channels/:id/test", g.testChannel, operator)
	e.GET("/api/v1/ws/alerts", g.alertSocket, tokenFromQuery, viewer)
	e.GET("/api/v1/pipeline", g.pipeline, operator)
	e.GET("/api/v1/pipeline/dead-letters", g.deadLetters, operator)
	e.POST("/api/v1/pipeline/dead-letters/replay", g.replayDeadLetters, operator)

	e.POST("/api/v1/agents/:id/metrics", g.ingestJSON)
	e.POST("/api/v2/write", g.ingestLine)

	g.metrics.routes = make(map[string]bool)
	for _, r := range e.Routes() {
		g.metrics.routes[r.Path] = true
	}
	return e
}

// useOnce installs mws as e's middleware (the first outermost), composed once, here. Echo v4
// composes the middleware of e.Use around the matched handler anew for every request (each
// middleware's constructor runs per request: a closure allocated per middleware, and whatever
// setup the constructor does); for the agents' small writes that was a cost of its own (issue
// 13). The chain built here ends by calling the handler the router chose for the request
// (Context.Handler, the very handler Echo passes to its middleware; the not-found and
// method-not-allowed handlers included), so one chain serves every route and Echo's per-request
// composition is reduced to returning it.
func useOnce(e *echo.Echo, mws ...echo.MiddlewareFunc) {
	chain := func(c echo.Context) error { return c.Handler()(c) }
	for i := len(mws) - 1; i >= 0; i-- {
		chain = mws[i](chain)
	}
	e.Use(func(echo.HandlerFunc) echo.HandlerFunc { return chain })
}

// readiness is what /readyz checks, on the API listener and on the ops listener alike.
func (g *Gateway) readiness() ops.Readiness {
	return ops.Readiness{
		Checks: map[string]ops.Check{
			"redis":    func(ctx context.Context) error { return redisconn.Ping(ctx, g.rdb) },
			"postgres": func(ctx context.Context) error { return g.db.PingContext(ctx) },
		},
		Scopes:   map[string][]string{"": {"redis"}, "ingest": {"redis"}, "api": {"redis", "postgres"}},
		Warnings: func(ctx context.Context) []string { return redisconn.Warnings(ctx, g.rdb) },
	}
}

// serveOpenAPI answers GET /api/v1/openapi.yaml with the embedded description of this API.
func serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", api.OpenAPI())
}

// requestIDPattern is what a client-sent X-Request-ID must look like to be kept; anything else is
// replaced, so that logs never carry client-chosen junk (PITFALLS.md: Echo's RequestID keeps it).
// wellFormedRequestID is the same check without the regular expression, for every request.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestIDBytes are the bytes of requestIDPattern.
var requestIDBytes = func() (set [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") {
		set[c] = true
	}
	return set
}()

// wellFormedRequestID reports whether id matches requestIDPattern.
func wellFormedRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !requestIDBytes[id[i]] {
			return false
		}
	}
	return true
}

// requestID sets X-Request-ID on the response: the client's when it is well formed, else a new one.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !wellFormedRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail on supported platforms
			id = hex.EncodeToString(b[:])
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// fixedHeaders are the headers of every answer: what Echo's Secure middleware sent with our
// settings, and Cache-Control: no-store, which keeps API answers (keys, tokens, live data) out of
// shared caches. HSTS is sent by hsts (tls.go). Each value is one slice shared by every answer,
// so that setting them costs no allocation (they are only read: Header.Set replaces a slice and
// Header.Add copies one of length 1 before appending).
var fixedHeaders = func() []struct {
	key   string
	value []string
} {
	kv := [][2]string{
		{echo.HeaderXXSSProtection, "0"}, // the legacy XSS auditor does harm; CSP is the protection
		{echo.HeaderXContentTypeOptions, "nosniff"},
		{echo.HeaderXFrameOptions, "DENY"},
		{echo.HeaderContentSecurityPolicy, "default-src 'none'; frame-ancestors 'none'"},
		{echo.HeaderReferrerPolicy, "no-referrer"},
		{echo.HeaderCacheControl, "no-store"},
	}
	out := make([]struct {
		key   string
		value []string
	}, len(kv))
	for i, h := range kv {
		out[i].key, out[i].value = textproto.CanonicalMIMEHeaderKey(h[0]), []string{h[1]}
	}
	return out
}()

// responseHeaders sets fixedHeaders on every answer.
func responseHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		for _, f := range fixedHeaders {
			h[f.key] = f.value
		}
		return next(c)
	}
}

// observe answers a handler's error itself (so that the status is known here), records the
// request's latency by route, method and status, and logs the request at debug level.
func (g *Gateway) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		d := time.Since(start)
		route := c.Path()
		if !g.metrics.routes[route] {
			route = "unmatched"
		}
		status := c.Response().Status
		g.metrics.observeRequest(route, c.Request().Method, status, d)
		if g.logger.Enabled(c.Request().Context(), slog.LevelDebug) {
			g.logger.Debug("request", "method", c.Request().Method, "route", route, "status", status,
				"took", d, "request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		}
		return nil
	}
}

var statusLabels = func() map[int]string {
	m := make(map[int]string)
	for code := 100; code < 600; code++ {
		m[code] = fmt.Sprint(code)
	}
	return m
}()

func statusLabel(code int) string {
	if s, ok := statusLabels[code]; ok {
		return s
	}
	return "other"
}
