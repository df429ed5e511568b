package metric

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// roundTrip encodes points for testAgent, checks the encoding's shape and decodes it back.
func roundTrip(t *testing.T, points []Point) []Point {
	t.Helper()
	payload := AppendLineProtocol(nil, points, testAgent)
	if n := strings.Count(string(payload), "\n"); n != len(points) || !strings.HasSuffix(string(payload), "\n") {
		t.Fatalf("AppendLineProtocol(%d points) = %q: want one line per point, each ending in a newline", len(points), payload)
	}
	got, err := DecodeLineProtocol(payload)
	if err != nil {
		t.Fatalf("DecodeLineProtocol(%q) error = %v", payload, err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	fromJSON, err := ParseJSON(agentBatchJSON, testNow, DefaultLimits())
	if err != nil {
		t.Fatalf("ParseJSON(agent batch) error = %v", err)
	}
	fromLP, err := ParseLineProtocol(agentBatchLP, "s", testNow, DefaultLimits())
	if err != nil {
		t.Fatalf("ParseLineProtocol(agent batch) error = %v", err)
	}
	for name, points := range map[string][]Point{"json": fromJSON, "line protocol": fromLP} {
		if len(points) != 6 {
			t.Fatalf("%s: parsed %d points, want 6", name, len(points))
		}
		if got, want := roundTrip(t, points), withAgent(points, testAgent); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Decode(Append(points)) =\n%s want\n%s", name, dump(got), dump(want))
		}
	}
	// The two forms of the batch differ only in the types of the whole numbers.
	if fromJSON[0].Time != fromLP[0].Time || !reflect.DeepEqual(fromJSON[0], fromLP[0]) {
		t.Errorf("cpu point from JSON = %+v, from line protocol = %+v; want equal", fromJSON[0], fromLP[0])
	}
}

func TestEscapingRoundTrip(t *testing.T) {
	body := `{"points":[{"measurement":"my meas,ure=ment\"x\\y","tags":{"a key,with=all\"of\\them":"a value, with=all \"of\\them",` +
		`"k":" leading and trailing ","sq":"'single'","eq":"=","comma":",","space":" ","hash":"#","bs":"\\\\x"},` +
		`"fields":{"f key,with=all\"of\\them":1.5,"s":"str with \"quotes\", commas, = and \\backslashes\\","end":"\\","q":"\"","u":"ünï©ødé ✓"}}]}`
	points, err := ParseJSON([]byte(body), testNow, DefaultLimits())
	if err != nil {
		t.Fatalf("ParseJSON(%q) error = %v", body, err)
	}
	want := withAgent(points, testAgent)
	if got := roundTrip(t, points); !reflect.DeepEqual(got, want) {
		t.Errorf("Decode(Append(%q)) =\n%s want\n%s", body, dump(got), dump(want))
	}
	// Our own encoding passes our own parser unchanged.
	payload := AppendLineProtocol(nil, points, testAgent)
	again, err := ParseLineProtocol(payload, "ns", testNow, DefaultLimits())
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Errorf("ParseLineProtocol(%q) =\n%s, %v; want\n%s", payload, dump(again), err, dump(want))
	}
	if p := points[0]; p.Measurement != "my meas,ure=ment\"x\\y" || p.Tags[0].Key != "a key,with=all\"of\\them" {
		t.Errorf("ParseJSON(%q) unescaped the names to %q and %q", body, p.Measurement, p.Tags[0].Key)
	}
}

func TestAgentTagForced(t *testing.T) {
	f := func(body string) {
		t.Helper()
		points, err := ParseLineProtocol([]byte(body), "", testNow, DefaultLimits())
		if err != nil {
			t.Fatalf("ParseLineProtocol(%q) error = %v", body, err)
		}
		got := roundTrip(t, points)
		for _, p := range got {
			n := 0
			for _, tag := range p.Tags {
				if tag.Key == "agent" {
					n++
					if tag.Value != testAgent {
						t.Errorf("ParseLineProtocol(%q): stored agent tag = %q, want %q", body, tag.Value, testAgent)
					}
				}
			}
			if n != 1 {
				t.Errorf("ParseLineProtocol(%q): stored point has %d agent tags, want 1: %+v", body, n, p.Tags)
			}
		}
	}
	f("cpu v=1")
	f("cpu,agent=other v=1")
	f("cpu,agent=" + testAgent + " v=1")
	f("cpu,a=1,agent=other,b=2 v=1\ncpu,aaaaaa=1 v=1\ncpu,ag=1,z=2 v=1\ncpu,Agent=x,agent_id=y v=1")
}

