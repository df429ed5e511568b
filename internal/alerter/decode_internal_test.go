package alerter

import (
	"reflect"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

func thresholdOn(id, m string) alert.Rule {
	return alert.Rule{ID: id, Kind: alert.KindThreshold, Metric: m, Enabled: true}
}

// TestPointReaderKeepsWhatRulesWatch: the reader returns what metric.DecodeLineProtocol returns,
// less the points of measurements no rule watches and the fields no rule names or that are
// strings.
func TestPointReaderKeepsWhatRulesWatch(t *testing.T) {
	idx := alert.NewIndex([]alert.Rule{
		thresholdOn("1", "cpu.usage"), thresholdOn("2", "cpu.up"), thresholdOn("3", "my disk.used"),
		thresholdOn("4", "cpu.state"), {ID: "5", Kind: alert.KindThreshold, Metric: "net.rx"}, // disabled
	})
	payload := []byte(strings.Join([]string{
		`cpu,agent=a,core=0 idle=90,state="busy",up=true,usage=10 100`,
		`mem,agent=a used=1i 100`,
		`my\ disk,agent=a,path=/x\ y free=2,used=3i 101`,
		`net,agent=a rx=5 102`,
		`cpu,agent=a,core=1 idle=1 103`, // watched measurement, no watched field
		`cpu,agent=a,core=1 usage=-2.5 104`,
	}, "\n") + "\n")
	all, err := metric.DecodeLineProtocol(payload)
	if err != nil {
		t.Fatal(err)
	}
	var want []metric.Point
	for _, p := range all {
		if !idx.Watches(p.Measurement) {
			continue
		}
		var fields []metric.Field
		for _, f := range p.Fields {
			if f.Value.Kind != metric.KindString && len(idx.For(p.Measurement, f.Key)) > 0 {
				fields = append(fields, f)
			}
		}
		if len(fields) > 0 {
			p.Fields = fields
			want = append(want, p)
		}
	}
	got, err := newPointReader(idx).read(payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("read\n%+v\nwant (3 points)\n%+v", got, want)
	}
}

// TestPointReaderRefusesUnreadableLines: a line that is not line protocol, or has no timestamp,
// makes the entry unreadable even when no rule watches its measurement.
func TestPointReaderRefusesUnreadableLines(t *testing.T) {
	idx := alert.NewIndex([]alert.Rule{thresholdOn("1", "cpu.usage")})
	for name, payload := range map[string]string{
		"watched, no timestamp":      "cpu,agent=a usage=1\n",
		"unwatched, no timestamp":    "cpu,agent=a usage=1 1\nmem,agent=a used=1\n",
		"unwatched, no fields":       "mem,agent=a 1\n",
		"unwatched, bad tag":         "mem,agent used=1 1\n",
		"watched, bad value":         "cpu,agent=a usage=1x 1\n",
		"watched, bad timestamp":     "cpu,agent=a usage=1 x\n",
		"unwatched, bad timestamp":   "mem,agent=a used=1 1.5\n",
		"watched, empty field value": "cpu usage=\n",
	} {
		if got, err := newPointReader(idx).read([]byte(payload)); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("%s: read = %v, %v; want an error naming the line", name, got, err)
		}
	}
}

// BenchmarkReadPoints reads a typical entry (six measurements of five fields) with one rule on
// one of them, against decoding every point.
func BenchmarkReadPoints(b *testing.B) {
	var sb strings.Builder
	for _, m := range []string{"cpu", "disk", "load", "mem", "net", "procs"} {
		sb.WriteString(m + ",agent=5f0f3b2c-9d8a-4d1e-8f6b-2a7c1e9d4b30,host=h1 a=41.5,b=42.5,c=43.5,d=44.5,e=45.5 1764093600000000000\n")
	}
	payload := []byte(sb.String())
	idx := alert.NewIndex([]alert.Rule{thresholdOn("1", "cpu.a")})
	b.Run("reader", func(b *testing.B) {
		r := newPointReader(idx)
		b.ReportAllocs()
		for b.Loop() {
			if p, err := r.read(payload); err != nil || len(p) != 1 {
				b.Fatal(p, err)
			}
			r.tags, r.fields = r.tags[:0], r.fields[:0] // a batch's worth, not a growing arena
		}
	})
	b.Run("decode-all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := metric.DecodeLineProtocol(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}
