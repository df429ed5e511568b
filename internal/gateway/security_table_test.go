package gateway

import (
	"net/http"
	"sort"
	"strings"
	"testing"
)

// access is who may use a route.
type access int

const (
	public     access = iota // anyone, no credential
	agentKey                 // an agent's API key (ingest), never a session
	viewerRole               // a session of role viewer or above
	operatorRole
	adminRole
)

// routeAccess is the security table: every route of the gateway and who may use it. A route the
// gateway serves that is missing here fails TestSecurityTable, so a new route cannot be added
// without deciding who may call it.
var routeAccess = map[string]access{
	"GET /healthz":                                public,
	"GET /readyz":                                 public,
	"GET /metrics":                                public,
	"GET /api/v1/openapi.yaml":                    public,
	"POST /api/v1/auth/login":                     public,
	"POST /api/v1/auth/logout":                    viewerRole,
	"GET /api/v1/users":                           adminRole,
	"POST /api/v1/users":                          adminRole,
	"DELETE /api/v1/users/:username":              adminRole,
	"GET /api/v1/audit":                           adminRole,
	"GET /api/v1/agents":                          viewerRole,
	"POST /api/v1/agents":                         operatorRole,
	"GET /api/v1/agents/:id":                      viewerRole,
	"DELETE /api/v1/agents/:id":                   operatorRole,
	"POST /api/v1/agents/:id/rotate-key":          operatorRole,
	"GET /api/v1/agents/:id/metrics/latest":       viewerRole,
	"GET /api/v1/agents/:id/metrics/recent":       viewerRole,
	"GET /api/v1/agents/:id/metrics/history":      viewerRole,
	"GET /api/v1/metrics/history":                 viewerRole,
	"GET /api/v1/metrics":                         viewerRole,
	"GET /api/v1/alert-rules":                     viewerRole,
	"POST /api/v1/alert-rules":                    operatorRole,
	"GET /api/v1/alert-rules/:id":                 viewerRole,
	"PUT /api/v1/alert-rules/:id":                 operatorRole,
	"DELETE /api/v1/alert-rules/:id":              operatorRole,
	"GET /api/v1/alerts":                          viewerRole,
	"GET /api/v1/alerts/history":                  viewerRole,
	"POST /api/v1/alerts/:id/ack":                 operatorRole,
	"GET /api/v1/silences":                        viewerRole,
	"POST /api/v1/silences":                       operatorRole,
	"GET /api/v1/silences/:id":                    viewerRole,
	"DELETE /api/v1/silences/:id":                 operatorRole,
	"GET /api/v1/notification-channels":           operatorRole,
	"POST /api/v1/notification-channels":          operatorRole,
	"GET /api/v1/notification-channels/:id":       operatorRole,
	"PUT /api/v1/notification-channels/:id":       operatorRole,
	"DELETE /api/v1/notification-channels/:id":    operatorRole,
	"GET /api/v1/ws/alerts":                       viewerRole,
	"POST /api/v1/agents/:id/metrics":             agentKey,
	"POST /api/v2/write":                          agentKey,
	"GET /":                                       public, // the console's page; its data needs a session
	"GET /assets/:file":                           public,
	"GET /assets/vendor/:file":                    public,
	"POST /api/v1/auth/password":                  viewerRole,
	"PATCH /api/v1/users/:username":               adminRole,
	"PATCH /api/v1/agents/:id":                    operatorRole,
	"DELETE /api/v1/agents/:id/previous-key":      operatorRole,
	"POST /api/v1/notification-channels/:id/test": operatorRole,
	"GET /api/v1/pipeline":                        operatorRole,
	"GET /api/v1/pipeline/dead-letters":           operatorRole,
	"POST /api/v1/pipeline/dead-letters/replay":   operatorRole,
}

// TestSecurityTable calls every route of the gateway, taken from its router, with every kind of
// credential (none, an agent key, a viewer's, an operator's and an admin's session) and checks
// the answer against routeAccess: 401 without a credential the route accepts, 403 for a role
// below the one needed, and neither for a credential the route accepts (the handler then
// answers as it will: 200, 400, 404...).
func TestSecurityTable(t *testing.T) {
	t.Parallel()
	e, admin, operator, viewer := newRolesEnv(t)
	ag := e.register(admin, "table-host")
	const otherID = "00000000-0000-4000-8000-000000000099"

	type cred struct {
		name string
		auth string
		rank access // what the credential is: agentKey, or the role
	}
	creds := []cred{
		{"no credential", "", public},
		{"agent key", bearer(ag.APIKey), agentKey},
		{"viewer", bearer(viewer), viewerRole},
		{"operator", bearer(operator), operatorRole},
		{"admin", bearer(admin), adminRole},
	}

	// Logout ends the sessions the other calls use: it goes last.
	routes := e.g.e.Routes()
	sort.SliceStable(routes, func(i, j int) bool {
		return !strings.HasSuffix(routes[i].Path, "/logout") && strings.HasSuffix(routes[j].Path, "/logout")
	})
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		if seen[key] || strings.HasPrefix(rt.Path, "/*") || rt.Method == "echo_route_not_found" {
			continue
		}
		seen[key] = true
		need, ok := routeAccess[key]
		if !ok {
			t.Errorf("route %s is not in the security table (routeAccess): decide who may call it", key)
			continue
		}
		path := rt.Path
		if need == agentKey {
			path = strings.ReplaceAll(path, ":id", ag.ID)
		}
		path = strings.NewReplacer(":id", otherID, ":username", "nobody-here").Replace(path)
		for _, c := range creds {
			r := req{method: rt.Method, path: path, auth: c.auth}
			if rt.Method == http.MethodPost || rt.Method == http.MethodPut {
				r.body = `{}`
			}
			got := e.serve(r)
			var want string
			allowed := false
			switch {
			case need == public:
				allowed = true
			case need == agentKey:
				allowed = c.rank == agentKey
			case c.rank == public || c.rank == agentKey:
				allowed = false
			default:
				allowed = c.rank >= need
			}
			switch {
			case allowed && (got.status == http.StatusUnauthorized || got.status == http.StatusForbidden):
				want = "neither 401 nor 403"
			case !allowed && (c.rank == public || c.rank == agentKey || need == agentKey) && got.status != http.StatusUnauthorized:
				want = "401"
			case !allowed && c.rank != public && c.rank != agentKey && need != agentKey && got.status != http.StatusForbidden:
				want = "403"
			}
			if want != "" {
				t.Errorf("%s %s with %s = %s, want %s", rt.Method, path, c.name, got, want)
			}
		}
	}
	for key := range routeAccess {
		if !seen[key] {
			t.Errorf("security table names %s, which the gateway does not serve", key)
		}
	}
}
