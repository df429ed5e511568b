package gateway

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// checkOrigin answers 403 unless the request's Origin, when it has one, is the gateway's own
// origin (scheme, host and port, as the request reached it) or matches an entry of
// CORS_ALLOWED_ORIGINS (entries carry their scheme). The WebSocket library checks the host
// only, so https://host would pass for an http:// server; this check runs before it.
// The scheme is https when the connection is TLS, or when a trusted proxy says so in
// X-Forwarded-Proto; nobody else is believed.
func (g *Gateway) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil // not a browser: browsers always send Origin on a WebSocket handshake
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return newError(http.StatusForbidden, "Origin %q is not an http(s) origin", truncate(origin, 128))
	}
	got := u.Scheme + "://" + withPort(u.Scheme, u.Host)
	scheme := g.requestScheme(r)
	if own := scheme + "://" + withPort(scheme, r.Host); strings.EqualFold(got, own) {
		return nil
	}
	target := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, pattern := range g.cfg.CORSOrigins {
		if ok, _ := path.Match(strings.ToLower(strings.TrimSpace(pattern)), target); ok {
			return nil
		}
	}
	return newError(http.StatusForbidden, "Origin %q is not allowed: want this server's own origin (%s://%s) or one in CORS_ALLOWED_ORIGINS",
		truncate(origin, 128), scheme, truncate(r.Host, 128))
}

// requestScheme is "https" when the request came over TLS, or through a trusted proxy that says
// X-Forwarded-Proto: https; "http" otherwise.
func (g *Gateway) requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if proto := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); proto == "https" && g.fromTrustedProxy(r) {
		return "https"
	}
	return "http"
}

// fromTrustedProxy reports whether the TCP peer of r is one of TRUSTED_PROXIES.
func (g *Gateway) fromTrustedProxy(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	nets, _ := parseProxies(g.cfg.Edge.TrustedProxies) // validated with the config
	for _, n := range nets {
		if ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// withPort returns host with the scheme's default port when it names none, so that
// http://h and http://h:80 compare equal.
func withPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") || !strings.Contains(host, ":") {
		if scheme == "https" {
			return host + ":443"
		}
		return host + ":80"
	}
	return host
}
