package gateway

import (
	"net/http"
	"strings"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
)

// tokenFromQuery lets the WebSocket route take the session token from ?token= when there is no
// Authorization header: browsers cannot set headers on a WebSocket. requireRole then checks it
// like any other token.
func tokenFromQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Header.Get(echo.HeaderAuthorization) == "" {
			if token := c.QueryParam("token"); token != "" {
				r.Header.Set(echo.HeaderAuthorization, "Bearer "+token)
			}
		}
		return next(c)
	}
}

// alertSocket answers GET /api/v1/ws/alerts (viewer; the session token may come as ?token=):
// it upgrades to a WebSocket and hands the connection to the hub. The Origin must be this
// server's (scheme, host and port: checkOrigin) or match CORS_ALLOWED_ORIGINS (403 otherwise);
// the library's own host check runs too, never skipped.
func (g *Gateway) alertSocket(c echo.Context) error {
	if err := g.checkOrigin(c.Request()); err != nil {
		return err
	}
	w := &handshakeWriter{ResponseWriter: c.Response()}
	conn, err := websocket.Accept(w, c.Request(), &websocket.AcceptOptions{OriginPatterns: g.cfg.CORSOrigins})
	if err != nil {
		if w.status == 0 {
			return err // Accept answered itself (after the upgrade was committed)
		}
		return &apiError{Status: w.status, Message: strings.TrimSpace(w.body.String()), Err: err}
	}
	g.hub.Serve(conn, sessionOf(c).Username)
	return nil
}

// handshakeWriter holds back the plain-text error answer websocket.Accept writes for a refused
// handshake (403 for a foreign Origin, 426 for a request that is no upgrade), so that the
// gateway answers it in its JSON error shape instead. Everything else passes through; Accept
// reaches the connection to hijack through Unwrap.
type handshakeWriter struct {
	http.ResponseWriter
	status int
	body   strings.Builder
}

func (w *handshakeWriter) WriteHeader(code int) {
	if code >= http.StatusBadRequest {
		w.status = code
		w.Header().Del(echo.HeaderContentType)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *handshakeWriter) Write(b []byte) (int, error) {
	if w.status != 0 {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the Echo response, which can hijack the connection.
func (w *handshakeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
