package gateway

import "testing"

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
