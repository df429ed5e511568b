package alert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)

func sec(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

type sample struct {
	at float64 // seconds after t0
	v  float64
}

func TestWindowAggregate(t *testing.T) {
	tests := []struct {
		name    string
		span    time.Duration
		samples []sample
		want    map[Aggregation]float64
	}{
		{"one sample", time.Minute, []sample{{0, 5}},
			map[Aggregation]float64{AggLast: 5, AggAvg: 5, AggMin: 5, AggMax: 5, AggCount: 1}},
		{"all in window", time.Minute, []sample{{0, 1}, {10, 4}, {20, -2}, {30, 5}},
			map[Aggregation]float64{AggLast: 5, AggAvg: 2, AggMin: -2, AggMax: 5, AggCount: 4}},
		{"old samples evicted", time.Minute, []sample{{0, 100}, {29.9, -100}, {61, 1}, {90, 3}},
			map[Aggregation]float64{AggLast: 3, AggAvg: 2, AggMin: 1, AggMax: 3, AggCount: 2}},
		{"boundary sample kept", time.Minute, []sample{{0, 10}, {60, 20}},
			map[Aggregation]float64{AggLast: 20, AggAvg: 15, AggMin: 10, AggMax: 20, AggCount: 2}},
		{"just past boundary evicted", time.Minute, []sample{{0, 10}, {60.000000001, 20}},
			map[Aggregation]float64{AggLast: 20, AggAvg: 20, AggMin: 20, AggMax: 20, AggCount: 1}},
		{"span 0 keeps the newest", 0, []sample{{0, 1}, {1, 2}, {2, 3}},
			map[Aggregation]float64{AggLast: 3, AggAvg: 3, AggMin: 3, AggMax: 3, AggCount: 1}},
		{"late sample inserted in order", time.Minute, []sample{{0, 1}, {20, 3}, {10, 2}},
			map[Aggregation]float64{AggLast: 3, AggAvg: 2, AggMin: 1, AggMax: 3, AggCount: 3}},
		{"redelivered samples ignored", time.Minute, []sample{{0, 1}, {10, 2}, {10, 2}, {0, 1}, {10, 99}},
			map[Aggregation]float64{AggLast: 2, AggAvg: 1.5, AggMin: 1, AggMax: 2, AggCount: 2}},
		{"late sample older than window ignored", time.Minute, []sample{{100, 1}, {39, 50}},
			map[Aggregation]float64{AggLast: 1, AggAvg: 1, AggMin: 1, AggMax: 1, AggCount: 1}},
		{"NaN ignored", time.Minute, []sample{{0, 1}, {1, math.NaN()}, {2, math.Inf(1)}},
			map[Aggregation]float64{AggLast: 1, AggAvg: 1, AggMin: 1, AggMax: 1, AggCount: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			for _, s := range tt.samples {
				w.Add(sec(s.at), s.v, tt.span)
			}
			for agg, want := range tt.want {
				if got, ok := w.Aggregate(agg); !ok || got != want {
					t.Errorf("Aggregate(%s) = %v, %v, want %v", agg, got, ok, want)
				}
			}
			// Through an encoding the window aggregates the same.
			back, err := DecodeWindow(w.Encode())
			if err != nil {
				t.Fatalf("DecodeWindow(Encode()) = %v", err)
			}
			for agg, want := range tt.want {
				if got, _ := back.Aggregate(agg); got != want {
					t.Errorf("decoded Aggregate(%s) = %v, want %v", agg, got, want)
				}
			}
		})
	}
}

func TestWindowAddResult(t *testing.T) {
	var w Window
	steps := []struct {
		at   float64
		v    float64
		want bool
	}{
		{10, 1, true},
		{10, 1, false}, // redelivery
		{20, 2, true},
		{15, 3, true},   // late, inside the window
		{15, 3, false},  // late and redelivered
		{-41, 4, false}, // older than the window
		{-40, 4, true},  // exactly at its start
		{21, math.NaN(), false},
	}
	for _, s := range steps {
		if got := w.Add(sec(s.at), s.v, time.Minute); got != s.want {
			t.Errorf("Add(%vs, %v) = %v, want %v", s.at, s.v, got, s.want)
		}
	}
	if got := w.Count(); got != 4 {
		t.Errorf("Count() = %d, want 4", got)
	}
	if got, ok := w.Newest(); !ok || !got.Equal(sec(20)) {
		t.Errorf("Newest() = %v, %v, want %v", got, ok, sec(20))
	}
	var empty Window
	if _, ok := empty.Newest(); ok {
		t.Errorf("empty Newest() ok, want false")
	}
	for _, agg := range []Aggregation{AggLast, AggAvg, AggMin, AggMax, "p95"} {
		if got, ok := empty.Aggregate(agg); ok {
			t.Errorf("empty Aggregate(%s) = %v, true; want false", agg, got)
		}
	}
	if got, ok := empty.Aggregate(AggCount); !ok || got != 0 {
		t.Errorf("empty Aggregate(count) = %v, %v; want 0, true", got, ok)
	}
}

func TestWindowShrinkingSpan(t *testing.T) {
	var w Window
	for i := range 10 {
		w.Add(sec(float64(i*10)), float64(i), 2*time.Minute)
	}
	// The rule was edited to a 30s window: the next sample evicts what is now too old.
	w.Add(sec(100), 10, 30*time.Second)
	if got, _ := w.Aggregate(AggCount); got != 4 { // 70, 80, 90, 100
		t.Errorf("Aggregate(count) = %v, want 4", got)
	}
}

// TestWindowCap feeds far more samples than MaxSamples: the window stays bounded, count, sum,
// min, max and last stay exact while nothing is evicted, and once samples leave the window the
// count errs only by the merged entry at its start, and only upwards.
func TestWindowCap(t *testing.T) {
	const n = 1000
	var w Window
	var sum float64
	for i := range n {
		v := float64((i * 37) % 101) // spread values, min 0, max 100
		sum += v
		if !w.Add(sec(float64(i)), v, time.Hour) {
			t.Fatalf("Add(%d) = false", i)
		}
		if len(w.b) > MaxSamples {
			t.Fatalf("after %d samples the window holds %d entries, more than %d", i+1, len(w.b), MaxSamples)
		}
	}
	want := map[Aggregation]float64{AggCount: n, AggAvg: sum / n, AggMin: 0, AggMax: 100, AggLast: float64(((n - 1) * 37) % 101)}
	for agg, v := range want {
		if got, _ := w.Aggregate(agg); math.Abs(got-v) > 1e-9 {
			t.Errorf("Aggregate(%s) = %v, want %v", agg, got, v)
		}
	}
	// The encoding stays within the documented bound.
	if enc := w.Encode(); len(enc) > 6<<10 {
		t.Errorf("Encode() is %d bytes, want at most 6 KiB", len(enc))
	}
	// Entries cover the time evenly: none spans more than a few times its share.
	share := int64(n * time.Second / MaxSamples)
	for _, e := range w.b {
		if e.last-e.first > 4*share {
			t.Errorf("entry spans %v, more than 4x the even share %v", time.Duration(e.last-e.first), time.Duration(share))
		}
	}
	// A late sample inside a merged entry cannot be told from a counted one: refused.
	mid := w.b[len(w.b)/2]
	if mid.n > 1 && w.Add(time.Unix(0, mid.first+1), 1, time.Hour) {
		t.Errorf("Add inside a merged entry = true, want false")
	}

	// Shrink the window to 10 minutes: the exact count is 601 samples (400s..1000s).
	w.Add(sec(n), 0, 10*time.Minute)
	exact := 601.0
	got, _ := w.Aggregate(AggCount)
	t.Logf("count after eviction: %v (exact %v), %d entries", got, exact, len(w.b))
	if got < exact || got > exact+float64(4*share/int64(time.Second))+1 {
		t.Errorf("Aggregate(count) after eviction = %v, want within [%v, %v]", got, exact, exact+float64(4*share/int64(time.Second))+1)
	}
}

func TestWindowDeterministic(t *testing.T) {
	var a, b Window
	for i := range 500 {
		at, v := sec(float64(i)*0.5), float64(i%7)
		a.Add(at, v, 3*time.Minute)
		b.Add(at, v, 3*time.Minute)
	}
	if !bytes.Equal(a.Encode(), b.Encode()) {
		t.Fatalf("two windows fed the same samples encode differently")
	}
}

func TestWindowEncodeRoundTrip(t *testing.T) {
	build := func(span time.Duration, samples ...sample) *Window {
		w := &Window{}
		for _, s := range samples {
			w.Add(sec(s.at), s.v, span)
		}
		return w
	}
	big := &Window{}
	for i := range 400 {
		big.Add(sec(float64(i)), float64(i)*1e300, time.Hour) // the sum overflows to +Inf
	}
	windows := map[string]*Window{
		"empty":     {},
		"one":       build(time.Minute, sample{0, 1.5}),
		"several":   build(time.Minute, sample{0, -1}, sample{0.001, 2}, sample{59, math.MaxFloat64}),
		"pre-1970":  {b: []entry{{first: -5e18, last: -5e18, n: 1, mean: 1, min: 1, max: 1, newV: 1}}},
		"merged":    big,
		"huge sums": big,
	}
	for name, w := range windows {
		t.Run(name, func(t *testing.T) {
			enc := w.Encode()
			back, err := DecodeWindow(enc)
			if err != nil {
				t.Fatalf("DecodeWindow(Encode()) = %v", err)
			}
			if len(w.b) == 0 && len(back.b) == 0 {
				return
			}
			if !reflect.DeepEqual(back.b, w.b) {
				t.Fatalf("DecodeWindow(Encode()) = %+v, want %+v", back.b, w.b)
			}
			if !bytes.Equal(back.Encode(), enc) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

func TestDecodeWindowErrors(t *testing.T) {
	valid := (&Window{b: []entry{
		{first: 1000, last: 1000, n: 1, mean: 2, min: 2, max: 2, newV: 2},
		{first: 2000, last: 3000, n: 3, mean: 2, min: 1, max: 3, newV: 2},
	}}).Encode()
	if _, err := DecodeWindow(valid); err != nil {
		t.Fatalf("DecodeWindow(valid) = %v", err)
	}
	// Every truncation of a valid encoding is refused.
	for i := range len(valid) {
		if w, err := DecodeWindow(valid[:i]); err == nil {
			t.Errorf("DecodeWindow(valid[:%d]) = %+v, nil; want an error", i, w)
		}
	}
	u := binary.AppendUvarint
	v := binary.AppendVarint
	f := func(b []byte, x float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)) }
	hdr := func(n uint64) []byte { return u([]byte{windowVersion}, n) }
	tests := map[string][]byte{
		"nil":              nil,
		"bad version":      append([]byte{3}, valid[1:]...),
		"mean outside":     f(f(f(f(u(u(v(hdr(1), 5), 2), 10), 9), 1), 2), 2),
		"trailing bytes":   append(append([]byte(nil), valid...), 0),
		"too many entries": hdr(MaxSamples + 1),
		"zero samples":     u(v(hdr(1), 5), 0),
		"NaN value":        f(u(v(hdr(1), 5), 1), math.NaN()),
		"Inf value":        f(u(v(hdr(1), 5), 1), math.Inf(1)),
		"zero gap":         f(u(u(f(u(v(hdr(2), 5), 1), 1), 0), 1), 1),
		"min above max":    f(f(f(f(u(u(v(hdr(1), 5), 2), 10), 3), 2), 1), 1),
		"newest outside":   f(f(f(f(u(u(v(hdr(1), 5), 2), 10), 3), 1), 2), 5),
		"overlong varint":  append([]byte{windowVersion}, bytes.Repeat([]byte{0xff}, 11)...),
		"span overflow":    f(f(f(f(u(u(v(hdr(1), math.MaxInt64-1), 2), 10), 3), 1), 2), 2),
	}
	for name, data := range tests {
		w, err := DecodeWindow(data)
		if err == nil || !errors.Is(err, errCorrupt) {
			t.Errorf("DecodeWindow(%s) = %+v, %v; want an error wrapping errCorrupt", name, w, err)
		}
	}
}

// TestWindowExtremeValues feeds samples near the float maximum (issue 7: two of 1.7e308 made
// avg +Inf, which then blocked the alerter): every aggregation stays finite and right, before
// and after merging and through an encoding.
func TestWindowExtremeValues(t *testing.T) {
	const big = 1.7e308
	repeat := func(n int, vs ...float64) []float64 {
		var out []float64
		for i := range n {
			out = append(out, vs[i%len(vs)])
		}
		return out
	}
	tests := []struct {
		name   string
		values []float64
		want   map[Aggregation]float64
		tol    float64 // allowed |avg - want|, relative to the largest |value|
	}{
		{"two huge", []float64{big, big},
			map[Aggregation]float64{AggLast: big, AggAvg: big, AggMin: big, AggMax: big, AggCount: 2}, 0},
		{"two huge negative", []float64{-big, -big},
			map[Aggregation]float64{AggLast: -big, AggAvg: -big, AggMin: -big, AggMax: -big, AggCount: 2}, 0},
		{"float maximum thrice", []float64{math.MaxFloat64, math.MaxFloat64, math.MaxFloat64},
			map[Aggregation]float64{AggLast: math.MaxFloat64, AggAvg: math.MaxFloat64, AggMin: math.MaxFloat64,
				AggMax: math.MaxFloat64, AggCount: 3}, 0},
		{"mixed signs", []float64{big, -big},
			map[Aggregation]float64{AggLast: -big, AggAvg: 0, AggMin: -big, AggMax: big, AggCount: 2}, 0},
		{"maximum and its negative", []float64{math.MaxFloat64, math.MaxFloat64, -math.MaxFloat64},
			map[Aggregation]float64{AggLast: -math.MaxFloat64, AggAvg: math.MaxFloat64 / 3, AggMin: -math.MaxFloat64,
				AggMax: math.MaxFloat64, AggCount: 3}, 1e-15},
		{"huge and small", []float64{big, 1, -3},
			map[Aggregation]float64{AggLast: -3, AggAvg: big / 3, AggMin: -3, AggMax: big, AggCount: 3}, 1e-15},
		{"many huge, merged", repeat(1000, big),
			map[Aggregation]float64{AggLast: big, AggAvg: big, AggMin: big, AggMax: big, AggCount: 1000}, 0},
		{"many huge negative, merged", repeat(1000, -math.MaxFloat64),
			map[Aggregation]float64{AggLast: -math.MaxFloat64, AggAvg: -math.MaxFloat64, AggMin: -math.MaxFloat64,
				AggMax: -math.MaxFloat64, AggCount: 1000}, 0},
		{"many alternating signs, merged", repeat(1001, big, -big),
			map[Aggregation]float64{AggLast: big, AggAvg: big / 1001, AggMin: -big, AggMax: big, AggCount: 1001}, 1e-12},
		{"many mixed magnitudes, merged", repeat(999, big, 1, -big/2),
			map[Aggregation]float64{AggLast: -big / 2, AggAvg: big / 6, AggMin: -big / 2, AggMax: big, AggCount: 999}, 1e-12},
		{"many smallest subnormals", repeat(500, 5e-324),
			map[Aggregation]float64{AggLast: 5e-324, AggAvg: 5e-324, AggMin: 5e-324, AggMax: 5e-324, AggCount: 500}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			for i, v := range tt.values {
				if !w.Add(sec(float64(i)), v, time.Hour) {
					t.Fatalf("Add(%v) = false", v)
				}
				// Every intermediate aggregate is finite too.
				for _, agg := range []Aggregation{AggAvg, AggMin, AggMax, AggLast, AggCount} {
					if got, ok := w.Aggregate(agg); !ok || !finite(got) {
						t.Fatalf("after %d samples Aggregate(%s) = %v, %v, want a finite value", i+1, agg, got, ok)
					}
				}
			}
			back, err := DecodeWindow(w.Encode())
			if err != nil {
				t.Fatalf("DecodeWindow(Encode()) = %v", err)
			}
			for name, win := range map[string]*Window{"window": &w, "decoded": back} {
				for agg, want := range tt.want {
					got, ok := win.Aggregate(agg)
					tol := 0.0
					if agg == AggAvg {
						tol = tt.tol * max(math.Abs(tt.want[AggMin]), math.Abs(tt.want[AggMax]))
					}
					if !ok || !finite(got) || math.Abs(got-want) > tol {
						t.Errorf("%s: Aggregate(%s) = %v, %v, want %v (±%g)", name, agg, got, ok, want, tol)
					}
				}
			}
		})
	}
}

// TestDecodeWindowVersion1 reads the encoding of earlier releases, whose merged entries held a
// sum that could be +Inf: the window decodes with a finite mean.
func TestDecodeWindowVersion1(t *testing.T) {
	u := binary.AppendUvarint
	f := func(b []byte, x float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)) }
	entry := func(b []byte, n uint64, sum, lo, hi, newV float64) []byte {
		return f(f(f(f(u(u(b, n), 10), sum), lo), hi), newV)
	}
	tests := []struct {
		name string
		data []byte
		want float64 // avg
	}{
		{"finite sum", entry(binary.AppendVarint(u([]byte{windowVersionV1}, 1), 5), 4, 10, 1, 4, 2), 2.5},
		{"overflowed sum", entry(binary.AppendVarint(u([]byte{windowVersionV1}, 1), 5), 2, math.Inf(1), 1.7e308, 1.7e308, 1.7e308), 1.7e308},
		{"overflowed negative sum", entry(binary.AppendVarint(u([]byte{windowVersionV1}, 1), 5), 3, math.Inf(-1), -1.7e308, -1e308, -1e308), -1.7e308},
	}
	for _, tt := range tests {
		w, err := DecodeWindow(tt.data)
		if err != nil {
			t.Fatalf("%s: DecodeWindow = %v", tt.name, err)
		}
		if got, ok := w.Aggregate(AggAvg); !ok || got != tt.want {
			t.Errorf("%s: Aggregate(avg) = %v, %v, want %v", tt.name, got, ok, tt.want)
		}
	}
}
