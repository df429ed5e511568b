package fieldtype_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/fieldtype"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// lp parses a line-protocol body as the gateway does.
func lp(t *testing.T, body string) []metric.Point {
	t.Helper()
	pts, err := metric.ParseLineProtocol([]byte(body), "", time.Now(), metric.DefaultLimits())
	if err != nil {
		t.Fatalf("ParseLineProtocol(%q): %v", body, err)
	}
	return pts
}

// js parses a JSON body as the gateway does.
func js(t *testing.T, body string) []metric.Point {
	t.Helper()
	pts, err := metric.ParseJSON([]byte(body), time.Now(), metric.DefaultLimits())
	if err != nil {
		t.Fatalf("ParseJSON(%q): %v", body, err)
	}
	return pts
}

// newClient opens another connection to the test Redis, closed in t.Cleanup.
func newClient(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		url = testenv.DefaultRedisURL
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// checkErr checks the outcome of Check: want "" for success, else a part of the point error.
func checkErr(t *testing.T, what string, err error, wantIndex int, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("Check(%s) = %v, want nil", what, err)
		}
		return
	}
	var pe *metric.PointError
	if !errors.As(err, &pe) {
		t.Errorf("Check(%s) = %v, want a *metric.PointError containing %q", what, err, want)
		return
	}
	if pe.Index != wantIndex || !strings.Contains(pe.Reason, want) {
		t.Errorf("Check(%s) = point %d: %q, want point %d: %q", what, pe.Index, pe.Reason, wantIndex, want)
	}
}

func TestCheckLearnsAndRefuses(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := fieldtype.New(rdb, prefix, nil)
	ctx := context.Background()

	checkErr(t, "first write", r.Check(ctx, lp(t, "disk,path=/ free=1.5,used=2i,mount=\"/\",ok=t"), fieldtype.LineProtocol), 0, "")
	for field, want := range map[string]string{"free": "float", "used": "integer", "mount": "string", "ok": "boolean"} {
		if got, err := rdb.HGet(ctx, prefix+"fieldtypes:disk", field).Result(); err != nil || got != want {
			t.Errorf("HGET %sfieldtypes:disk %s = %q, %v; want %q", prefix, field, got, err, want)
		}
	}
	tests := []struct {
		name, body string
		index      int
		want       string
	}{
		{"same types", "disk free=3.5,used=4i,mount=\"/x\",ok=false", 0, ""},
		{"string for float", "disk free=\"lots\"", 0, `field "free" of measurement "disk" is float; this point sends string`},
		{"integer for float", "disk free=3i", 0, `field "free" of measurement "disk" is float; this point sends integer`},
		{"float for integer", "disk used=3", 0, `field "used" of measurement "disk" is integer; this point sends float`},
		{"bool for string", "disk mount=true", 0, `field "mount" of measurement "disk" is string; this point sends boolean`},
		{"second point", "disk free=1\ndisk ok=1i", 1, `field "ok" of measurement "disk" is boolean; this point sends integer`},
		{"other measurement is free", "net free=\"x\"", 0, ""},
		{"new fields in one request disagree", "mem a=1\nmem a=\"x\"", 1, `field "a" of measurement "mem" is float; this point sends string`},
		{"tag named like a field", "disk,free=x other=1", 0, `tag key "free" of measurement "disk" is already a field (float)`},
	}
	for _, tc := range tests {
		checkErr(t, tc.name, r.Check(ctx, lp(t, tc.body), fieldtype.LineProtocol), tc.index, tc.want)
	}
	if got, _ := rdb.HGet(ctx, prefix+"fieldtypes:disk", "free").Result(); got != "float" {
		t.Errorf("after refused writes disk.free is registered as %q, want float", got)
	}
}

