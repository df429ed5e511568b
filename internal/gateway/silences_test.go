package gateway

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/silence"
)

func TestSilences(t *testing.T) {
	t.Parallel()
	e, admin, op, viewer := newRolesEnv(t)
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }

	create := func(body string) silence.Silence {
		t.Helper()
		r := e.do(req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: body})
		if r.status != http.StatusCreated {
			t.Fatalf("create %s = %s, want 201", body, r)
		}
		return decode[silence.Silence](t, r)
	}
	oneOff := create(`{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1","labels":{"team":"infra"}},"starts_at":"` + ts(-time.Hour) + `","ends_at":"` + ts(time.Hour) + `","comment":"migration"}`)
	if oneOff.ID == "" || oneOff.CreatedBy != "op" || oneOff.Matchers.RuleID != "5b0c6a52-0000-4000-8000-0000000000a1" || !oneOff.EndsAt.Equal(now.Add(time.Hour)) || oneOff.Weekly != nil {
		t.Errorf("created = %+v, want an id, created_by op and the window", oneOff)
	}
	weekly := create(`{"matchers":{"agent_id":"9d4c1f6e-0000-4000-8000-0000000000b1"},"weekly":{"days":["sat","sun"],"start":"22:00","end":"06:00","time_zone":"Europe/Berlin"}}`)
	if weekly.Weekly == nil || weekly.Weekly.TimeZone != "Europe/Berlin" || weekly.StartsAt != nil {
		t.Errorf("created weekly = %+v, want the weekly window", weekly)
	}
	expired := create(`{"matchers":{"agent_id":"9d4c1f6e-0000-4000-8000-0000000000b2"},"starts_at":"` + ts(-2*time.Hour) + `","ends_at":"` + ts(-time.Hour) + `"}`)

	ids := func(path string) []string {
		t.Helper()
		r := e.do(req{method: "GET", path: path, auth: bearer(viewer)})
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %s", path, r)
		}
		var out []string
		for _, s := range decode[silenceList](t, r).Silences {
			out = append(out, s.ID)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	if got, want := ids("/api/v1/silences"), sorted(oneOff.ID, weekly.ID); !slices.Equal(got, want) {
		t.Errorf("list = %v, want %v (not the expired one)", got, want)
	}
	if got, want := ids("/api/v1/silences?expired=true"), sorted(oneOff.ID, weekly.ID, expired.ID); !slices.Equal(got, want) {
		t.Errorf("list with expired = %v, want %v", got, want)
	}
	if got := ids("/api/v1/silences?expired=false"); len(got) != 2 {
		t.Errorf("list with expired=false = %v, want 2", got)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/silences/" + weekly.ID, auth: bearer(viewer)}); r.status != http.StatusOK ||
		decode[silence.Silence](t, r).Weekly == nil {
		t.Errorf("get = %s, want the weekly silence", r)
	}

	window := `"starts_at":"` + ts(0) + `","ends_at":"` + ts(time.Hour) + `"`
	e.checkRefusals(t, []refusal{
		{"viewer creates", req{method: "POST", path: "/api/v1/silences", auth: bearer(viewer), body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1"},` + window + `}`}, 403, ""},
		{"viewer deletes", req{method: "DELETE", path: "/api/v1/silences/" + weekly.ID, auth: bearer(viewer)}, 403, ""},
		{"no matchers", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{},` + window + `}`}, 400, "matchers"},
		{"no window", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1"}}`}, 400, "starts_at"},
		{"ends before start", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1"},"starts_at":"` + ts(0) + `","ends_at":"` + ts(-time.Minute) + `"}`}, 400, "ends_at"},
		{"bad time zone", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1"},"weekly":{"days":["mon"],"start":"01:00","end":"02:00","time_zone":"Mars/Olympus"}}`}, 400, "weekly.time_zone"},
		{"bad day", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1"},"weekly":{"days":["funday"],"start":"01:00","end":"02:00","time_zone":"UTC"}}`}, 400, "weekly.days"},
		{"created_by from the client", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1"},` + window + `,"created_by":"mallory"}`}, 400, "created_by"},
		{"time not RFC 3339", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"rule_id":"5b0c6a52-0000-4000-8000-0000000000a1"},"starts_at":"tomorrow","ends_at":"` + ts(time.Hour) + `"}`}, 400, "starts_at"},
		{"rule_id not a UUID", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"rule_id":"r1"},` + window + `}`}, 400, "matchers.rule_id"},
		{"agent_id not a UUID", req{method: "POST", path: "/api/v1/silences", auth: bearer(op), body: `{"matchers":{"agent_id":"web-1"},` + window + `}`}, 400, "matchers.agent_id"},
		{"bad expired", req{method: "GET", path: "/api/v1/silences?expired=yes", auth: bearer(viewer)}, 400, ""},
		{"get unknown", req{method: "GET", path: "/api/v1/silences/5b0c6a52-0000-4000-8000-000000000000", auth: bearer(viewer)}, 404, ""},
		{"delete non-uuid", req{method: "DELETE", path: "/api/v1/silences/nope", auth: bearer(op)}, 404, ""},
	})
	if got := ids("/api/v1/silences?expired=true"); len(got) != 3 {
		t.Errorf("silences after refusals = %v, want the 3 created", got)
	}

	if r := e.do(req{method: "DELETE", path: "/api/v1/silences/" + oneOff.ID, auth: bearer(op)}); r.status != http.StatusNoContent {
		t.Errorf("delete = %s, want 204", r)
	}
	if r := e.do(req{method: "GET", path: "/api/v1/silences/" + oneOff.ID, auth: bearer(op)}); r.status != http.StatusNotFound {
		t.Errorf("get after delete = %s, want 404", r)
	}
	want := []string{"op silence.create", "op silence.create", "op silence.create", "op silence.delete"}
	if got := e.auditActions(admin, "silence."); !slices.Equal(got, want) {
		t.Errorf("silence audit = %q, want %q", got, want)
	}
}
