package ops

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// Readiness is what /readyz reports: the state of every dependency, which of them a scope needs
// (so that a load balancer can ask "can this binary take ingest?" apart from "can it serve the
// operator API?"), and standing warnings such as Redis running without persistence.
type Readiness struct {
	// Checks are every dependency, all run on each request and all shown in the answer.
	Checks map[string]Check
	// Scopes maps a scope, the value of ?scope=, to the checks that must pass for 200; the scope
	// "" (no parameter) is the default. Nil: one default scope needing every check.
	Scopes map[string][]string
	// Warnings, when set, returns warnings shown in the answer; they do not fail readiness.
	Warnings func(ctx context.Context) []string
}

// readyAnswer is the JSON of /readyz.
type readyAnswer struct {
	Status   string            `json:"status,omitempty"`
	Error    string            `json:"error,omitempty"`
	Scope    string            `json:"scope,omitempty"`
	Details  []string          `json:"details,omitempty"`
	Checks   map[string]string `json:"checks"`
	Warnings []string          `json:"warnings,omitempty"`
}

// Handler answers /readyz[?scope=S]: 200 {"status":"ready"} when every check of the scope
// passes, else 503 {"error":"not ready","details":[...]} naming each failing one; both carry
// "checks" (every dependency: "ok" or its error) and "warnings". An unknown scope is a 400.
func (rd Readiness) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope := r.URL.Query().Get("scope")
		need, ok := rd.need(scope)
		if !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{
				"error": fmt.Sprintf("unknown scope %q: use one of %s", scope, strings.Join(rd.scopeNames(), ", "))})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		names := make([]string, 0, len(rd.Checks))
		for name := range rd.Checks {
			names = append(names, name)
		}
		sort.Strings(names)
		ans := readyAnswer{Scope: scope, Checks: make(map[string]string, len(names))}
		for _, name := range names {
			err := rd.Checks[name](ctx)
			if err == nil {
				ans.Checks[name] = "ok"
				continue
			}
			ans.Checks[name] = err.Error()
			if slices.Contains(need, name) {
				ans.Details = append(ans.Details, fmt.Sprintf("%s: %v", name, err))
			}
		}
		if rd.Warnings != nil {
			ans.Warnings = rd.Warnings(ctx)
		}
		if len(ans.Details) > 0 {
			ans.Error = "not ready"
			writeJSON(w, http.StatusServiceUnavailable, ans)
			return
		}
		ans.Status = "ready"
		writeJSON(w, http.StatusOK, ans)
	})
}

// need returns the checks scope needs, and false for an unknown scope.
func (rd Readiness) need(scope string) ([]string, bool) {
	if rd.Scopes == nil {
		if scope != "" {
			return nil, false
		}
		all := make([]string, 0, len(rd.Checks))
		for name := range rd.Checks {
			all = append(all, name)
		}
		return all, true
	}
	need, ok := rd.Scopes[scope]
	return need, ok
}

func (rd Readiness) scopeNames() []string {
	var names []string
	for s := range rd.Scopes {
		if s != "" {
			names = append(names, s)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"(none: omit scope)"}
	}
	return names
}
