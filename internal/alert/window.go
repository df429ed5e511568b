package alert

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"time"
)

// MaxSamples bounds the entries a Window keeps, and so the size of its encoding (at most about
// 12 bytes per raw sample, 46 per merged entry: under 6 KiB).
const MaxSamples = 128

// windowVersion is the first byte of an encoded Window. Version 1 stored each merged entry's
// sum, which overflows to ±Inf for huge samples (issue 7); version 2 stores its mean instead.
// DecodeWindow still reads version 1, converting the sums.
const (
	windowVersion   = 2
	windowVersionV1 = 1
)

// Window holds the recent samples of one series for one rule (one Key) and aggregates them over
// [t-span, t], t being the time of its newest sample. It is a value computed only from the
// samples added, so every alerter copy holding the same encoded Window computes the same
// aggregate; the zero Window is empty and ready to use. It is not safe for concurrent use.
//
// A Window keeps at most MaxSamples entries. Past that, each new sample makes it merge the two
// adjacent entries that span the shortest time into one entry holding their count, mean, min,
// max and newest value, so avg, min, max, count and last stay exact over the samples kept (avg
// up to rounding).
// What is lost is the time of each merged sample: a merged entry leaves the window only when
// its newest sample does, so for series sending more than MaxSamples samples per window the
// oldest merged samples may count a little past the window's start (by at most the span of
// their entry, a small fraction of the window when samples arrive evenly).
type Window struct {
	b []entry // sorted by time; entries never overlap and never share a time
}

// entry is one sample (n == 1, first == last) or several merged ones. It keeps the mean of its
// samples rather than their sum: a mean lies between min and max, so it stays finite whatever
// the samples (two of 1.7e308 sum to +Inf).
type entry struct {
	first, last          int64 // Unix ns of the oldest and newest sample
	n                    uint64
	mean, min, max, newV float64 // newV: value of the newest sample
}

// Add adds the sample (at, v) to the window and drops the samples more than span older than
// the newest one (span is the rule's Window; 0 keeps only the newest). It returns false, changing nothing, when the
// sample is already there (same time: a redelivery), older than the window, falls inside a
// merged entry (it cannot be told from a sample already counted), or v is not finite. A sample
// older than the newest one but within the window is inserted in time order, so entries
// processed out of order by concurrent copies still count.
func (w *Window) Add(at time.Time, v float64, span time.Duration) bool {
	if !finite(v) {
		return false
	}
	t := at.UnixNano()
	e := entry{first: t, last: t, n: 1, mean: v, min: v, max: v, newV: v}
	switch n := len(w.b); {
	case n == 0 || t > w.b[n-1].last:
		w.b = append(w.b, e)
	default:
		if t < w.b[n-1].last-int64(span) {
			return false
		}
		// i is the first entry not entirely before t.
		i := sort.Search(n, func(i int) bool { return w.b[i].last >= t })
		if w.b[i].first <= t {
			return false
		}
		w.b = append(w.b, entry{})
		copy(w.b[i+1:], w.b[i:])
		w.b[i] = e
	}
	w.evict(span)
	for len(w.b) > MaxSamples {
		w.mergeClosest()
	}
	return true
}

// evict drops the entries whose newest sample is older than newest-span.
func (w *Window) evict(span time.Duration) {
	if len(w.b) == 0 {
		return
	}
	start := w.b[len(w.b)-1].last - int64(max(span, 0))
	i := 0
	for i < len(w.b) && w.b[i].last < start {
		i++
	}
	w.b = append(w.b[:0], w.b[i:]...)
}

// mergeClosest merges the two adjacent entries that together span the shortest time (the
// oldest such pair on a tie), which keeps the resolution even across the window.
func (w *Window) mergeClosest() {
	best := 0
	for i := 1; i+1 < len(w.b); i++ {
		if w.b[i+1].last-w.b[i].first < w.b[best+1].last-w.b[best].first {
			best = i
		}
	}
	a, b := w.b[best], w.b[best+1]
	e := entry{first: a.first, last: b.last, n: a.n + b.n, min: min(a.min, b.min), max: max(a.max, b.max), newV: b.newV}
	e.mean = weightedMean(e.min, e.max, e.n, a, b)
	w.b[best] = e
	w.b = append(w.b[:best+1], w.b[best+2:]...)
}

// Aggregate returns agg over the samples in the window, and false when there is nothing to
// aggregate (an empty window; count is then 0 and true) or agg is unknown.
func (w *Window) Aggregate(agg Aggregation) (float64, bool) {
	if agg == AggCount {
		return float64(w.Count()), true
	}
	if len(w.b) == 0 {
		return 0, false
	}
	switch agg {
	case AggLast:
		return w.b[len(w.b)-1].newV, true
	case AggAvg:
		lo, hi := w.b[0].min, w.b[0].max
		for _, e := range w.b[1:] {
			lo, hi = min(lo, e.min), max(hi, e.max)
		}
		return weightedMean(lo, hi, uint64(w.Count()), w.b...), true
	case AggMin:
		m := w.b[0].min
		for _, e := range w.b[1:] {
			m = min(m, e.min)
		}
		return m, true
	case AggMax:
		m := w.b[0].max
		for _, e := range w.b[1:] {
			m = max(m, e.max)
		}
		return m, true
	}
	return 0, false
}

