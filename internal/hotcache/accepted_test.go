package hotcache_test

import (
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestUpdateRecordsAcceptedTime(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	c, err := hotcache.New(client, prefix, shards, hotcache.Config{TTLSeconds: 300, Window: time.Minute, MaxSeries: 100, MaxSamples: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	now := time.Unix(1_800_000_000, 123)
	fresh := []metric.Point{{Measurement: "cpu", Fields: []metric.Field{float("usage", 1)}, Time: now.UnixNano()}}
	// Every point older than the window: no hot data, but the batch was still accepted.
	old := []metric.Point{{Measurement: "cpu", Fields: []metric.Field{float("usage", 1)}, Time: now.Add(-time.Hour).UnixNano()}}
	if err := c.Update(ctx, "a", fresh, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, "b", old, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := hotcache.Accepted(ctx, client, prefix, shards)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"a": now, "b": now.Add(time.Second)}
	for id, w := range want {
		if !got[id].Equal(w) {
			t.Errorf("Accepted()[%s] = %v, want %v", id, got[id], w)
		}
	}
	if err := c.Forget(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := hotcache.Accepted(ctx, client, prefix, shards); len(got) != 1 {
		t.Errorf("after Forget(a) Accepted() = %v, want only b", got)
	}

	// The first reader fixes the time the record starts; later readers get the same.
	since, err := hotcache.AcceptedSince(ctx, client, prefix, now)
	if err != nil || !since.Equal(now) {
		t.Fatalf("AcceptedSince(first) = %v, %v, want %v", since, err, now)
	}
	since, err = hotcache.AcceptedSince(ctx, client, prefix, now.Add(time.Hour))
	if err != nil || !since.Equal(now) {
		t.Fatalf("AcceptedSince(later) = %v, %v, want %v", since, err, now)
	}
}
