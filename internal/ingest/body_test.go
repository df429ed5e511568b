package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/httpapi"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestReadBody checks the body limit on the bytes received and on the bytes decompressed, and the
// encodings accepted.
func TestReadBody(t *testing.T) {
	const limit = 64
	atLimit := strings.Repeat("a", limit)
	tests := []struct {
		name       string
		body       []byte
		encoding   string
		wantStatus int // 0: accepted
		want       string
	}{
		{"plain at the limit", []byte(atLimit), "", 0, atLimit},
		{"plain over the limit", []byte(atLimit + "b"), "", http.StatusRequestEntityTooLarge, ""},
		{"identity", []byte("x"), "identity", 0, "x"},
		{"gzip at the limit", gz(t, []byte(atLimit)), "gzip", 0, atLimit},
		{"gzip bomb", gz(t, bytes.Repeat([]byte("a"), 100*limit)), "gzip", http.StatusRequestEntityTooLarge, ""},
		{"x-gzip", gz(t, []byte("y")), "X-Gzip", 0, "y"},
		{"not gzip", []byte("plain text"), "gzip", http.StatusBadRequest, ""},
		{"brotli", []byte("x"), "br", http.StatusUnsupportedMediaType, ""},
	}
	h := &Handler{maxBodyBytes: limit}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/v2/write", bytes.NewReader(tt.body))
			r.ContentLength = -1 // make the reader, not the header, meet the limit
			if tt.encoding != "" {
				r.Header.Set("Content-Encoding", tt.encoding)
			}
			buf := new(ingestBuf)
			err := h.readBody(r, buf)
			if tt.wantStatus == 0 {
				if err != nil || buf.body.String() != tt.want {
					t.Fatalf("readBody = %v, body %q, want nil, %q", err, buf.body.String(), tt.want)
				}
				return
			}
			var ae *httpapi.Error
			if !errors.As(err, &ae) || ae.Status != tt.wantStatus {
				t.Fatalf("readBody = %v, want status %d", err, tt.wantStatus)
			}
		})
	}
}

// TestNewRequiresDeps: a Handler missing a dependency is refused when built, naming it, not
// discovered by a nil dereference on the first request.
func TestNewRequiresDeps(t *testing.T) {
	_, err := New(Deps{})
	if err == nil {
		t.Fatal("New(Deps{}) = nil error, want the missing dependencies named")
	}
	for _, name := range []string{"Appender", "Keys", "FieldTypes", "Metrics", "MaxBodyBytes"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("New(Deps{}) = %q, want it to name %s", err, name)
		}
	}
}

// TestQueryParam: queryParam answers what Echo's QueryParam (url.ParseQuery) answers, on the
// queries it reads itself and on those it hands over.
func TestQueryParam(t *testing.T) {
	e := echo.New()
	for _, q := range []string{
		"", "precision=s", "bucket=b&org=o&precision=ms", "precision=s&precision=ns", "precision", "precision=",
		"&&precision=us&", "=s&precision=ns", "precisionx=s", "xprecision=s&precision=ns", "precision=s=t",
		"prec%69sion=s", "precision=%6Es", "precision=n+s", "a=1;b=2&precision=s", "precision=s;x", "precision=%zz&precision=s",
	} {
		r := httptest.NewRequest(http.MethodPost, "/api/v2/write?"+q, nil)
		c := e.NewContext(r, httptest.NewRecorder())
		want := e.NewContext(r, httptest.NewRecorder()).QueryParam("precision")
		if got := queryParam(c, "precision"); got != want {
			t.Errorf("queryParam(%q) = %q, QueryParam says %q", q, got, want)
		}
	}
}