// weightedMean returns the mean of the entries' samples, n in all, whose values lie in [lo, hi]:
// the sum of each entry's mean times its count (with Neumaier's compensation, so that many
// terms do not lose precision) over n. It never overflows: when the values are large enough for
// the sum to pass the float maximum, every term is first scaled down by a power of two (exact)
// so that the sum stays below it, and the result is clamped to [lo, hi], where the exact mean
// lies, against rounding. It is finite whenever lo and hi are.
func weightedMean(lo, hi float64, n uint64, entries ...entry) float64 {
	if len(entries) == 1 {
		return entries[0].mean
	}
	scale := 1.0
	if max(math.Abs(lo), math.Abs(hi)) > math.MaxFloat64/2/float64(n) {
		scale = math.Ldexp(1, -(bits.Len64(n) + 1)) // scale × n ≤ 1/2
	}
	var sum, comp float64
	for _, e := range entries {
		term := e.mean * scale * float64(e.n)
		t := sum + term
		if math.Abs(sum) >= math.Abs(term) {
			comp += (sum - t) + term
		} else {
			comp += (term - t) + sum
		}
		sum = t
	}
	return min(max((sum+comp)/float64(n)/scale, lo), hi)
}

// Count returns the number of samples in the window.
func (w *Window) Count() int {
	var n uint64
	for _, e := range w.b {
		n += e.n
	}
	return int(n)
}

// Newest returns the time of the newest sample, and false for an empty window.
func (w *Window) Newest() (time.Time, bool) {
	if len(w.b) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, w.b[len(w.b)-1].last), true
}

// merged returns the number of entries holding more than one sample.
func (w *Window) merged() int {
	n := 0
	for _, e := range w.b {
		if e.n > 1 {
			n++
		}
	}
	return n
}

// Encode returns the window in a compact binary form that DecodeWindow reads back: a version
// byte, the number of entries, then per entry the time since the previous entry (varint) and
// either the value (one sample) or the count, span, mean, min, max and newest value.
func (w *Window) Encode() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(w.b)*(2*binary.MaxVarintLen64+8)+w.merged()*(binary.MaxVarintLen64+24))
	b = append(b, windowVersion)
	b = binary.AppendUvarint(b, uint64(len(w.b)))
	var prev int64
	for i, e := range w.b {
		if i == 0 {
			b = binary.AppendVarint(b, e.first)
		} else {
			b = binary.AppendUvarint(b, uint64(e.first-prev))
		}
		b = binary.AppendUvarint(b, e.n)
		if e.n == 1 {
			b = appendFloat(b, e.mean)
		} else {
			b = binary.AppendUvarint(b, uint64(e.last-e.first))
			for _, f := range [...]float64{e.mean, e.min, e.max, e.newV} {
				b = appendFloat(b, f)
			}
		}
		prev = e.last
	}
	return b
}

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// errCorrupt is wrapped by DecodeWindow's errors.
var errCorrupt = errors.New("corrupt window encoding")

// DecodeWindow reads a window written by Encode. It checks everything it reads (version,
// bounds, time order, counts, finite values) and fails with an error rather than return a
// window Add could misbehave on. It also reads version 1 encodings, whose merged entries held a
// sum (possibly ±Inf) instead of a mean: the mean is then the sum over the count, clamped to the
// entry's min and max.
func DecodeWindow(data []byte) (*Window, error) {
	d := decoder{b: data}
	version := d.byte()
	if version != windowVersion && version != windowVersionV1 {
		return nil, fmt.Errorf("decoding window: %w: version %d", errCorrupt, version)
	}
	n := d.uvarint()
	if d.err == nil && n > MaxSamples {
		return nil, fmt.Errorf("decoding window: %w: %d entries, more than %d", errCorrupt, n, MaxSamples)
	}
	// Built in a local slice and stored once: appending to a heap Window's field would pay a
	// GC write barrier per entry.
	entries := make([]entry, 0, n+1) // +1: room for the Add that usually follows
	var prev int64
	for i := uint64(0); i < n && d.err == nil; i++ {
		var e entry
		if i == 0 {
			e.first = d.varint()
		} else {
			gap := d.uvarint()
			if gap == 0 || gap > uint64(math.MaxInt64-prev) {
				d.fail("entry %d: time gap %d", i, gap)
				break
			}
			e.first = prev + int64(gap)
		}
		e.n = d.uvarint()
		switch {
		case e.n == 0:
			d.fail("entry %d: no samples", i)
		case e.n == 1:
			v := d.float()
			if d.err == nil && !finite(v) {
				d.fail("entry %d: value %v", i, v)
			}
			e.last, e.mean, e.min, e.max, e.newV = e.first, v, v, v, v
		default:
			span := d.uvarint()
			if span > uint64(math.MaxInt64-e.first) {
				d.fail("entry %d: span %d", i, span)
				break
			}
			e.last = e.first + int64(span)
			e.mean, e.min, e.max, e.newV = d.float(), d.float(), d.float(), d.float()
			if d.err == nil && (!finite(e.min) || !finite(e.max) || !finite(e.newV) ||
				e.min > e.max || e.newV < e.min || e.newV > e.max) {
				d.fail("entry %d: min %v, max %v, newest %v", i, e.min, e.max, e.newV)
			}
			if version == windowVersionV1 {
				// A sum, which may have overflowed to ±Inf (many huge samples).
				e.mean = min(max(e.mean/float64(e.n), e.min), e.max)
			}
			if d.err == nil && (e.mean < e.min || e.mean > e.max) {
				d.fail("entry %d: mean %v outside [%v, %v]", i, e.mean, e.min, e.max)
			}
		}
		entries = append(entries, e)
		prev = e.last
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("decoding window: %w", d.err)
	}
	return &Window{b: entries}, nil
}

// decoder reads Encode's primitives and remembers the first failure.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errCorrupt}, args...)...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) float() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	if math.IsNaN(f) {
		d.fail("NaN")
	}
	return f
}
