package stream

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestAgeTrimmerKeepsWhatAGroupStillNeeds(t *testing.T) {
	onRedisAndCluster(t, testAgeTrimmerKeepsWhatAGroupStillNeeds)
}

func testAgeTrimmerKeepsWhatAGroupStillNeeds(t *testing.T, e *env) {
	client, prefix := e.client, e.prefix
	ctx := context.Background()
	key := prefix + "alerts"
	now := time.Now()
	day := func(d int) string { return fmt.Sprintf("%d-0", now.Add(-time.Duration(d)*24*time.Hour).UnixMilli()) }
	// Entries 10, 9 and 8 days old, then 1 day old.
	ids := []string{day(10), day(9), day(8), day(1)}
	for _, id := range ids {
		if err := client.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: []string{"k", "v"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A group that has read (and acked) only the oldest entry, and one holding the second pending.
	if err := client.XGroupCreate(ctx, key, "history", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.XGroupCreate(ctx, key, "notifier", ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "history", Consumer: "c", Streams: []string{key, ">"}, Count: 1}).Result(); err != nil {
		t.Fatal(err)
	}
	client.XAck(ctx, key, "history", ids[0])
	if _, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "notifier", Consumer: "c", Streams: []string{key, ">"}, Count: 1}).Result(); err != nil {
		t.Fatal(err)
	}
	a, err := NewAgeTrimmer(client, []AgedStream{{Key: key, MaxAge: 7 * 24 * time.Hour}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	left := func() []string {
		msgs, err := client.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range msgs {
			out = append(out, m.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		prep func()
		want []string
	}{
		{"history needs from the second entry, notifier has it pending", func() {}, ids[1:]},
		{"notifier acks, history still needs the second", func() { client.XAck(ctx, key, "notifier", ids[1]) }, ids[1:]},
		{"history reads and acks all: only entries younger than the age stay", func() {
			msgs, _ := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "history", Consumer: "c", Streams: []string{key, ">"}}).Result()
			for _, m := range msgs[0].Messages {
				client.XAck(ctx, key, "history", m.ID)
			}
			msgs, _ = client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "notifier", Consumer: "c", Streams: []string{key, ">"}}).Result()
			for _, m := range msgs[0].Messages {
				client.XAck(ctx, key, "notifier", m.ID)
			}
		}, ids[3:]},
	} {
		tc.prep()
		if _, err := a.TrimOnce(ctx); err != nil {
			t.Fatalf("%s: TrimOnce: %v", tc.name, err)
		}
		if got := left(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: entries left %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAgeTrimmerWithoutGroupsTrimsByAgeOnly(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	ctx := context.Background()
	key := prefix + "alerts:poison"
	old := fmt.Sprintf("%d-0", time.Now().Add(-40*24*time.Hour).UnixMilli())
	client.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: old, Values: []string{"k", "v"}})
	client.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"k", "v"}})
	a, err := NewAgeTrimmer(client, []AgedStream{{Key: key, MaxAge: 30 * 24 * time.Hour}, {Key: prefix + "missing", MaxAge: time.Hour}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.TrimOnce(ctx); err != nil || n != 1 {
		t.Errorf("TrimOnce = %d, %v; want 1 (the 40-day-old entry), nil", n, err)
	}
	if n, _ := client.XLen(ctx, key).Result(); n != 1 {
		t.Errorf("XLEN after trim = %d, want 1", n)
	}
}
