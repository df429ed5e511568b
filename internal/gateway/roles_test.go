package gateway

import (
	"slices"
	"strings"
	"testing"
)

// newRolesEnv starts a gateway and returns it with the tokens of its admin, of an operator "op"
// and of a viewer "watcher": the three roles the alerting routes tell apart.
func newRolesEnv(t *testing.T) (e *env, admin, op, viewer string) {
	t.Helper()
	e = newEnv(t, nil)
	admin = e.adminToken()
	op = e.userToken(admin, "op", "operator")
	viewer = e.userToken(admin, "watcher", "viewer")
	return e, admin, op, viewer
}

// refusal is a request the operator API must refuse with status; field, when set, is the member
// the error body's details must name, and its message mention.
type refusal struct {
	name   string
	r      req
	status int
	field  string
}

// checkRefusals sends each refused request and checks its answer.
func (e *env) checkRefusals(t *testing.T, refusals []refusal) {
	t.Helper()
	for _, tt := range refusals {
		r := e.do(tt.r)
		if r.status != tt.status {
			t.Errorf("%s = %s, want %d", tt.name, r, tt.status)
			continue
		}
		if tt.field == "" {
			continue
		}
		if eb := errorBodyOf(t, r); !slices.Equal(eb.Details, []string{tt.field}) || !strings.Contains(eb.Error, tt.field) {
			t.Errorf("%s = %q %q, want details [%s] and a message naming it", tt.name, eb.Error, eb.Details, tt.field)
		}
	}
}
