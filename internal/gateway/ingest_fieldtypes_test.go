package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// TestIngestFieldTypes: a point whose field type differs from the type the field already has
// (InfluxDB would refuse it after the 204) gets 400 naming the field and its type, whichever
// agent set the type first, and nothing of the request reaches the stream.
func TestIngestFieldTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	admin := e.adminToken()
	a := e.register(admin, "types-a")
	b := e.register(admin, "types-b")
	jsonReq := func(agent registered, body string) req {
		return req{method: "POST", path: "/api/v1/agents/" + agent.ID + "/metrics", auth: bearer(agent.APIKey), body: body}
	}
	lpReq := func(agent registered, body string) req {
		return req{method: "POST", path: "/api/v2/write", auth: "Token " + agent.APIKey, body: body, contentType: "text/plain"}
	}

	// Agent A fixes the types: disk.free float (JSON number), disk.used integer (3i), disk.path string.
	for _, r := range []req{
		jsonReq(a, `{"points":[{"measurement":"disk","fields":{"free":10.5,"path":"/"}}]}`),
		lpReq(a, "disk used=3i"),
	} {
		if got := e.do(r); got.status != http.StatusNoContent {
			t.Fatalf("POST %s = %s, want 204", r.path, got)
		}
	}
	if got, _ := e.rdb.HGetAll(context.Background(), e.prefix+"fieldtypes:disk").Result(); len(got) != 3 ||
		got["free"] != "float" || got["used"] != "integer" || got["path"] != "string" {
		t.Fatalf("registry for disk = %v, want free float, used integer, path string", got)
	}

	tests := []struct {
		name string
		r    req
		want string
	}{
		{"B sends a string for a float", jsonReq(b, `{"points":[{"measurement":"disk","fields":{"free":"lots"}}]}`),
			`point 0: field "free" of measurement "disk" is float; this point sends string`},
		{"B sends an integer for a float", lpReq(b, "disk free=1.5\ndisk free=3i"),
			`line 2: field "free" of measurement "disk" is float; this point sends integer`},
		{"A sends a float for an integer", lpReq(a, "# c\n\ndisk used=3.0"),
			`line 3: field "used" of measurement "disk" is integer; this point sends float`},
		{"a fractional JSON number for an integer", jsonReq(b, `{"points":[{"measurement":"disk","fields":{"used":2.5}}]}`),
			`point 0: field "used" of measurement "disk" is integer; this point sends the fractional number 2.5`},
		{"a JSON number for a string", jsonReq(b, `{"points":[{"measurement":"disk","fields":{"path":1}}]}`),
			`point 0: field "path" of measurement "disk" is string; this point sends a number (float)`},
		{"a tag named like a field", lpReq(b, "disk,free=x used=1i"),
			`line 1: tag key "free" of measurement "disk" is already a field (float)`},
		{"a field named agent (JSON)", jsonReq(b, `{"points":[{"measurement":"cpu","fields":{"agent":"`+a.ID+`","v":1}}]}`),
			`point 0: field key "agent" is reserved`},
		{"a field named agent (line protocol)", lpReq(b, `cpu agent="`+a.ID+`",v=1`),
			`line 1: field key "agent" is reserved`},
	}
	before := e.streamLen()
	for _, tc := range tests {
		got := e.do(tc.r)
		if got.status != http.StatusBadRequest || !strings.Contains(got.errorMessage(t), tc.want) {
			t.Errorf("%s: POST %s = %s, want 400 containing %q", tc.name, tc.r.path, got, tc.want)
		}
	}
	if n := e.streamLen(); n != before {
		t.Errorf("stream entries after refused requests = %d, want %d (unchanged)", n, before)
	}

	// The JSON number rule: an integral number is written as an integer to an integer field, and
	// stays a float for a float field.
	if got := e.do(jsonReq(b, `{"points":[{"measurement":"disk","fields":{"used":4,"free":7}}]}`)); got.status != http.StatusNoContent {
		t.Fatalf("POST integral JSON numbers = %s, want 204", got)
	}
	var ofB []string
	for _, en := range e.entries() {
		if en.meta[stream.MetaAgent] == b.ID {
			ofB = append(ofB, en.payload)
		}
	}
	if len(ofB) != 1 || !strings.Contains(ofB[0], " free=7,used=4i ") {
		t.Errorf("agent B's stream entries = %q, want one with free=7 (float) and used=4i (integer)", ofB)
	}
}
