package metric

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzPrecisions = []string{"", "ns", "us", "ms", "s"}

func FuzzParseLineProtocol(f *testing.F) {
	f.Add(agentBatchLP, uint8(4))
	f.Add([]byte("cpu v=1"), uint8(0))
	f.Add([]byte(`my\ cpu\,x=1,a\ b\,c\=d=e\ f\,g\=h"i x\ y\,z\=w"="q\\\"r",i=1i,b=t`), uint8(0))
	f.Add([]byte("# c\n\ncpu,agent=x,host=a\\ b v=1,s=\"a\\\\\" 1795629600000\r\n"), uint8(3))
	f.Add([]byte(`disk,path=C:\Windows\Temp free=1 1795629590`), uint8(4))
	f.Add([]byte(`cpu,k=a\\,b v=1`), uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, p uint8) {
		precision := fuzzPrecisions[int(p)%len(fuzzPrecisions)]
		points, err := ParseLineProtocol(body, precision, testNow, DefaultLimits())
		if err != nil {
			var pe *PointError
			if points != nil || (errors.As(err, &pe) && (pe.Line < 1 || pe.Index < 0)) {
				t.Fatalf("ParseLineProtocol(%q) = %d points, %#v", body, len(points), err)
			}
			checkRefused(t, body, err)
			return
		}
		checkAccepted(t, body, points)
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add(agentBatchJSON)
	f.Add([]byte(`{"points":[{"measurement":"cpu","fields":{"v":1}}]}`))
	f.Add([]byte(`{"points":[{"measurement":"my meas,ure","tags":{"a b,c=d\"e\\f":"g h,i=j\"k\\l","agent":"x"},"fields":{"s":"\"\\","b":true,"n":-1.5e-3},"time":1795629600000000000}]}`))
	f.Add([]byte(`{"points":[{"measurement":"π","tags":{"k":"\u00e9"},"fields":{"s":"a\u0000b"},"time":"2026-11-25T18:00:00+01:00"}]}`))
	f.Add([]byte(`{"points":[{"measurement":"cpu","fields":{"v":1,"v":2}}]}`))
	f.Add([]byte(`{"points":[{"measurement":"#cpu","fields":{"v":1}}]}`))
	f.Add([]byte(`{"points":[{"measurement":"cpu","tags":{"k":"a\\,b","l":"c\\"},"fields":{"v":1}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		points, err := ParseJSON(body, testNow, DefaultLimits())
		if err != nil {
			var pe *PointError
			if points != nil || (errors.As(err, &pe) && (pe.Line != 0 || pe.Index < 0)) {
				t.Fatalf("ParseJSON(%q) = %d points, %#v", body, len(points), err)
			}
			checkRefused(t, body, err)
			return
		}
		checkAccepted(t, body, points)
	})
}

// checkRefused asserts that a refused batch says why: a point error names a reason, and every
// error message is valid UTF-8 text a client can show (no raw control bytes copied from the body).
func checkRefused(t *testing.T, body []byte, err error) {
	t.Helper()
	var pe *PointError
	if errors.As(err, &pe) && strings.TrimSpace(pe.Reason) == "" {
		t.Fatalf("parse(%q) refused with a point error without a reason: %#v", body, pe)
	}
	msg := err.Error()
	if strings.TrimSpace(msg) == "" || !utf8.ValidString(msg) {
		t.Fatalf("parse(%q) refused with message %q: want a non-empty UTF-8 reason", body, msg)
	}
	for _, r := range msg {
		if r < 0x20 && r != '\t' {
			t.Fatalf("parse(%q) refused with message %q holding control character %U", body, msg, r)
		}
	}
}

// checkAccepted asserts what must hold of any accepted batch: sorted and unique keys, and an
// encoding that decodes, and parses again, to the same points with the agent tag set.
func checkAccepted(t *testing.T, body []byte, points []Point) {
	t.Helper()
	if len(points) == 0 {
		t.Fatalf("parse(%q) accepted an empty batch", body)
	}
	for _, p := range points {
		if !slices.IsSortedFunc(p.Tags, func(a, b Tag) int { return strings.Compare(a.Key, b.Key) }) ||
			!slices.IsSortedFunc(p.Fields, func(a, b Field) int { return strings.Compare(a.Key, b.Key) }) || len(p.Fields) == 0 {
			t.Fatalf("parse(%q) returned a point with unsorted tags or fields, or none: %+v", body, p)
		}
	}
	want := withAgent(points, testAgent)
	payload := AppendLineProtocol(nil, points, testAgent)
	if n := strings.Count(string(payload), "\n"); n != len(points) {
		t.Fatalf("parse(%q): AppendLineProtocol wrote %d lines for %d points: %q", body, n, len(points), payload)
	}
	got, err := DecodeLineProtocol(payload)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parse(%q): DecodeLineProtocol(%q) =\n%s, %v; want\n%s", body, payload, dump(got), err, dump(want))
	}
	lim := DefaultLimits()
	lim.MaxTags++ // room for the agent tag
	again, err := ParseLineProtocol(payload, "ns", testNow, lim)
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("parse(%q): ParseLineProtocol(%q) =\n%s, %v; want\n%s", body, payload, dump(again), err, dump(want))
	}
}