// The JSON number rule: a number is a float, unless the field is an integer field and the
// number is integral.
func TestCheckJSONNumbers(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := fieldtype.New(rdb, prefix, nil)
	ctx := context.Background()
	checkErr(t, "line protocol integers", r.Check(ctx, lp(t, "proc count=3i,load=1.5,name=\"x\""), fieldtype.LineProtocol), 0, "")

	pts := js(t, `{"points":[{"measurement":"proc","fields":{"count":4,"load":2}},{"measurement":"proc","fields":{"count":-9e15}}]}`)
	checkErr(t, "integral numbers", r.Check(ctx, pts, fieldtype.JSON), 0, "")
	if v := pts[0].Fields[0].Value; pts[0].Fields[0].Key != "count" || v.Kind != metric.KindInt || v.I != 4 {
		t.Errorf("JSON 4 for integer field count = %+v, want integer 4", v)
	}
	if v := pts[1].Fields[0].Value; v.Kind != metric.KindInt || v.I != -9e15 {
		t.Errorf("JSON -9e15 for integer field count = %+v, want integer -9000000000000000", v)
	}
	if v := pts[0].Fields[1].Value; pts[0].Fields[1].Key != "load" || v.Kind != metric.KindFloat || v.F != 2 {
		t.Errorf("JSON 2 for float field load = %+v, want float 2", v)
	}
	if got := string(metric.AppendLineProtocol(nil, pts[:1], "a1")); !strings.Contains(got, "count=4i,load=2 ") {
		t.Errorf("encoded point = %q, want count=4i,load=2", got)
	}

	tests := []struct {
		name, body string
		want       string
	}{
		{"fraction for integer", `{"points":[{"measurement":"proc","fields":{"count":4.5}}]}`, `field "count" of measurement "proc" is integer; this point sends the fractional number 4.5`},
		{"beyond int64", `{"points":[{"measurement":"proc","fields":{"count":1e19}}]}`, `is integer; this point sends 1e+19, beyond the integer range`},
		{"number for string", `{"points":[{"measurement":"proc","fields":{"name":1}}]}`, `field "name" of measurement "proc" is string; this point sends a number (float)`},
		{"bool for integer", `{"points":[{"measurement":"proc","fields":{"count":true}}]}`, `is integer; this point sends boolean`},
		{"new field", `{"points":[{"measurement":"proc","fields":{"fresh":7}}]}`, ""},
	}
	for _, tc := range tests {
		checkErr(t, tc.name, r.Check(ctx, js(t, tc.body), fieldtype.JSON), 0, tc.want)
	}
	// A new field from JSON is a float field: 7i in line protocol is refused afterwards.
	checkErr(t, "integer after a JSON number", r.Check(ctx, lp(t, "proc fresh=7i"), fieldtype.LineProtocol), 0,
		`field "fresh" of measurement "proc" is float; this point sends integer`)
}

// Two registries on one prefix (two gateway copies) share what they learn through Redis.
func TestCheckSharedAcrossProcesses(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	a := fieldtype.New(rdb, prefix, nil)
	b := fieldtype.New(newClient(t), prefix, nil)
	ctx := context.Background()
	checkErr(t, "a learns", a.Check(ctx, lp(t, "disk free=1.5"), fieldtype.LineProtocol), 0, "")
	checkErr(t, "b refuses", b.Check(ctx, lp(t, "disk free=\"x\""), fieldtype.LineProtocol), 0, `field "free" of measurement "disk" is float; this point sends string`)
	checkErr(t, "b learns", b.Check(ctx, lp(t, "disk used=1i"), fieldtype.LineProtocol), 0, "")
	checkErr(t, "a refuses", a.Check(ctx, lp(t, "disk used=1"), fieldtype.LineProtocol), 0, `field "used" of measurement "disk" is integer; this point sends float`)
}

