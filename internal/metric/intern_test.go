package metric

import (
	"fmt"
	"sync"
	"testing"
)

func TestInternerBounded(t *testing.T) {
	in := interner{max: 4, maxLen: 8}
	for i := range 10 {
		want := fmt.Sprintf("name-%d", i)
		if got := in.string([]byte(want)); got != want {
			t.Fatalf("string(%q) = %q", want, got)
		}
		if n := len(in.m); n > in.max {
			t.Fatalf("after %d names the interner holds %d, more than its max %d", i+1, n, in.max)
		}
	}
	if got := in.string([]byte("longer than eight")); got != "longer than eight" {
		t.Errorf("string of a long name = %q", got)
	}
	if _, ok := in.m["longer than eight"]; ok {
		t.Error("a name longer than maxLen was interned")
	}
	if got := in.string(nil); got != "" {
		t.Errorf("string(nil) = %q, want empty", got)
	}
}

func TestInternerConcurrent(t *testing.T) {
	in := interner{max: 64, maxLen: 32}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				want := fmt.Sprintf("n%d", (i*7+g)%100)
				if got := in.string([]byte(want)); got != want {
					t.Errorf("string(%q) = %q", want, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestParseAllocs: once an agent's names have been seen, a batch costs the parsers a few
// allocations whatever its number of names (issue 13): the points, tags and fields slices, the
// line-protocol decoder, and for JSON each distinct RFC 3339 time (a batch's points share one).
func TestParseAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	lim := DefaultLimits()
	lp := testing.AllocsPerRun(100, func() {
		if _, err := ParseLineProtocol(agentBatchLP, "s", testNow, lim); err != nil {
			t.Fatal(err)
		}
	})
	if lp > 4 {
		t.Errorf("ParseLineProtocol of a 6-point batch: %v allocations, want at most 4", lp)
	}
	js := testing.AllocsPerRun(100, func() {
		if _, err := ParseJSON(agentBatchJSON, testNow, lim); err != nil {
			t.Fatal(err)
		}
	})
	if js > 3+1 {
		t.Errorf("ParseJSON of a 6-point batch with one time: %v allocations, want at most 4", js)
	}
}
