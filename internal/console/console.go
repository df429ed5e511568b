// Package console is the web console (dashboard) the gateway serves at `/`: plain ES modules, a
// stylesheet and the vendored uPlot, embedded in the binary. There is no build step and nothing is
// fetched from a CDN. Every file is gzip-compressed once at start; answers carry a strong ETag,
// `Cache-Control: no-cache` (revalidate, then 304) and a Content-Security-Policy that allows
// scripts, styles and connections to this origin only (no inline scripts).
package console

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every console answer: scripts and styles from this origin
// only (no 'unsafe-inline'), fetch and WebSocket to this origin, images from this origin or data:
// URLs (uPlot draws on a canvas), no framing, no plugins, no base or form redirection.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body, gz    []byte
	contentType string
	etag        string
}

// Console serves the embedded files. The zero value is not usable; call New.
type Console struct {
	assets map[string]asset
}

// New loads and compresses the embedded files.
func New() (*Console, error) {
	c := &Console{assets: make(map[string]asset)}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return fmt.Errorf("compressing %s: %w", p, err)
		}
		if _, err := zw.Write(body); err != nil {
			return fmt.Errorf("compressing %s: %w", p, err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("compressing %s: %w", p, err)
		}
		sum := sha256.Sum256(body)
		c.assets[strings.TrimPrefix(p, "static/")] = asset{
			body:        body,
			gz:          buf.Bytes(),
			contentType: contentType(p),
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading the console's files: %w", err)
	}
	if _, ok := c.assets["index.html"]; !ok {
		return nil, fmt.Errorf("loading the console's files: static/index.html is missing")
	}
	return c, nil
}

// contentType names the media type of a file by its extension, with a charset for text.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".LICENSE", ".VERSION", ".txt":
		return "text/plain; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// Files lists the names of the served files (for tests and the size budget).
func (c *Console) Files() []string {
	names := make([]string, 0, len(c.assets))
	for n := range c.assets {
		names = append(names, n)
	}
	return names
}

// Index serves the single page (GET /).
func (c *Console) Index(w http.ResponseWriter, r *http.Request) {
	c.serve(w, r, "index.html")
}

// Asset serves one file by name (GET /assets/{file}); 404 for a name that is not embedded.
func (c *Console) Asset(w http.ResponseWriter, r *http.Request, name string) {
	if name == "index.html" {
		name = "" // one address per page
	}
	c.serve(w, r, name)
}

func (c *Console) serve(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := c.assets[name]
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	if !ok {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("not found\n"))
		return
	}
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache") // names are not content-hashed: revalidate with the ETag
	h.Set("ETag", a.etag)
	h.Add("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// etagMatches reports whether an If-None-Match header names etag (or is *).
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header admits gzip (not with q=0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
