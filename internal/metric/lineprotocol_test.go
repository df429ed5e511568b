package metric

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseLineProtocolRejects(t *testing.T) {
	f := func(body, precision, want string) {
		t.Helper()
		points, err := ParseLineProtocol([]byte(body), precision, testNow, DefaultLimits())
		if err == nil {
			t.Errorf("ParseLineProtocol(%.200q, %q) = %d points, nil error; want error containing %q", body, precision, len(points), want)
			return
		}
		if points != nil {
			t.Errorf("ParseLineProtocol(%.200q, %q) returned %d points with error %v", body, precision, len(points), err)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseLineProtocol(%.200q, %q) error = %q, want it to contain %q", body, precision, err, want)
		}
	}
	long := strings.Repeat
	// The body as a whole and the precision.
	f("cpu v=1", "x", `unknown precision "x": use ns, us, ms or s`)
	f("cpu v=1", "n", `unknown precision "n"`)
	f("cpu v=1", "u", `unknown precision "u"`)
	f("cpu v=1", "h", `unknown precision "h"`)
	f("", "", "no points in the request: the body has no line-protocol entry")
	f("\n  \n# only a comment\r\n\n", "", "no points in the request: the body has no line-protocol entry")
	// Syntax, with the line of the first bad entry.
	// A line without a field set says so (issue 7), whatever the decoder says about it.
	f("cpu", "", "line 1: column 4: the field set is missing")
	f("cpu\n", "", "line 1: column 4: the field set is missing")
	f("cpu\r\n", "", "line 1: column 4: the field set is missing")
	f("cpu,host=a", "", "line 1: column 11: the field set is missing")
	f("name,v=1", "", "line 1: column 9: the field set is missing")
	f("cpu ", "", "line 1: column 5: the field set is missing")
	f("cpu v=1\ncpu,host=a\n", "", "line 2: column 11: the field set is missing")
	f("cpu,host= v=1", "", `line 1: column 10: expected tag value after tag key "host", but none found`)
	f("cpu,=a v=1", "", "line 1: column 5: expected tag key or field but found '=' instead")
	f("cpu v=", "", "line 1: column 7: expected field value, found end of input")
	f("cpu v=\"abc", "", "line 1: column 7: expected closing quote for string field value, found end of input")
	f("cpu v=1,w", "", `line 1: column 10: want '=' after field key "w", found end of input`)
	f("cpu v=xyz", "", `line 1: column 7: field value "xyz" has no line-protocol type`)
	// NaN and Inf say that InfluxDB cannot store them (issue 7).
	f("cpu v=NaN", "", `line 1: column 7: field value "NaN": InfluxDB cannot store NaN or Inf`)
	f("cpu v=nan,w=1", "", `line 1: column 7: field value "nan": InfluxDB cannot store NaN or Inf`)
	f("cpu v=+Inf 1", "", `line 1: column 7: field value "+Inf": InfluxDB cannot store NaN or Inf`)
	f("cpu v=inf", "", `line 1: column 7: field value "inf": InfluxDB cannot store NaN or Inf`)
	f("cpu w=1,v=-Inf", "", `line 1: column 11: field value "-Inf": InfluxDB cannot store NaN or Inf`)
	f("alerts,rule_id=x value=1", "", `line 1: measurement "alerts" is reserved`)
	// Fields named like the tag every point carries.
	f("cpu agent=1", "", `line 1: field key "agent" is reserved: every point carries the tag "agent"`)
	f("cpu v=1,agent=\"b\"", "", `line 1: field key "agent" is reserved`)
	f("cpu v=1e999", "", `line 1: column 7: cannot parse value for field key "v": line-protocol value out of range`)
	f("cpu v=9223372036854775808i", "", `cannot parse value for field key "v": line-protocol value out of range`)
	f("cpu v=-1u", "", `cannot parse value for field key "v": invalid unsigned integer value syntax`)
	f("cpu v=1u", "", `line 1: field "v": unsigned integers (suffix u) are not accepted, as InfluxDB 1.x cannot store them`)
	f("cpu v=tru", "", `cannot parse value for field key "v": invalid bool value "tru"`)
	f("cpu v=1 12x", "", `line 1: column 9: invalid timestamp ("12x")`)
	f("cpu v=1 1795629600 extra", "s", `line 1: column 20: unexpected text after timestamp ("extra")`)
	f("cpu\xff v=1", "", "line 1: column 1: invalid utf-8 sequence in token")
	f("cpu,host=a\xff v=1", "", "line 1: column 10: invalid utf-8 sequence in token")
	f("cpu s=\"a\xffb\"", "", "invalid utf-8 sequence in token")
	f("cpu,host=a\tb v=1", "", "line 1: column 11: expected tag key or field but found '\\t' instead")
	f("cpu v=1\n\n# comment\n  \ncpu,x v=2\n", "", `line 5: column 5: expected '=' after tag key "x"`)
	f("cpu v=1\r\ncpu v=2\r\n\r\ncpu v=\r\n", "", "line 4: ")
	// Timestamps.
	f("cpu v=1 1-2", "", `line 1: invalid timestamp "1-2"`)
	f("cpu v=1 99999999999999999999", "", "line 1: time 99999999999999999999 is outside what InfluxDB can store (1677-09-21 to 2262-04-11)")
	f("cpu v=1 9223372036854775807", "s", "line 1: time 9223372036854775807 is outside what InfluxDB can store")
	f("cpu v=1 -9223372036854775807", "ms", "line 1: time -9223372036854775807 is outside what InfluxDB can store")
	f("cpu v=1 1795024799", "s", "line 1: time 2026-11-18T17:59:59Z is more than 168h0m0s in the past")
	f("cpu v=1 1795630200001", "ms", "line 1: time 2026-11-25T18:10:00.001Z is more than 10m0s in the future")
	f("cpu v=1 1795630200000001", "us", "line 1: time 2026-11-25T18:10:00.000001Z is more than 10m0s in the future")
	f("cpu v=1 1795629600", "", "line 1: time 1970-01-01T00:00:01.7956296Z is more than 168h0m0s in the past")
	// The shared rules.
	f("cpu,a=1,a=2 v=1", "", `line 1: duplicate tag key "a"`)
	f("cpu v=1,w=2,v=3", "", `line 1: duplicate field key "v"`)
	f("cpu v=1,v=1i", "", `line 1: duplicate field key "v"`)
	f("_cpu v=1", "", `line 1: measurement "_cpu" is reserved: names starting with "_" belong to InfluxDB`)
	f("cpu,_t=a v=1", "", `line 1: tag key "_t" is reserved`)
	f("cpu,time=a v=1", "", `line 1: tag key "time" is reserved`)
	f("cpu _f=1", "", `line 1: field key "_f" is reserved`)
	f("cpu time=1", "", `line 1: field key "time" is reserved`)
	f(`cpu s="a\nb"`, "", `line 1: field "s": string contains control character '\n'`)
	f("cpu s=\"a\nb\"", "", `line 1: field "s": string contains control character '\n'`)
	f(`cpu s="a\rb"`, "", `line 1: field "s": string contains control character '\r'`)
	f(`cpu s="a\tb"`, "", `line 1: field "s": string contains control character '\t'`)
	f("cpu v=1\ncpu s=\"x\ny\"\ncpu v=2", "", `line 2: field "s": string contains control character '\n'`)
	// A backslash cannot end a name or tag value written in line protocol: it escapes the separator.
	// It can be before one, and JSON can end names with it (see TestParseJSONRejects).
	f(`cpu,k=a\\,b v=1`, "", `line 1: tag value for "k" "a\\,b" has a backslash before ','`)
	f(`cpu,k\\==a v=1`, "", `line 1: tag key "k\\=" has a backslash before '='`)
	f(`cpu a\\ b=1`, "", `line 1: field key "a\\ b" has a backslash before ' '`)
	f(`c\"pu v=1`, "", `line 1: measurement "c\\\"pu" has a backslash before '"'`)
	f(long("m", 257)+" v=1", "", `line 1: measurement "mmmm`)
	f(long("m", 257)+" v=1", "", `"… exceeds 256 bytes`)
	f("cpu,"+long("k", 257)+"=a v=1", "", `line 1: tag key "kkkk`)
	f("cpu "+long("f", 257)+"=1", "", `line 1: field key "ffff`)
	f("cpu,host="+long("h", 1025)+" v=1", "", `line 1: tag value for "host" exceeds 1024 bytes`)
	f("cpu s=\""+long("s", 65537)+"\"", "", `line 1: field "s": string exceeds 65536 bytes`)
	f("cpu,"+lpMembers(65, "t%02d=v")+" v=1", "", "line 1: has 65 tags, more than the limit of 64")
	f("cpu "+lpMembers(257, "f%03d=1"), "", "line 1: has 257 fields, more than the limit of 256")
	f("cpu,"+lpMembers(60, "t%02d"+long("k", 200)+"="+long("v", 1000))+" v=1", "", "line 1: series key too long")
	f("# header\ncpu v=1 1795629600000000000\n\n# more\ncpu,host=a v=1 1795629600000000000\n"+"cpu,host=b v=1,v=2\n", "", `line 6: duplicate field key "v"`)
}

