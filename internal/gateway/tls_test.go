package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial and its key to the files,
// and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	cert, certPEM, keyPEM := testenv.SelfSignedCert(t, serial, fmt.Sprintf("gateway-%d", serial))
	// Written beside and renamed into place, as certbot and Kubernetes do.
	for _, f := range []struct {
		name string
		pem  []byte
	}{{keyFile, keyPEM}, {certFile, certPEM}} {
		tmp := f.name + ".new"
		if err := os.WriteFile(tmp, f.pem, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.name); err != nil {
			t.Fatal(err)
		}
	}
	return cert.Leaf
}

// TestHTTPSWithReloadedCertificate: with TLS_CERT_FILE and TLS_KEY_FILE the gateway serves
// HTTPS with HSTS; replacing the files makes it serve the new certificate without a restart.
func TestHTTPSWithReloadedCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile, 1)
	_, prefix := testenv.Redis(t)
	_, dbURL := testenv.Postgres(t)
	cfg := testConfig(prefix, dbURL)
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	g, _ := startGateway(t, cfg)
	base := "https://" + g.Addr()

	// The client trusts whatever certificate is served and reports which one it was.
	get := func() (status int, header http.Header, served *x509.Certificate) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the test reads the served certificate itself
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(base + "/healthz")
		if err != nil {
			t.Fatalf("GET %s/healthz: %v", base, err)
		}
		defer res.Body.Close()
		return res.StatusCode, res.Header, res.TLS.PeerCertificates[0]
	}
	status, header, served := get()
	if status != http.StatusOK || served.SerialNumber.Int64() != first.SerialNumber.Int64() {
		t.Fatalf("GET over HTTPS = %d with certificate %s, want 200 with %s", status, served.Subject, first.Subject)
	}
	if got := header.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=31536000") {
		t.Errorf("Strict-Transport-Security over HTTPS = %q, want max-age=31536000", got)
	}
	// A client that verifies, trusting the first certificate, gets through.
	pool := x509.NewCertPool()
	pool.AddCert(first)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	if res, err := (&http.Client{Transport: tr}).Get(base + "/healthz"); err != nil {
		t.Errorf("verifying client: %v", err)
	} else {
		res.Body.Close()
	}
	tr.CloseIdleConnections()
	// Plain HTTP on the HTTPS port is refused.
	if res, err := http.Get("http://" + g.Addr() + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS port = %d, want 400", res.StatusCode)
		}
	}

	second := writeCert(t, certFile, keyFile, 2)
	testenv.Eventually(t, 10*time.Second, func() string {
		if _, _, served := get(); served.SerialNumber.Int64() != second.SerialNumber.Int64() {
			return fmt.Sprintf("still serving %s after the files were replaced", served.Subject)
		}
		return ""
	})
	// A broken replacement keeps the last good certificate.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(certCheckInterval + 100*time.Millisecond) // let the reloader look at the broken files
	if _, _, served := get(); served.SerialNumber.Int64() != second.SerialNumber.Int64() {
		t.Errorf("after a broken replacement serving %s, want still %s", served.Subject, second.Subject)
	}
}

func TestTLSConfigValidate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c"), filepath.Join(dir, "k")
	writeCert(t, certFile, keyFile, 1)
	for _, tc := range []struct {
		cfg  TLSConfig
		want string
	}{
		{TLSConfig{}, ""},
		{TLSConfig{CertFile: certFile, KeyFile: keyFile}, ""},
		{TLSConfig{CertFile: certFile}, "give both"},
		{TLSConfig{CertFile: certFile, KeyFile: filepath.Join(dir, "missing")}, "TLS_KEY_FILE"},
		{TLSConfig{CertFile: keyFile, KeyFile: certFile}, "TLS_CERT_FILE"},
		{TLSConfig{HSTSMaxAge: -time.Second}, "HSTS_MAX_AGE"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// TestHSTSOnlyForHTTPS: on plain HTTP no HSTS, even with a forged X-Forwarded-Proto; through a
// trusted proxy that says https, HSTS.
func TestHSTSOnlyForHTTPS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Edge.TrustedProxies = []string{"127.0.0.2"} })
	for _, tc := range []struct {
		from string
		xfp  string
		want bool
	}{
		{"127.0.0.1", "", false},
		{"127.0.0.1", "https", false}, // not a trusted proxy: forged
		{"127.0.0.2", "https", true},
		{"127.0.0.2", "http", false},
	} {
		h := map[string]string{}
		if tc.xfp != "" {
			h["X-Forwarded-Proto"] = tc.xfp
		}
		r := loginAs(t, clientFrom(tc.from), e.url, "admin", "wrong-password", h)
		if got := r.header.Get("Strict-Transport-Security") != ""; got != tc.want {
			t.Errorf("from %s with X-Forwarded-Proto %q: HSTS sent = %v, want %v", tc.from, tc.xfp, got, tc.want)
		}
	}
}
