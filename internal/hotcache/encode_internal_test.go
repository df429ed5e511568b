package hotcache

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// TestRecentEntryCopiesLatest: the recent entry Encode builds, partly by copying the samples it
// already encoded for the latest entries, is byte for byte the one appendPoint gives point by
// point, with all samples kept and with the oldest cut by MaxSamples; points older than the
// window are in neither.
func TestRecentEntryCopiesLatest(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var pts []metric.Point
	for i := range 8 {
		at := now.Add(time.Duration(i-7) * time.Minute) // the first two are older than the window
		pts = append(pts, metric.Point{Measurement: "cpu", Time: at.UnixNano(),
			Tags: []metric.Tag{{Key: "host", Value: "h1"}},
			Fields: []metric.Field{
				{Key: "idle", Value: metric.Value{Kind: metric.KindFloat, F: float64(i) + 0.25}},
				{Key: "n", Value: metric.Value{Kind: metric.KindInt, I: int64(i)}},
				{Key: "s", Value: metric.Value{Kind: metric.KindString, S: "a\"b"}},
			}})
	}
	for _, maxSamples := range []int{100, 10, 3} {
		c, err := New(nil, "p:", 4, Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 100, MaxSamples: maxSamples})
		if err != nil {
			t.Fatal(err)
		}
		b := c.Encode(pts, now)
		// The reference: every point in the window from its first kept field, newest kept.
		kept := min(maxSamples, 6*3)
		drop := 6*3 - kept
		want := binary.AppendVarint(nil, now.UnixNano())
		for i := 2; i < len(pts); i++ {
			from := min(drop, 3)
			drop -= from
			if from == 3 {
				continue
			}
			want = appendPoint(want, &pts[i], from, now.UnixNano())
		}
		if !bytes.Equal(b.recent, want) {
			t.Errorf("MaxSamples %d: recent entry\n%q\nwant\n%q", maxSamples, b.recent, want)
		}
		if b.values != kept {
			t.Errorf("MaxSamples %d: %d samples in the recent entry, want %d", maxSamples, b.values, kept)
		}
		b.Release()
	}
}

// TestLongSamplesRoundTrip: a value and tags longer than 127 bytes (a length prefix of more than
// one byte) read back as written.
func TestLongSamplesRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	long := strings.Repeat("x", 300)
	pts := []metric.Point{{Measurement: "log", Time: now.UnixNano(),
		Tags: []metric.Tag{{Key: "path", Value: strings.Repeat("p", 200)}},
		Fields: []metric.Field{
			{Key: "msg", Value: metric.Value{Kind: metric.KindString, S: long}},
			{Key: "n", Value: metric.Value{Kind: metric.KindInt, I: 7}},
		}}}
	c, err := New(nil, "p:", 4, Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 100, MaxSamples: 100})
	if err != nil {
		t.Fatal(err)
	}
	b := c.Encode(pts, now)
	defer b.Release()
	for field, want := range map[string]string{"msg": `"` + long + `"`, "n": "7"} {
		got, err := scanRecent(nil, string(b.recent), "log."+field, 0)
		if err != nil || len(got) != 1 || got[0].value != want || got[0].tags != `{"path":"`+strings.Repeat("p", 200)+`"}` {
			t.Errorf("log.%s read back as %+v, %v; want one sample %s", field, got, err, want)
		}
	}
}
