package metric

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// jp wraps one JSON point object in a body.
func jp(point string) string { return `{"points":[` + point + `]}` }

func TestParseJSONRejects(t *testing.T) {
	f := func(body, want string) {
		t.Helper()
		points, err := ParseJSON([]byte(body), testNow, DefaultLimits())
		if err == nil {
			t.Errorf("ParseJSON(%.200q) = %d points, nil error; want error containing %q", body, len(points), want)
			return
		}
		if points != nil {
			t.Errorf("ParseJSON(%.200q) returned %d points with error %v", body, len(points), err)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseJSON(%.200q) error = %q, want it to contain %q", body, err, want)
		}
	}
	long := strings.Repeat
	// The body as a whole.
	f(``, "no points in the request: the body is empty")
	f(`  `, "no points in the request: the body is empty")
	f(`{}`, `no points in the request: "points" is missing or empty`)
	f(`{"points":[]}`, `no points in the request: "points" is missing or empty`)
	f(`[]`, `body must be a JSON object {"points":[...]}, got an array`)
	f(`null`, `body must be a JSON object {"points":[...]}, got null`)
	f(`cpu v=1`, "invalid JSON in the body")
	f(`{"points":[{"measurement":"cpu","fields":{"v":1}}]} x`, "trailing data after the JSON object")
	f(`{"points":[{"measurement":"cpu","fields":{"v":1}}]}{}`, "trailing data after the JSON object: an object")
	f(`{"points":{}}`, `"points" must be an array, got an object`)
	f(`{"points":null}`, `"points" must be an array, got null`)
	f(`{"pointz":[]}`, `unknown key "pointz" in the body`)
	f(`{"Points":[]}`, `unknown key "Points" in the body`)
	f(`{"points":[],"points":[]}`, `duplicate key "points" in the body`)
	f(`{"points":[{"measurement":"cpu","fields":{"v":1}}`, "the JSON ends too early")
	f("{\"points\xff\":[]}", "invalid UTF-8")
	// Types and keys inside a point.
	f(`{"points":[1]}`, "point 0: must be an object, got a number")
	// NaN and Infinity are not JSON; the message says InfluxDB could not store them anyway.
	f(`{"points":[{"measurement":"cpu","fields":{"v":NaN}}]}`, "point 0: invalid JSON in /points/0/fields/v at byte 46: invalid character 'N' at start of value (JSON has no NaN or Infinity, and InfluxDB cannot store them")
	f(`{"points":[{"measurement":"cpu","fields":{"v":-Infinity}}]}`, "(JSON has no NaN or Infinity, and InfluxDB cannot store them")
	f(`{"points":[{"measurement":"cpu","fields":{"v":1e400}}]}`, `point 0: field "v": number 1e400 is out of float64 range`)
	f(`{"points":[{"measurement":"alerts","fields":{"value":1}}]}`, `point 0: measurement "alerts" is reserved: it holds the alert history`)
	// A field named like the tag every point carries would shadow it in InfluxQL.
	f(`{"points":[{"measurement":"cpu","fields":{"agent":"b","v":1}}]}`, `point 0: field key "agent" is reserved: every point carries the tag "agent"`)
	f(`{"points":[{"measurement":"cpu","fields":{"v":1}},"x"]}`, "point 1: must be an object, got a string")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"host":"a"}`), `point 0: unknown key "host"`)
	f(jp(`{"Measurement":"cpu","fields":{"v":1}}`), `point 0: unknown key "Measurement"`)
	f(jp(`{"measurement":"cpu","measurement":"mem","fields":{"v":1}}`), `point 0: duplicate key "measurement" in /points/0`)
	f(jp(`{"measurement":"cpu","fields":{"v":1,"v":2}}`), `point 0: duplicate key "v" in /points/0/fields`)
	f(jp(`{"measurement":"cpu","fields":{"v":1,"\u0076":2}}`), `point 0: duplicate key "v" in /points/0/fields`)
	f(jp(`{"measurement":"cpu","tags":{"k":"a","k":"b"},"fields":{"v":1}}`), `point 0: duplicate key "k" in /points/0/tags`)
	f(jp("{\"measurement\":\"cpu\",\"tags\":{\"k\":\"a\xffb\"},\"fields\":{\"v\":1}}"), "point 0: invalid JSON in /points/0/tags/k at byte 46: invalid UTF-8")
	f(jp(`{"measurement":"cpu","tags":{"k":"\ud800"},"fields":{"v":1}}`), "point 0: invalid JSON in /points/0/tags/k")
	f(jp(`{"measurement":1,"fields":{"v":1}}`), "point 0: measurement must be a string, got a number")
	f(jp(`{"fields":{"v":1}}`), "point 0: measurement is missing or empty")
	f(jp(`{"measurement":"","fields":{"v":1}}`), "point 0: measurement is missing or empty")
	f(jp(`{"measurement":"cpu","tags":[],"fields":{"v":1}}`), "point 0: tags must be an object of strings, got an array")
	f(jp(`{"measurement":"cpu","tags":null,"fields":{"v":1}}`), "point 0: tags must be an object of strings, got null")
	f(jp(`{"measurement":"cpu","tags":{"core":0},"fields":{"v":1}}`), `point 0: tag "core": value must be a string, got a number`)
	f(jp(`{"measurement":"cpu","tags":{"up":true},"fields":{"v":1}}`), `point 0: tag "up": value must be a string, got a boolean`)
	f(jp(`{"measurement":"cpu"}`), "point 0: has no fields: a point needs at least one")
	f(jp(`{"measurement":"cpu","fields":{}}`), "point 0: has no fields: a point needs at least one")
	f(jp(`{"measurement":"cpu","fields":[1]}`), "point 0: fields must be an object, got an array")
	f(jp(`{"measurement":"cpu","fields":{"v":null}}`), `point 0: field "v": null is not allowed, use a number, a boolean or a string`)
	f(jp(`{"measurement":"cpu","fields":{"v":[1]}}`), `point 0: field "v": an array is not allowed`)
	f(jp(`{"measurement":"cpu","fields":{"v":{"x":1}}}`), `point 0: field "v": an object is not allowed`)
	f(jp(`{"measurement":"cpu","fields":{"v":1e999}}`), `point 0: field "v": number 1e999 is out of float64 range`)
	f(jp(`{"measurement":"cpu","fields":{"v":-1e999}}`), `point 0: field "v": number -1e999 is out of float64 range`)
	f(jp(`{"measurement":"cpu","fields":{"v":NaN}}`), "point 0: invalid JSON in /points/0/fields/v")
	// Time.
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"yesterday"}`), `point 0: time "yesterday" is not an RFC 3339 time`)
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"2026-11-25 18:00:00"}`), `point 0: time "2026-11-25 18:00:00" is not an RFC 3339 time`)
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":1.7956296e18}`), "point 0: time 1.7956296e18 must be an integer of Unix nanoseconds")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":99999999999999999999}`), "point 0: time 99999999999999999999 ns is outside what InfluxDB can store (1677-09-21 to 2262-04-11)")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"3000-01-01T00:00:00Z"}`), `point 0: time 3000-01-01T00:00:00Z is outside what InfluxDB can store`)
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":true}`), "point 0: time must be an RFC 3339 string or an integer of Unix nanoseconds, got a boolean")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":null}`), "point 0: time must be an RFC 3339 string or an integer of Unix nanoseconds, got null")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"2026-11-18T17:59:59Z"}`), "point 0: time 2026-11-18T17:59:59Z is more than 168h0m0s in the past")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"2026-11-25T18:10:00.000000001Z"}`), "point 0: time 2026-11-25T18:10:00.000000001Z is more than 10m0s in the future")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":0}`), "point 0: time 1970-01-01T00:00:00Z is more than 168h0m0s in the past")
	// Names and values.
	f(jp(`{"measurement":"cpu","fields":{"":1}}`), "point 0: field key is empty")
	f(jp(`{"measurement":"cpu","tags":{"":"a"},"fields":{"v":1}}`), "point 0: tag key is empty")
	f(jp(`{"measurement":"cpu","tags":{"host":""},"fields":{"v":1}}`), `point 0: tag value for "host" is empty`)
	f(jp(`{"measurement":"`+long("m", 257)+`","fields":{"v":1}}`), "exceeds 256 bytes")
	f(jp(`{"measurement":"cpu","tags":{"`+long("k", 257)+`":"a"},"fields":{"v":1}}`), `point 0: tag key "kkkk`)
	f(jp(`{"measurement":"cpu","tags":{"`+long("k", 257)+`":"a"},"fields":{"v":1}}`), `"… exceeds 256 bytes`)
	f(jp(`{"measurement":"cpu","fields":{"`+long("f", 257)+`":1}}`), `"… exceeds 256 bytes`)
	f(jp(`{"measurement":"cpu","tags":{"host":"`+long("h", 1025)+`"},"fields":{"v":1}}`), `point 0: tag value for "host" exceeds 1024 bytes`)
	f(jp(`{"measurement":"cpu","fields":{"s":"`+long("s", 65537)+`"}}`), `point 0: field "s": string exceeds 65536 bytes`)
	f(jp(`{"measurement":"cpu","tags":{`+jsonMembers(65, `"t%d":"v"`)+`},"fields":{"v":1}}`), "point 0: has 65 tags, more than the limit of 64")
	f(jp(`{"measurement":"cpu","fields":{`+jsonMembers(257, `"f%d":1`)+`}}`), "point 0: has 257 fields, more than the limit of 256")
	f(jp(`{"measurement":"cpu","tags":{`+jsonMembers(60, `"t%02d`+long("k", 200)+`":"`+long("v", 1000)+`"`)+`},"fields":{"v":1}}`), "point 0: series key too long")
	f(jp(`{"measurement":"_cpu","fields":{"v":1}}`), `point 0: measurement "_cpu" is reserved: names starting with "_" belong to InfluxDB`)
	f(jp(`{"measurement":"#cpu","fields":{"v":1}}`), `point 0: measurement "#cpu" starts with "#", which line protocol reads as a comment`)
	f(jp(`{"measurement":"cpu","tags":{"_t":"a"},"fields":{"v":1}}`), `point 0: tag key "_t" is reserved`)
	f(jp(`{"measurement":"cpu","tags":{"time":"a"},"fields":{"v":1}}`), `point 0: tag key "time" is reserved`)
	f(jp(`{"measurement":"cpu","fields":{"_f":1}}`), `point 0: field key "_f" is reserved`)
	f(jp(`{"measurement":"cpu","fields":{"time":1}}`), `point 0: field key "time" is reserved`)
	f(jp(`{"measurement":"cp\nu","fields":{"v":1}}`), `point 0: measurement "cp\nu" contains control character '\n'`)
	f(jp(`{"measurement":"cpu","tags":{"ho\rst":"a"},"fields":{"v":1}}`), `point 0: tag key "ho\rst" contains control character '\r'`)
	f(jp(`{"measurement":"cpu","tags":{"host":"a\nb"},"fields":{"v":1}}`), `point 0: tag value for "host" "a\nb" contains control character '\n'`)
	f(jp(`{"measurement":"cpu","tags":{"host":"a\u0000b"},"fields":{"v":1}}`), `point 0: tag value for "host" "a\x00b" contains control character '\x00'`)
	f(jp(`{"measurement":"cpu","fields":{"v\n":1}}`), `point 0: field key "v\n" contains control character '\n'`)
	f(jp(`{"measurement":"cpu","fields":{"s":"a\nb"}}`), `point 0: field "s": string contains control character '\n'`)
	f(jp(`{"measurement":"cpu","fields":{"s":"a\rb"}}`), `point 0: field "s": string contains control character '\r'`)
	f(jp(`{"measurement":"cpu","fields":{"s":"a\tb"}}`), `point 0: field "s": string contains control character '\t'`)
	f(jp(`{"measurement":"cpu","tags":{"path":"C:\\"},"fields":{"v":1}}`), `point 0: tag value for "path" "C:\\" ends with a backslash`)
	f(jp(`{"measurement":"cpu\\","fields":{"v":1}}`), `point 0: measurement "cpu\\" ends with a backslash`)
	f(jp(`{"measurement":"cpu","tags":{"k":"a\\,b"},"fields":{"v":1}}`), `point 0: tag value for "k" "a\\,b" has a backslash before ','`)
	f(jp(`{"measurement":"cpu","tags":{"k\\=":"a"},"fields":{"v":1}}`), `point 0: tag key "k\\=" has a backslash before '='`)
	f(jp(`{"measurement":"cpu","fields":{"a\\ b":1}}`), `point 0: field key "a\\ b" has a backslash before ' '`)
	f(jp(`{"measurement":"c\\\"pu","fields":{"v":1}}`), `point 0: measurement "c\\\"pu" has a backslash before '"'`)
	// The first bad point is the one named.
	f(`{"points":[{"measurement":"cpu","fields":{"v":1}},{"measurement":"cpu","fields":{"v":null}}]}`, `point 1: field "v": null`)
}

