package gateway

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/agentmonitor/agentmonitor/api"
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatalf("loading api/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	return doc
}

// openAPIRouter finds the document's operation for a request by its method and path alone,
// whatever host the test uses.
func openAPIRouter(t *testing.T) routers.Router {
	t.Helper()
	doc := loadOpenAPI(t)
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("building router from the document: %v", err)
	}
	return router
}

var echoParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// TestOpenAPIMatchesRoutes checks that the document describes exactly the routes the gateway
// registers, and that it is the document the gateway serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(documented)

	e := newEnv(t, nil)
	var registered []string
	for _, r := range e.g.e.Routes() {
		registered = append(registered, r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}"))
	}
	slices.Sort(registered)
	registered = slices.Compact(registered)

	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is registered but not in api/openapi.yaml", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("route %s is in api/openapi.yaml but not registered", d)
		}
	}

	r := e.do(req{method: "GET", path: "/api/v1/openapi.yaml"})
	if r.status != 200 || !bytes.Equal(r.body, api.OpenAPI()) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/yaml") {
		t.Errorf("GET /api/v1/openapi.yaml = %d %q, want the embedded document as application/yaml", r.status, r.header.Get("Content-Type"))
	}
}

// TestOpenAPIDescribesAnswers sends requests to the gateway and validates each request and answer
// against the document, so that its schemas are the shapes actually served.
func TestOpenAPIDescribesAnswers(t *testing.T) {
	t.Parallel()
	router := openAPIRouter(t)
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "documented")
	ts := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	points := fmt.Sprintf(`{"points":[{"measurement":"cpu","tags":{"core":"0"},"fields":{"usage_percent":12.5,"ok":true,"state":"x"},"time":%q}]}`, ts)

	tests := []req{
		{method: "GET", path: "/healthz"},
		{method: "GET", path: "/readyz"},
		{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","password":"` + testAdminPassword + `"}`},
		{method: "POST", path: "/api/v1/auth/login", body: `{"username":"admin","password":"wrong-password"}`},
		{method: "GET", path: "/api/v1/users", auth: bearer(admin)},
		{method: "POST", path: "/api/v1/users", auth: bearer(admin), body: `{"username":"doc","password":"doc-password","role":"viewer"}`},
		{method: "POST", path: "/api/v1/users", auth: bearer(admin), body: `{"username":"doc","password":"doc-password","role":"viewer"}`},
		{method: "GET", path: "/api/v1/audit?limit=5", auth: bearer(admin)},
		{method: "POST", path: "/api/v1/agents", auth: bearer(admin), body: `{"name":"doc-agent","labels":{"dc":"x"}}`},
		{method: "GET", path: "/api/v1/agents?limit=10&offset=0", auth: bearer(admin)},
		{method: "GET", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)},
		{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: points},
		{method: "POST", path: "/api/v1/agents/" + a.ID + "/metrics", auth: bearer(a.APIKey), body: `{"points":[]}`, headers: map[string]string{"X-Test-Invalid": "1"}},
		{method: "POST", path: "/api/v2/write?bucket=b&org=o&precision=s", auth: "Token " + a.APIKey, body: "mem used=1i", contentType: "text/plain"},
		{method: "GET", path: "/api/v1/agents/" + a.ID + "/metrics/latest", auth: bearer(admin)},
		{method: "GET", path: "/api/v1/agents/" + a.ID + "/metrics/recent?metric=cpu.usage_percent", auth: bearer(admin)},
		{method: "GET", path: "/api/v1/agents/" + a.ID + "/metrics/recent?metric=cpu", auth: bearer(admin)},
		{method: "POST", path: "/api/v1/agents/" + a.ID + "/rotate-key", auth: bearer(admin)},
		{method: "DELETE", path: "/api/v1/users/doc", auth: bearer(admin)},
		{method: "DELETE", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)},
		{method: "GET", path: "/api/v1/agents/" + a.ID, auth: bearer(admin)},
		{method: "POST", path: "/api/v1/auth/logout", auth: bearer(admin)},
	}
	for _, tt := range tests {
		// Requests meant to be refused need not match the document; every other one must.
		checkAgainstDoc(t, router, e, tt, tt.headers["X-Test-Invalid"] != "")
	}
}
