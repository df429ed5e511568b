package influx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// fakeV2 answers the few InfluxDB 2.x API calls bucket provisioning makes, in the shapes 2.7
// gives (GET /ping, GET /api/v2/orgs, GET/POST /api/v2/buckets, PATCH /api/v2/buckets/{id}), and
// keeps the buckets it was asked to create or change.
type fakeV2 struct {
	mu      sync.Mutex
	buckets map[string]*fakeBucket // by name
	calls   []string
}

type fakeBucket struct {
	ID             string          `json:"id"`
	OrgID          string          `json:"orgID"`
	Name           string          `json:"name"`
	Type           string          `json:"type"`
	RetentionRules []fakeRetention `json:"retentionRules"`
	CreatedAt      string          `json:"createdAt"`
	UpdatedAt      string          `json:"updatedAt"`
}

type fakeRetention struct {
	Type                      string `json:"type"`
	EverySeconds              int64  `json:"everySeconds"`
	ShardGroupDurationSeconds int64  `json:"shardGroupDurationSeconds,omitempty"`
}

func (f *fakeV2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Token tok" && r.URL.Path != "/ping" {
		http.Error(w, `{"code":"unauthorized","message":"unauthorized access"}`, http.StatusUnauthorized)
		return
	}
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v) // a client gone away is the client's test failure
	}
	switch {
	case r.URL.Path == "/ping":
		w.Header().Set("X-Influxdb-Version", "v2.7.11")
		w.Header().Set("X-Influxdb-Build", "OSS")
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v2/orgs":
		if r.URL.Query().Get("org") != "acme" {
			reply(http.StatusNotFound, map[string]string{"code": "not found", "message": "organization name \"" + r.URL.Query().Get("org") + "\" not found"})
			return
		}
		reply(http.StatusOK, map[string]any{"links": map[string]string{"self": "/api/v2/orgs"},
			"orgs": []map[string]any{{"id": "0a1b2c3d4e5f6a7b", "name": "acme", "status": "active"}}})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v2/buckets":
		var out []*fakeBucket
		if b := f.buckets[r.URL.Query().Get("name")]; b != nil && r.URL.Query().Get("orgID") == b.OrgID {
			out = append(out, b)
		}
		reply(http.StatusOK, map[string]any{"links": map[string]string{"self": "/api/v2/buckets"}, "buckets": out})
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/buckets":
		var b fakeBucket
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.Name == "" || b.OrgID == "" {
			reply(http.StatusBadRequest, map[string]string{"code": "invalid", "message": "bad bucket"})
			return
		}
		if f.buckets[b.Name] != nil {
			reply(http.StatusUnprocessableEntity, map[string]string{"code": "conflict", "message": "bucket with name " + b.Name + " already exists"})
			return
		}
		b.ID, b.Type = fmt.Sprintf("%016x", len(f.buckets)+1), "user"
		b.CreatedAt, b.UpdatedAt = "2026-11-30T00:00:00Z", "2026-11-30T00:00:00Z"
		f.buckets[b.Name] = &b
		reply(http.StatusCreated, b)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/api/v2/buckets/"):
		id := strings.TrimPrefix(r.URL.Path, "/api/v2/buckets/")
		var patch struct {
			RetentionRules []fakeRetention `json:"retentionRules"`
		}
		if err := json.NewDecoder(r.Body).Decode(&patch); err != nil {
			reply(http.StatusBadRequest, map[string]string{"code": "invalid", "message": err.Error()})
			return
		}
		for _, b := range f.buckets {
			if b.ID == id {
				b.RetentionRules = patch.RetentionRules
				reply(http.StatusOK, b)
				return
			}
		}
		reply(http.StatusNotFound, map[string]string{"code": "not found", "message": "bucket not found"})
	default:
		reply(http.StatusNotFound, map[string]string{"code": "not found", "message": "path not found"})
	}
}

func (f *fakeV2) retention() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int64{}
	for name, b := range f.buckets {
		out[name] = -1
		if len(b.RetentionRules) == 1 {
			out[name] = b.RetentionRules[0].EverySeconds
		}
	}
	return out
}

func TestProvisionTiersV2(t *testing.T) {
	fake := &fakeV2{buckets: map[string]*fakeBucket{}}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := influx.New(influx.Config{URL: srv.URL, Token: "tok", Org: "acme", Bucket: "metrics", RetentionDays: 30, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	const day = 86400
	steps := []struct {
		name string
		cfg  influx.TierConfig
		want map[string]int64
	}{
		{"created", influx.TierConfig{Retention1m: 90, Retention5m: 180, Retention1h: 730, Retention1d: 1825},
			map[string]int64{"metrics": 30 * day, "metrics_1m": 90 * day, "metrics_5m": 180 * day, "metrics_1h": 730 * day, "metrics_1d": 1825 * day}},
		{"changed in place", influx.TierConfig{Retention1m: 7, Retention5m: 180, Retention1h: 0, Retention1d: 1825},
			map[string]int64{"metrics": 30 * day, "metrics_1m": 7 * day, "metrics_5m": 180 * day, "metrics_1h": 0, "metrics_1d": 1825 * day}},
	}
	for _, st := range steps {
		if err := c.Provision(ctx); err != nil {
			t.Fatalf("%s: Provision: %v", st.name, err)
		}
		ids := map[string]string{}
		for n, b := range fake.buckets {
			ids[n] = b.ID
		}
		if err := c.ProvisionTiers(ctx, st.cfg); err != nil {
			t.Fatalf("%s: ProvisionTiers: %v", st.name, err)
		}
		got := fake.retention()
		if len(got) != len(st.want) {
			t.Errorf("%s: buckets %v, want %v", st.name, got, st.want)
		}
		for name, want := range st.want {
			if g, ok := got[name]; !ok || g != want {
				t.Errorf("%s: bucket %s retention = %d (exists %v), want %d s", st.name, name, g, ok, want)
			}
		}
		for n, id := range ids {
			if fake.buckets[n].ID != id {
				t.Errorf("%s: bucket %s was recreated (id %s → %s), want it changed in place", st.name, n, id, fake.buckets[n].ID)
			}
		}
	}
	bad, err := influx.New(influx.Config{URL: srv.URL, Token: "tok", Org: "nobody", Bucket: "metrics", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.ProvisionTiers(ctx, influx.TierConfig{}); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Errorf("ProvisionTiers with an unknown organization = %v, want an error naming it", err)
	}
}
