package console

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func newConsole(t *testing.T) *Console {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return c
}

func get(c *Console, name string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/assets/"+name, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	if name == "" {
		c.Index(w, r)
	} else {
		c.Asset(w, r, name)
	}
	return w
}

func TestServesFilesWithTypesAndPolicy(t *testing.T) {
	t.Parallel()
	c := newConsole(t)
	tests := []struct {
		name, wantType string
		wantStatus     int
	}{
		{"", "text/html; charset=utf-8", 200},
		{"app.js", "text/javascript; charset=utf-8", 200},
		{"vendor/uPlot.esm.js", "text/javascript; charset=utf-8", 200},
		{"style.css", "text/css; charset=utf-8", 200},
		{"vendor/uPlot.min.css", "text/css; charset=utf-8", 200},
		{"vendor/uPlot.LICENSE", "text/plain; charset=utf-8", 200},
		{"index.html", "text/plain; charset=utf-8", 404}, // the page has one address: /
		{"nope.js", "text/plain; charset=utf-8", 404},
		{"../console.go", "text/plain; charset=utf-8", 404},
	}
	for _, tt := range tests {
		w := get(c, tt.name, nil)
		if w.Code != tt.wantStatus || w.Header().Get("Content-Type") != tt.wantType {
			t.Errorf("GET %q = %d %q, want %d %q", tt.name, w.Code, w.Header().Get("Content-Type"), tt.wantStatus, tt.wantType)
		}
		csp := w.Header().Get("Content-Security-Policy")
		if csp != CSP || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %q: Content-Security-Policy = %q, want %q", tt.name, csp, CSP)
		}
	}
}

func TestGzipAndRevalidation(t *testing.T) {
	t.Parallel()
	c := newConsole(t)
	plain := get(c, "app.js", nil)
	if plain.Header().Get("Content-Encoding") != "" {
		t.Fatalf("GET app.js without Accept-Encoding: Content-Encoding = %q, want none", plain.Header().Get("Content-Encoding"))
	}
	for _, ae := range []string{"gzip", "br, gzip;q=0.8", "GZIP"} {
		w := get(c, "app.js", http.Header{"Accept-Encoding": {ae}})
		if w.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding = %q, want gzip", ae, w.Header().Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Fatalf("gzip.NewReader: %v", err)
		}
		body, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(body, plain.Body.Bytes()) {
			t.Errorf("Accept-Encoding %q: the gzip body does not decode to the file (err %v)", ae, err)
		}
	}
	if w := get(c, "app.js", http.Header{"Accept-Encoding": {"gzip;q=0"}}); w.Header().Get("Content-Encoding") != "" {
		t.Errorf("Accept-Encoding gzip;q=0: Content-Encoding = %q, want none", w.Header().Get("Content-Encoding"))
	}
	etag := plain.Header().Get("ETag")
	if etag == "" || plain.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET app.js: ETag %q, Cache-Control %q; want an ETag and no-cache", etag, plain.Header().Get("Cache-Control"))
	}
	if w := get(c, "app.js", http.Header{"If-None-Match": {etag}}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match %s = %d with %d bytes, want 304 and no body", etag, w.Code, w.Body.Len())
	}
	if w := get(c, "app.js", http.Header{"If-None-Match": {`"other"`}}); w.Code != http.StatusOK {
		t.Errorf("If-None-Match other = %d, want 200", w.Code)
	}
}

var (
	scriptRef = regexp.MustCompile(`<script[^>]*src="/assets/([^"]+)"`)
	styleRef  = regexp.MustCompile(`<link rel="stylesheet" href="/assets/([^"]+)"`)
	importRef = regexp.MustCompile(`(?m)^import .* from "\./([^"]+)";`)
	inline    = regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>|\son[a-z]+=`)
)

// TestFirstLoadBudget sums the gzip size of everything the first page load fetches (the page,
// its stylesheets, its module and every module it imports) and checks the 300 KB budget; it also
// checks that the page has no inline script or handler, which the CSP would refuse.
func TestFirstLoadBudget(t *testing.T) {
	t.Parallel()
	c := newConsole(t)
	index := string(c.assets["index.html"].body)
	if inline.MatchString(index) {
		t.Errorf("index.html has an inline script or on* handler: the CSP refuses those")
	}
	seen := map[string]bool{"index.html": true}
	queue := []string{}
	for _, m := range append(scriptRef.FindAllStringSubmatch(index, -1), styleRef.FindAllStringSubmatch(index, -1)...) {
		queue = append(queue, m[1])
	}
	total := len(c.assets["index.html"].gz)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		a, ok := c.assets[name]
		if !ok {
			t.Fatalf("the first load references %s, which is not embedded", name)
		}
		total += len(a.gz)
		if path.Ext(name) == ".js" {
			for _, m := range importRef.FindAllStringSubmatch(string(a.body), -1) {
				queue = append(queue, m[1])
			}
		}
	}
	if !seen["vendor/uPlot.esm.js"] || !seen["chart.js"] {
		t.Fatalf("the first load fetched %v; want the import graph to reach chart.js and vendor/uPlot.esm.js", seen)
	}
	t.Logf("first load: %d files, %d bytes gzip", len(seen), total)
	if total > 300*1024 {
		t.Errorf("first load = %d bytes gzip, want at most 300 KB", total)
	}
}
