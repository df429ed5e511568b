package stream

import (
	"context"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// TestBacklogFlipsOverItsBound: Over turns true once the streams hold more than Max entries,
// summed over the shards, and false again once they are trimmed.
func TestBacklogFlipsOverItsBound(t *testing.T) { onRedisAndCluster(t, testBacklogFlipsOverItsBound) }

func testBacklogFlipsOverItsBound(t *testing.T, e *env) {
	b, err := NewBacklog(e.client, BacklogConfig{Prefix: e.prefix, Shards: e.shards, Max: 5, Interval: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	}()

	p := e.publisher()
	e.publish(p, []string{"a", "b", "c", "d", "e"}, 1) // spread over shards: 5 entries, at the bound
	testenv.Eventually(t, 5*time.Second, func() string {
		if b.Len() == 5 {
			return ""
		}
		return "Len() never reached 5"
	})
	if b.Over() {
		t.Fatalf("Over() = true with 5 entries and Max 5, want false")
	}
	e.publish(p, []string{"f"}, 1)
	testenv.Eventually(t, 5*time.Second, func() string {
		if b.Over() {
			return ""
		}
		return "Over() still false with 6 entries and Max 5"
	})

	for _, k := range e.keys() {
		if err := e.client.XTrimMaxLen(context.Background(), k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, func() string {
		if !b.Over() {
			return ""
		}
		return "Over() still true after the streams emptied"
	})
}