func TestAppendLineProtocolAppends(t *testing.T) {
	points := []Point{{Measurement: "cpu", Fields: []Field{{"v", Value{Kind: KindFloat, F: 1}}}, Time: 1}}
	dst := []byte("earlier line\n")
	got := string(AppendLineProtocol(dst, points, "A"))
	if want := "earlier line\ncpu,agent=A v=1 1\n"; got != want {
		t.Errorf("AppendLineProtocol(%q, ...) = %q, want %q", dst, got, want)
	}
	if got := AppendLineProtocol(nil, nil, "A"); len(got) != 0 {
		t.Errorf("AppendLineProtocol(nil, nil) = %q, want nothing", got)
	}
}

// TestCheckNonFinite covers floats that neither parser can produce (JSON has no NaN; the
// line-protocol decoder refuses them itself) but that a Point built in code can hold.
func TestCheckNonFinite(t *testing.T) {
	f := func(v float64, want string) {
		t.Helper()
		c := newChecker(testNow, DefaultLimits())
		p := Point{Measurement: "cpu", Fields: []Field{{"usage_percent", Value{Kind: KindFloat, F: v}}}, Time: testNow.UnixNano()}
		if got := c.check(&p); got != want {
			t.Errorf("check(usage_percent=%v) = %q, want %q", v, got, want)
		}
	}
	f(math.NaN(), `field "usage_percent": NaN is not allowed`)
	f(math.Inf(1), `field "usage_percent": +Inf is not allowed`)
	f(math.Inf(-1), `field "usage_percent": -Inf is not allowed`)
	f(math.MaxFloat64, "")
}

func TestLimitsValidate(t *testing.T) {
	f := func(change func(*Limits), want string) {
		t.Helper()
		lim := DefaultLimits()
		change(&lim)
		err := lim.Validate()
		if want == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", lim, err)
			}
			return
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", lim, err, want)
		}
		if _, err := ParseJSON(agentBatchJSON, testNow, lim); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseJSON with limits %+v: error = %v, want %q", lim, err, want)
		}
		if _, err := ParseLineProtocol(agentBatchLP, "s", testNow, lim); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseLineProtocol with limits %+v: error = %v, want %q", lim, err, want)
		}
	}
	f(func(*Limits) {}, "")
	f(func(l *Limits) { l.MaxTags, l.MaxPast, l.MaxFuture = 0, 0, 0 }, "")
	f(func(l *Limits) { l.MaxPoints = 0 }, "MaxPoints must be positive, got 0")
	f(func(l *Limits) { l.MaxFields = -1 }, "MaxFields must be positive, got -1")
	f(func(l *Limits) { l.MaxNameLen = 0 }, "MaxNameLen must be positive")
	f(func(l *Limits) { l.MaxTagValueLen = 0 }, "MaxTagValueLen must be positive")
	f(func(l *Limits) { l.MaxStringLen = 0 }, "MaxStringLen must be positive")
	f(func(l *Limits) { l.MaxTags = -1 }, "MaxTags must not be negative")
	f(func(l *Limits) { l.MaxPast = -time.Second }, "MaxPast must not be negative")
	f(func(l *Limits) { l.MaxFuture = -time.Second }, "MaxFuture must not be negative")
	if err := (Limits{}).Validate(); err == nil {
		t.Errorf("Limits{}.Validate() = nil, want an error")
	}
}

func TestValueAsFloat(t *testing.T) {
	f := func(v Value, want float64, wantOK bool) {
		t.Helper()
		if got, ok := v.AsFloat(); got != want || ok != wantOK {
			t.Errorf("%+v.AsFloat() = %v, %v; want %v, %v", v, got, ok, want, wantOK)
		}
	}
	f(Value{Kind: KindFloat, F: 1.5}, 1.5, true)
	f(Value{Kind: KindInt, I: -3}, -3, true)
	f(Value{Kind: KindUint, U: 7}, 7, true)
	f(Value{Kind: KindBool, B: true}, 0, false)
	f(Value{Kind: KindString, S: "1"}, 0, false)
}