// jsonMembers returns n comma-separated object members made from format and their index.
func jsonMembers(n int, format string) string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf(format, i)
	}
	return strings.Join(members, ",")
}

func TestParseJSONAccepts(t *testing.T) {
	f := func(body, want string) {
		t.Helper()
		points, err := ParseJSON([]byte(body), testNow, DefaultLimits())
		if err != nil {
			t.Errorf("ParseJSON(%q) error = %v, want nil", body, err)
			return
		}
		if got := string(AppendLineProtocol(nil, points, "A")); got != want {
			t.Errorf("ParseJSON(%q) encodes to\n%q, want\n%q", body, got, want)
		}
	}
	f(jp(`{"measurement":"cpu","tags":{"core":"0"},"fields":{"usage_percent":12.5},"time":"2026-11-25T18:00:00Z"}`),
		"cpu,agent=A,core=0 usage_percent=12.5 1795629600000000000\n")
	// Time: missing means now; RFC 3339 with offset and fraction; integer nanoseconds; both window edges.
	f(jp(`{"measurement":"cpu","fields":{"v":1}}`), "cpu,agent=A v=1 1795629600000000000\n")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"2026-11-25T19:59:59.123456789+02:00"}`), "cpu,agent=A v=1 1795629599123456789\n")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":1795629599000000001}`), "cpu,agent=A v=1 1795629599000000001\n")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"2026-11-18T18:00:00Z"}`), "cpu,agent=A v=1 1795024800000000000\n")
	f(jp(`{"measurement":"cpu","fields":{"v":1},"time":"2026-11-25T18:10:00Z"}`), "cpu,agent=A v=1 1795630200000000000\n")
	// Every JSON number is a float; booleans and strings keep their type.
	f(jp(`{"measurement":"m","fields":{"i":3,"big":12345678901234567890,"neg":-0.5,"exp":1e3,"b":true,"c":false,"s":"hi \"there\" \\o/","e":""}}`),
		`m,agent=A b=true,big=1.2345678901234567e+19,c=false,e="",exp=1000,i=3,neg=-0.5,s="hi \"there\" \\o/" 1795629600000000000`+"\n")
	// Tags and fields end sorted; a client "agent" tag is replaced in its place.
	f(jp(`{"measurement":"m","tags":{"z":"1","agents":"4","agent":"evil","ag":"3","Z":"0"},"fields":{"b":1,"a":2}}`),
		"m,Z=0,ag=3,agent=A,agents=4,z=1 a=2,b=1 1795629600000000000\n")
	// Names may use any printable character; the encoder escapes what line protocol needs.
	f(jp(`{"measurement":"my cpu,x=1","tags":{"a b,c=d":"e f,g=h\"i"},"fields":{"x y,z=w\"":"q\\\"r"}}`),
		`my\ cpu\,x=1,a\ b\,c\=d=e\ f\,g\=h"i,agent=A x\ y\,z\=w"="q\\\"r" 1795629600000000000`+"\n")
	f(jp(`{"measurement":"π","tags":{"città":"Zürich"},"fields":{"温度":21.5,"s":"a\u0000b"}}`),
		"π,agent=A,città=Zürich s=\"a\x00b\",温度=21.5 1795629600000000000\n")
	f(jp(`{"measurement":"`+strings.Repeat("m", 256)+`","tags":{"host":"`+strings.Repeat("h", 1024)+`"},"fields":{"v":1}}`),
		strings.Repeat("m", 256)+",agent=A,host="+strings.Repeat("h", 1024)+" v=1 1795629600000000000\n")
	// Each point its own time: the parser reuses a repeated time's value, never another's.
	f(jp(`{"measurement":"a","fields":{"v":1},"time":"2026-11-25T18:00:00Z"},{"measurement":"b","fields":{"v":2},"time":"2026-11-25T18:00:00Z"},`+
		`{"measurement":"c","fields":{"v":3},"time":"2026-11-25T18:00:01Z"},{"measurement":"d","fields":{"v":4}},`+
		`{"measurement":"e","fields":{"v":5},"time":"2026-11-25T18:00:01Z"},{"measurement":"f","fields":{"v":6},"time":"2026-11-25T18:00:00Z"}`),
		"a,agent=A v=1 1795629600000000000\nb,agent=A v=2 1795629600000000000\nc,agent=A v=3 1795629601000000000\n"+
			"d,agent=A v=4 1795629600000000000\ne,agent=A v=5 1795629601000000000\nf,agent=A v=6 1795629600000000000\n")
	f("\n"+jp(`{"measurement":"a","fields":{"v":1}},{"measurement":"b","fields":{"v":2}}`)+"\n\t ",
		"a,agent=A v=1 1795629600000000000\nb,agent=A v=2 1795629600000000000\n")
}

func TestParseJSONPointError(t *testing.T) {
	body := `{"points":[{"measurement":"cpu","fields":{"v":1}},{"measurement":"cpu","fields":{"v":1},"time":"nope"}]}`
	_, err := ParseJSON([]byte(body), testNow, DefaultLimits())
	var pe *PointError
	if !errors.As(err, &pe) {
		t.Fatalf("ParseJSON(%q) error = %#v, want a *PointError", body, err)
	}
	if pe.Index != 1 || pe.Line != 0 {
		t.Errorf("ParseJSON(%q) error = %+v, want Index 1 and Line 0", body, *pe)
	}
}

func TestParseJSONMaxPoints(t *testing.T) {
	lim := DefaultLimits()
	body := func(n int) []byte {
		return []byte(`{"points":[` + jsonMembers(n, `{"measurement":"cpu","tags":{"n":"%d"},"fields":{"v":1}}`) + `]}`)
	}
	points, err := ParseJSON(body(lim.MaxPoints), testNow, lim)
	if err != nil || len(points) != lim.MaxPoints {
		t.Fatalf("ParseJSON(%d points) = %d points, %v; want all of them", lim.MaxPoints, len(points), err)
	}
	points, err = ParseJSON(body(lim.MaxPoints+1), testNow, lim)
	if !errors.Is(err, ErrTooManyPoints) || points != nil {
		t.Fatalf("ParseJSON(%d points) = %d points, %v; want ErrTooManyPoints", lim.MaxPoints+1, len(points), err)
	}
	if want := "too many points in the request: more than 5000"; err.Error() != want {
		t.Errorf("ParseJSON(%d points) error = %q, want %q", lim.MaxPoints+1, err, want)
	}
	if _, err := ParseJSON([]byte(`{}`), testNow, lim); !errors.Is(err, ErrEmptyBatch) {
		t.Errorf("ParseJSON({}) error = %v, want ErrEmptyBatch", err)
	}
}

func TestParseJSONSyntaxBetweenPoints(t *testing.T) {
	body := `{"points":[{"measurement":"cpu","fields":{"v":1}} {"measurement":"cpu","fields":{"v":1}}]}`
	_, err := ParseJSON([]byte(body), testNow, DefaultLimits())
	var pe *PointError
	if err == nil || errors.As(err, &pe) || !strings.Contains(err.Error(), "invalid JSON in /points") {
		t.Errorf("ParseJSON(%q) error = %#v, want a plain error about invalid JSON in /points", body, err)
	}
}