// lpMembers returns n comma-separated members made from format and their index.
func lpMembers(n int, format string) string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf(format, i)
	}
	return strings.Join(members, ",")
}

func TestParseLineProtocolAccepts(t *testing.T) {
	f := func(body, precision, want string) {
		t.Helper()
		points, err := ParseLineProtocol([]byte(body), precision, testNow, DefaultLimits())
		if err != nil {
			t.Errorf("ParseLineProtocol(%q, %q) error = %v, want nil", body, precision, err)
			return
		}
		if got := string(AppendLineProtocol(nil, points, "A")); got != want {
			t.Errorf("ParseLineProtocol(%q, %q) encodes to\n%q, want\n%q", body, precision, got, want)
		}
	}
	// Precision, and a missing timestamp stamped with now to the nanosecond.
	f("cpu v=1 1795629590", "s", "cpu,agent=A v=1 1795629590000000000\n")
	f("cpu v=1 1795629590123", "ms", "cpu,agent=A v=1 1795629590123000000\n")
	f("cpu v=1 1795629590123456", "us", "cpu,agent=A v=1 1795629590123456000\n")
	f("cpu v=1 1795629590123456789", "ns", "cpu,agent=A v=1 1795629590123456789\n")
	f("cpu v=1 1795629590123456789", "", "cpu,agent=A v=1 1795629590123456789\n")
	f("cpu v=1", "s", "cpu,agent=A v=1 1795629600000000000\n")
	// Blank lines, comments, CRLF, trailing spaces, no final newline.
	f("\n# comment\n  \ncpu v=1 1795629590  \r\n\r\n  # indented comment\nmem v=2 1795629590", "s",
		"cpu,agent=A v=1 1795629590000000000\nmem,agent=A v=2 1795629590000000000\n")
	// Field types are kept.
	f(`m f=1.5,i=-3i,t=t,T=TRUE,F=false,s="x \"y\" \\z",e="" 1795629590`, "s",
		`m,agent=A F=false,T=true,e="",f=1.5,i=-3i,s="x \"y\" \\z",t=true 1795629590000000000`+"\n")
	f("m a=9223372036854775807i,c=-9223372036854775808i,d=-0,e=1e-300 1795629590", "s",
		"m,agent=A a=9223372036854775807i,c=-9223372036854775808i,d=-0,e=1e-300 1795629590000000000\n")
	// Tags and fields end sorted; a client "agent" tag is replaced in its place.
	f("m,z=1,agents=4,agent=evil,ag=3,Z=0 b=1,a=2 1795629590", "s", "m,Z=0,ag=3,agent=A,agents=4,z=1 a=2,b=1 1795629590000000000\n")
	f("m,agent=evil v=1 1795629590", "s", "m,agent=A v=1 1795629590000000000\n")
	// Escapes come back canonical; a backslash before an ordinary character is kept.
	f(`my\ cpu\,x=1,a\ b\,c\=d=e\ f\,g\=h"i x\ y\,z\=w"="q\\\"r" 1795629590`, "s",
		`my\ cpu\,x=1,a\ b\,c\=d=e\ f\,g\=h"i,agent=A x\ y\,z\=w"="q\\\"r" 1795629590000000000`+"\n")
	f(`disk,path=C:\Windows\Temp free=1 1795629590`, "s", `disk,agent=A,path=C:\Windows\Temp free=1 1795629590000000000`+"\n")
	f(`m\# v=1 1795629590`, "s", `m\#,agent=A v=1 1795629590000000000`+"\n")
	// The window's edges are inside.
	f("cpu v=1 1795024800", "s", "cpu,agent=A v=1 1795024800000000000\n")
	f("cpu v=1 1795630200", "s", "cpu,agent=A v=1 1795630200000000000\n")
}

