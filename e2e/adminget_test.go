package e2e_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// adminGet GETs path with the admin's session, fails the test unless the answer is 200 with JSON
// that decodes into a T, and returns it with the body (for messages).
func adminGet[T any](t *testing.T, s *system, path string) (T, []byte) {
	t.Helper()
	var out T
	code, body, _ := s.do("GET", path, "Bearer "+s.admin, nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("GET %s answer %s: %v", path, body, err)
	}
	return out, body
}