// Concurrent first writes of one field with different types, through two registries: exactly
// one type wins, every request of that type is accepted and every other refused.
func TestCheckConcurrentFirstWrites(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	regs := []*fieldtype.Registry{fieldtype.New(rdb, prefix, nil), fieldtype.New(newClient(t), prefix, nil)}
	ctx := context.Background()
	bodies := []string{"disk %s=1.5", "disk %s=\"s\"", "disk %s=2i", "disk %s=true"}
	for round := range 20 {
		field := fmt.Sprintf("f%d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		accepted := map[string]int{}
		refused := 0
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(bodies[w%len(bodies)], field)
				err := regs[w%2].Check(ctx, lp(t, body), fieldtype.LineProtocol)
				mu.Lock()
				defer mu.Unlock()
				var pe *metric.PointError
				switch {
				case err == nil:
					accepted[body]++
				case errors.As(err, &pe) && strings.Contains(pe.Reason, fmt.Sprintf("field %q of measurement \"disk\" is", field)):
					refused++
				default:
					t.Errorf("Check(%q) = %v, want nil or a type conflict", body, err)
				}
			}()
		}
		wg.Wait()
		if len(accepted) != 1 || refused != 12 {
			t.Fatalf("round %d: accepted %v and refused %d requests, want one type accepted (4 requests) and 12 refused", round, accepted, refused)
		}
	}
}

func TestCheckRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	r := fieldtype.New(rdb, "t:down:", nil)
	err := r.Check(context.Background(), lp(t, "disk free=1"), fieldtype.LineProtocol)
	var pe *metric.PointError
	if err == nil || errors.As(err, &pe) {
		t.Fatalf("Check with Redis down = %v, want an error that is not a point error", err)
	}
}