func TestParseLineProtocolPointError(t *testing.T) {
	body := "# header\n\ncpu v=1\ncpu v=2\n\ncpu,_x=1 v=3\n"
	_, err := ParseLineProtocol([]byte(body), "", testNow, DefaultLimits())
	var pe *PointError
	if !errors.As(err, &pe) {
		t.Fatalf("ParseLineProtocol(%q) error = %#v, want a *PointError", body, err)
	}
	if pe.Index != 2 || pe.Line != 6 {
		t.Errorf("ParseLineProtocol(%q) error = %+v, want Index 2 and Line 6", body, *pe)
	}
	body = "cpu v=1\n\ncpu v=2 x\n"
	_, err = ParseLineProtocol([]byte(body), "", testNow, DefaultLimits())
	if !errors.As(err, &pe) || pe.Index != 1 || pe.Line != 3 {
		t.Errorf("ParseLineProtocol(%q) error = %#v, want a *PointError with Index 1 and Line 3", body, err)
	}
}

func TestParseLineProtocolMaxPoints(t *testing.T) {
	lim := DefaultLimits()
	body := func(n int) []byte { return []byte(strings.Repeat("cpu v=1\n", n)) }
	points, err := ParseLineProtocol(body(lim.MaxPoints), "", testNow, lim)
	if err != nil || len(points) != lim.MaxPoints {
		t.Fatalf("ParseLineProtocol(%d points) = %d points, %v; want all of them", lim.MaxPoints, len(points), err)
	}
	points, err = ParseLineProtocol(body(lim.MaxPoints+1), "", testNow, lim)
	if !errors.Is(err, ErrTooManyPoints) || points != nil {
		t.Fatalf("ParseLineProtocol(%d points) = %d points, %v; want ErrTooManyPoints", lim.MaxPoints+1, len(points), err)
	}
	if _, err := ParseLineProtocol(nil, "", testNow, lim); !errors.Is(err, ErrEmptyBatch) {
		t.Errorf("ParseLineProtocol(nil) error = %v, want ErrEmptyBatch", err)
	}
}

