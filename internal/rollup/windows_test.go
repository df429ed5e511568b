package rollup

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// TestWindowsReadsMeasurementAndTime: the marker's scan finds the measurement and the 1m window
// of every point, whatever its tags and fields (escapes included), and refuses an entry it cannot
// read as a whole.
func TestWindowsReadsMeasurementAndTime(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	payload := []byte("cpu,agent=a,host=h\\ 1 a=1,b=\"x y\" " + ns(t0.Add(59*time.Second)) + "\n" +
		"my\\ disk,agent=a used=2i " + ns(t0.Add(61*time.Second)) + "\n" +
		"cpu,agent=a a=3 " + ns(t0.Add(-time.Nanosecond)) + "\n")
	got, err := windows(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	want := []Window{
		WindowAt(0, "cpu", t0),
		WindowAt(0, "my disk", t0.Add(time.Minute)),
		WindowAt(0, "cpu", t0.Add(-time.Minute)),
	}
	if len(got) != len(want) {
		t.Fatalf("windows = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("window %d = %v, want %v", i, got[i], want[i])
		}
	}
	for name, bad := range map[string]string{
		"no timestamp":  "cpu,agent=a a=1\n",
		"bad timestamp": "cpu,agent=a a=1 12x\n",
		"no fields":     "cpu,agent=a " + ns(t0) + "\n",
		"second bad":    "cpu,agent=a a=1 " + ns(t0) + "\ncpu,agent=a\n",
	} {
		if got, err := windows(nil, []byte(bad)); err == nil {
			t.Errorf("%s: windows = %v, want an error", name, got)
		}
	}
}

func ns(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// benchEntry is a typical agent request: six points of five fields, canonical line protocol.
var benchEntry = []byte(func() string {
	var b strings.Builder
	for _, m := range []string{"cpu", "disk", "load", "mem", "net", "procs"} {
		b.WriteString(m + ",agent=5f0f3b2c-9d8a-4d1e-8f6b-2a7c1e9d4b30,host=h1 a=41.5,b=42.5,c=43.5,d=44.5,e=45.5 1764093600000000000\n")
	}
	return b.String()
}())

// BenchmarkWindows is the marker's work per entry: the windows of its six points.
func BenchmarkWindows(b *testing.B) {
	var dst []Window
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = windows(dst[:0], benchEntry); err != nil || len(dst) != 6 {
			b.Fatal(dst, err)
		}
	}
}

// BenchmarkDecodeEntry is what the marker did per entry before windows: decode every point.
func BenchmarkDecodeEntry(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := metric.DecodeLineProtocol(benchEntry); err != nil {
			b.Fatal(err)
		}
	}
}