// influxWith writes body to a fresh database of a private influxd without Flux and returns a
// client for it.
func influxWith(t *testing.T, srv *testenv.Influxd, db, body string) *influx.Client {
	t.Helper()
	c, err := influx.New(influx.Config{URL: srv.URL(), Bucket: db, RetentionDays: 30, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	if err := c.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if body != "" {
		if err := c.Write(ctx, []byte(body)); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	return c
}

func TestSeed(t *testing.T) {
	srv := testenv.PrivateInfluxd(t, testenv.WithoutFlux())
	now := time.Now().UnixNano()
	old := time.Now().Add(-72 * time.Hour).UnixNano()
	c := influxWith(t, srv, "seed", fmt.Sprintf("disk,agent=a free=1.5,used=2i,path=\"/\",ok=true %d\n"+
		"cpu,agent=a usage=3 %d\ncpu,agent=a taken=\"x\" %d\n", now, now, now))
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	// A type the gateways registered before the seed ran is kept.
	if err := rdb.HSet(ctx, prefix+"fieldtypes:cpu", "taken", "integer").Err(); err != nil {
		t.Fatal(err)
	}
	r := fieldtype.New(rdb, prefix, nil)
	n, err := r.Seed(ctx, c)
	if err != nil || n != 6 {
		t.Fatalf("Seed = %d, %v; want 6 fields", n, err)
	}
	want := map[string]map[string]string{
		"disk": {"free": "float", "used": "integer", "path": "string", "ok": "boolean"},
		"cpu":  {"usage": "float", "taken": "integer"},
	}
	for m, fields := range want {
		got, err := rdb.HGetAll(ctx, prefix+"fieldtypes:"+m).Result()
		if err != nil || fmt.Sprint(got) != fmt.Sprint(fields) {
			t.Errorf("HGETALL fieldtypes:%s = %v, %v; want %v", m, got, err, fields)
		}
	}
	// Another copy that did not seed refuses through Redis; this one from its cache.
	other := fieldtype.New(newClient(t), prefix, nil)
	for _, reg := range []*fieldtype.Registry{r, other} {
		checkErr(t, "string for seeded float", reg.Check(ctx, lp(t, "disk free=\"x\""), fieldtype.LineProtocol), 0,
			`field "free" of measurement "disk" is float; this point sends string`)
		checkErr(t, "JSON integral for seeded integer", reg.Check(ctx, js(t, `{"points":[{"measurement":"disk","fields":{"used":5}}]}`), fieldtype.JSON), 0, "")
	}

	// A field InfluxDB holds with two types (two shards): the first listed is registered.
	c2 := influxWith(t, srv, "seedmixed", fmt.Sprintf("m,agent=a x=1i %d\nm,agent=a x=\"s\" %d\n", old, now))
	rdb2, prefix2 := testenv.Redis(t)
	if _, err := fieldtype.New(rdb2, prefix2, nil).Seed(ctx, c2); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	keys, _ := c2.FieldKeys(ctx)
	if got, _ := rdb2.HGet(ctx, prefix2+"fieldtypes:m", "x").Result(); len(keys) != 2 || got != keys[0].Type {
		t.Errorf("m.x listed as %v, registered as %q; want the first listed type", keys, got)
	}
}

// InfluxDB down at start: the registry works from Redis meanwhile, and the seed runs once the
// server answers.
func TestSeedUntilDoneWaitsForInfluxDB(t *testing.T) {
	srv := testenv.PrivateInfluxd(t, testenv.WithoutFlux())
	c := influxWith(t, srv, "late", fmt.Sprintf("disk,agent=a free=1.5 %d\n", time.Now().UnixNano()))
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	r := fieldtype.New(rdb, prefix, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { r.SeedUntilDone(ctx, c); close(done) }()

	checkErr(t, "while influxdb is down", r.Check(ctx, lp(t, "net rx=1i"), fieldtype.LineProtocol), 0, "")
	checkErr(t, "learned while influxdb is down", r.Check(ctx, lp(t, "net rx=1"), fieldtype.LineProtocol), 0, "is integer; this point sends float")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("SeedUntilDone did not finish within 30s of influxd starting")
	}
	checkErr(t, "seeded after the outage", r.Check(ctx, lp(t, "disk free=1i"), fieldtype.LineProtocol), 0, `field "free" of measurement "disk" is float`)
}

// A request bringing more new fields than one pipeline holds registers them all.
func TestCheckManyNewFields(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	r := fieldtype.New(rdb, prefix, nil)
	var b strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&b, "wide f%d=%di\n", i, i)
	}
	lim := metric.DefaultLimits()
	pts, err := metric.ParseLineProtocol([]byte(b.String()), "", time.Now(), lim)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	checkErr(t, "2500 new fields", r.Check(ctx, pts, fieldtype.LineProtocol), 0, "")
	if n, err := rdb.HLen(ctx, prefix+"fieldtypes:wide").Result(); err != nil || n != 2500 {
		t.Errorf("HLEN fieldtypes:wide = %d, %v; want 2500", n, err)
	}
	checkErr(t, "a float for the last one", r.Check(ctx, lp(t, "wide f2499=1"), fieldtype.LineProtocol), 0, `field "f2499" of measurement "wide" is integer`)
}

// TestCheckOnCluster registers fields of several measurements in one request on Redis Cluster,
// where their hashes live in different slots: one pipeline of single-key commands, split by node.
func TestCheckOnCluster(t *testing.T) {
	rdb, prefix := testenv.RedisCluster(t)
	r := fieldtype.New(rdb, prefix, nil)
	ctx := context.Background()
	var body strings.Builder
	for i := range 20 {
		fmt.Fprintf(&body, "m%d f=1i,g=\"x\"\n", i)
	}
	checkErr(t, "first write", r.Check(ctx, lp(t, body.String()), fieldtype.LineProtocol), 0, "")
	for i := range 20 {
		if got, err := rdb.HGet(ctx, fmt.Sprintf("%sfieldtypes:m%d", prefix, i), "f").Result(); err != nil || got != "integer" {
			t.Errorf("HGET %sfieldtypes:m%d f = %q, %v; want integer", prefix, i, got, err)
		}
	}
	other := fieldtype.New(rdb, prefix, nil) // another gateway: learns from Redis
	checkErr(t, "conflict", other.Check(ctx, lp(t, "m7 f=1.5"), fieldtype.LineProtocol), 0, `field "f" of measurement "m7" is integer; this point sends float`)
}
