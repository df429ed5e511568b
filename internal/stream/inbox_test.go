package stream

import (
	"fmt"
	"slices"
	"testing"
)

// TestInboxKeepsOrderAndCredit: entries come out in the order put, and a reader may read again
// only once everything it put has been taken (or when it read nothing).
func TestInboxKeepsOrderAndCredit(t *testing.T) {
	in := newInbox(2)
	hasCredit := func(r int) bool {
		select {
		case <-in.credit[r]:
			return true
		default:
			return false
		}
	}
	es := func(r int, ids ...string) []entry {
		out := make([]entry, len(ids))
		for i, id := range ids {
			out[i] = entry{stream: fmt.Sprint("s", r), id: id, reader: r}
		}
		return out
	}
	if !hasCredit(0) || !hasCredit(1) {
		t.Fatal("a new inbox gives every reader a credit")
	}
	in.put(0, es(0, "1", "2", "3"))
	in.put(1, nil)
	if !hasCredit(1) {
		t.Error("reader 1 read nothing: want its credit back at once")
	}
	in.put(1, es(1, "4"))
	if got := in.len(); got != 4 {
		t.Fatalf("len() = %d, want 4", got)
	}
	ids := func(es []entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.id)
		}
		return out
	}
	if got := ids(in.take(2)); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("take(2) = %v, want [1 2]", got)
	}
	if hasCredit(0) {
		t.Error("reader 0 has an entry left in the inbox: want no credit yet")
	}
	if got := ids(in.snapshot()); !slices.Equal(got, []string{"3", "4"}) {
		t.Errorf("snapshot() = %v, want [3 4]", got)
	}
	if got := ids(in.take(10)); !slices.Equal(got, []string{"3", "4"}) {
		t.Errorf("take(10) = %v, want [3 4]", got)
	}
	if !hasCredit(0) || !hasCredit(1) {
		t.Error("every entry taken: want both readers' credit back")
	}
	if got := in.take(5); len(got) != 0 {
		t.Errorf("take on an empty inbox = %v, want nothing", got)
	}
}