func TestDecodeLineProtocol(t *testing.T) {
	payload := "cpu,agent=A,host=h\\ 1 s=\"a\\\"b\",u=1u,v=1.5 1795629590000000000\nmem,agent=A i=-2i,ok=true 1795629590000000001\n"
	want := []Point{
		{Measurement: "cpu", Tags: []Tag{{"agent", "A"}, {"host", "h 1"}}, Fields: []Field{
			{"s", Value{Kind: KindString, S: `a"b`}}, {"u", Value{Kind: KindUint, U: 1}}, {"v", Value{Kind: KindFloat, F: 1.5}}}, Time: 1795629590000000000},
		{Measurement: "mem", Tags: []Tag{{"agent", "A"}}, Fields: []Field{
			{"i", Value{Kind: KindInt, I: -2}}, {"ok", Value{Kind: KindBool, B: true}}}, Time: 1795629590000000001},
	}
	got, err := DecodeLineProtocol([]byte(payload))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeLineProtocol(%q) = \n%s, %v; want\n%s", payload, dump(got), err, dump(want))
	}
	if v, ok := got[0].Tag("agent"); !ok || v != "A" {
		t.Errorf("Tag(agent) = %q, %v; want A, true", v, ok)
	}
	if _, ok := got[0].Tag("nope"); ok {
		t.Errorf("Tag(nope) found a tag, want none")
	}

	fail := func(payload, want string) {
		t.Helper()
		points, err := DecodeLineProtocol([]byte(payload))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeLineProtocol(%q) = %d points, %v; want error containing %q", payload, len(points), err, want)
		}
	}
	fail("cpu,agent=A v=1 1\ncpu,agent=A v=1\n", "decoding line protocol: line 2: no timestamp")
	fail("cpu,agent=A v=1 1\ncpu,agent=A v= 1\n", "decoding line protocol: line 2: column 15: field value is missing after '='")
	fail("cpu,agent=A v=1 99999999999999999999\n", "decoding line protocol: line 1: time 99999999999999999999 is outside")
}
