package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// TLSConfig makes the gateway serve HTTPS itself. Both files or neither: without them it serves
// plain HTTP, for a reverse proxy in front that terminates TLS (see README).
type TLSConfig struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string `env:"TLS_CERT_FILE" help:"PEM certificate chain (leaf first) to serve HTTPS with; reloaded when the file changes. Empty: plain HTTP (TLS in a reverse proxy)"`
	// KeyFile is the PEM private key of the certificate.
	KeyFile string `env:"TLS_KEY_FILE" help:"PEM private key of TLS_CERT_FILE"`
	// HSTSMaxAge is the max-age of the Strict-Transport-Security header sent over HTTPS (also
	// HTTPS a trusted proxy reports with X-Forwarded-Proto); 0 sends none.
	HSTSMaxAge time.Duration `env:"HSTS_MAX_AGE" envDefault:"8760h" help:"max-age of Strict-Transport-Security, sent on HTTPS requests (direct, or through a TRUSTED_PROXIES proxy saying X-Forwarded-Proto: https); 0: not sent"`
}

// Enabled reports whether the gateway serves HTTPS.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate checks that both files are given and load together.
func (c TLSConfig) Validate() error {
	if c.HSTSMaxAge < 0 {
		return fmt.Errorf("HSTS_MAX_AGE=%s: want 0 or more", c.HSTSMaxAge)
	}
	if !c.Enabled() {
		return nil
	}
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("TLS_CERT_FILE and TLS_KEY_FILE: give both or neither")
	}
	if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
		return fmt.Errorf("TLS_CERT_FILE, TLS_KEY_FILE: %w", err)
	}
	return nil
}

// certCheckInterval bounds how often the certificate files are looked at (two stats).
const certCheckInterval = time.Second

// certReloader serves the certificate of two files and loads them again when either one's
// modification time or size changes, checked at most every certCheckInterval, from the TLS
// handshake itself (tls.Config.GetCertificate): no goroutine and no restart. Polling, not
// fsnotify (only an indirect dependency here): renewals by certbot or a Kubernetes secret
// replace files through renames and symlink swaps, which watches on the files miss, while a stat
// sees them. A pair that does not load (a renewal caught between writing the two files) is
// logged and the previous certificate kept, and tried again at the next check.
type certReloader struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(name string) (fileStamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}, fmt.Errorf("reading %s: %w", name, err)
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// newCertReloader loads the pair once; it fails when the pair does not load.
func newCertReloader(certFile, keyFile string, logger *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, logger: logger.With("component", "gateway.tls")}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.checked = time.Now()
	return r, nil
}

// load reads both files; on success the new certificate is served.
func (r *certReloader) load() error {
	var stamp [2]fileStamp
	for i, f := range []string{r.certFile, r.keyFile} {
		s, err := stampOf(f)
		if err != nil {
			return err
		}
		stamp[i] = s
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate: %w", err)
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate, reloaded first when
// the files changed since the last check.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= certCheckInterval {
		r.checked = now
		if r.changed() {
			if err := r.load(); err != nil {
				r.logger.Warn("TLS certificate files changed but do not load; serving the previous certificate", "err", err)
			} else {
				r.logger.Info("TLS certificate reloaded", "cert_file", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// changed reports whether either file differs from the loaded version (or cannot be read).
func (r *certReloader) changed() bool {
	for i, f := range []string{r.certFile, r.keyFile} {
		s, err := stampOf(f)
		if err != nil || !s.mod.Equal(r.stamp[i].mod) || s.size != r.stamp[i].size {
			return true
		}
	}
	return false
}

// serverTLS returns the server's TLS configuration: TLS 1.2 or later, HTTP/1.1 only (the alert
// WebSocket upgrades an HTTP/1.1 request; Echo's handlers need nothing of HTTP/2).
func serverTLS(r *certReloader) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// hsts sends Strict-Transport-Security on requests that came over HTTPS, directly or through a
// trusted proxy (requestScheme): never on plain HTTP, where browsers ignore it anyway and a
// forged X-Forwarded-Proto must not turn it on.
func (g *Gateway) hsts(next echo.HandlerFunc) echo.HandlerFunc {
	value := fmt.Sprintf("max-age=%d; includeSubDomains", int64(g.cfg.TLS.HSTSMaxAge/time.Second))
	return func(c echo.Context) error {
		if g.cfg.TLS.HSTSMaxAge > 0 && g.requestScheme(c.Request()) == "https" {
			c.Response().Header().Set("Strict-Transport-Security", value)
		}
		return next(c)
	}
}
