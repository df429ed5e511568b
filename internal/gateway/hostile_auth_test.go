package gateway

import (
	"fmt"
	"net/http"
	"testing"
)

// TestWrongAuthSchemeIsNamed: a credential under the wrong scheme is not "missing": the answer
// names the scheme sent and the one wanted (issue 7, item 7).
func TestWrongAuthSchemeIsNamed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "scheme-agent")
	jsonPath := "/api/v1/agents/" + a.ID + "/metrics"
	good := `{"metrics":[{"name":"cpu","value":1}]}`
	tests := []struct {
		name string
		r    req
		want string
	}{
		{"no header, operator route", req{method: "GET", path: "/api/v1/agents"}, "missing session token: send Authorization: Bearer"},
		{"Basic on operator route", req{method: "GET", path: "/api/v1/agents", auth: "Basic YWRtaW46eA=="}, `Authorization scheme "Basic" is not accepted here, want Bearer`},
		{"Token on operator route", req{method: "GET", path: "/api/v1/agents", auth: "Token " + admin}, `Authorization scheme "Token" is not accepted here, want Bearer`},
		{"bare token on operator route", req{method: "GET", path: "/api/v1/agents", auth: admin}, "Authorization header has no scheme"},
		{"Bearer without token", req{method: "GET", path: "/api/v1/agents", auth: "Bearer "}, "Authorization: Bearer carries no session token"},
		{"Basic on JSON ingest", req{method: "POST", path: jsonPath, auth: "Basic YWRtaW46eA==", body: good}, `Authorization scheme "Basic" is not accepted here, want Bearer`},
		{"Token on JSON ingest", req{method: "POST", path: jsonPath, auth: "Token " + a.APIKey, body: good}, `Authorization scheme "Token" is not accepted here, want Bearer`},
		{"no header on JSON ingest", req{method: "POST", path: jsonPath, body: good}, "missing agent key: send Authorization: Bearer <agent key>"},
		{"Basic on line protocol", req{method: "POST", path: "/api/v2/write", auth: "Basic YWRtaW46eA==", body: "cpu v=1", contentType: "text/plain"}, `Authorization scheme "Basic" is not accepted here, want Token or Bearer`},
		{"no header on line protocol", req{method: "POST", path: "/api/v2/write", body: "cpu v=1", contentType: "text/plain"}, "missing agent key: send Authorization: Token <agent key>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.refused(t, fmt.Sprintf("%s %s with Authorization %q", tt.r.method, tt.r.path, tt.r.auth), tt.r, http.StatusUnauthorized, tt.want)
		})
	}
}
