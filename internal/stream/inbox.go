package stream

import "sync"

// inbox passes entries from the consumer's blocking readers to its batch assembler. It keeps them
// in the order put, so entries of one stream stay in stream order. A reader reads again only with
// a credit token, given back once every entry it put has been taken: the inbox holds at most one
// read's worth per reader.
type inbox struct {
	mu      sync.Mutex
	entries []entry
	held    []int // entries in the inbox per reader

	// credit[r] holds a token while reader r may read; ready a token when entries arrived.
	credit []chan struct{}
	ready  chan struct{}
}

func newInbox(readers int) *inbox {
	in := &inbox{held: make([]int, readers), credit: make([]chan struct{}, readers), ready: make(chan struct{}, 1)}
	for r := range in.credit {
		in.credit[r] = make(chan struct{}, 1)
		in.credit[r] <- struct{}{}
	}
	return in
}

// put appends what reader r read; with nothing read, r may read again at once.
func (in *inbox) put(r int, es []entry) {
	if len(es) == 0 {
		signal(in.credit[r])
		return
	}
	in.mu.Lock()
	in.entries = append(in.entries, es...)
	in.held[r] += len(es)
	in.mu.Unlock()
	signal(in.ready)
}

// take removes and returns up to n entries from the front, giving a reader whose entries are all
// taken its credit back.
func (in *inbox) take(n int) []entry {
	in.mu.Lock()
	defer in.mu.Unlock()
	n = min(n, len(in.entries))
	out := make([]entry, n)
	copy(out, in.entries)
	in.entries = append(in.entries[:0], in.entries[n:]...)
	for _, e := range out {
		if in.held[e.reader]--; in.held[e.reader] == 0 {
			signal(in.credit[e.reader])
		}
	}
	return out
}

// len returns how many entries wait in the inbox.
func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.entries)
}

// snapshot returns a copy of the entries waiting in the inbox.
func (in *inbox) snapshot() []entry {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]entry(nil), in.entries...)
}

// signal leaves a token in ch unless one is there already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
