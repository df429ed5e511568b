package testenv

import (
	"io"
	"net/http"
	"testing"
)

// Get sends GET url with the default client and returns the status code and the body; a request
// that gets no answer, or whose body cannot be read, fails the test.
func Get(t testing.TB, url string) (status int, body string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
