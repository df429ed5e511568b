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

func (e *env) ids(key string) []string {
	e.t.Helper()
	msgs, err := e.client.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		e.t.Fatalf("XRANGE %s: %v", key, err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func (e *env) trimmer(groups ...string) *Trimmer {
	e.t.Helper()
	tr, err := NewTrimmer(e.client, TrimmerConfig{Prefix: e.prefix, Shards: e.shards, Groups: groups}, nil)
	if err != nil {
		e.t.Fatalf("NewTrimmer: %v", err)
	}
	return tr
}

func (e *env) trimOnce(tr *Trimmer, want int64) {
	e.t.Helper()
	n, err := tr.TrimOnce(context.Background())
	if err != nil || n != want {
		e.t.Fatalf("TrimOnce() = %d, %v; want %d, nil", n, err, want)
	}
}

// readAs reads count new entries of key for group as consumer, with a raw XREADGROUP.
func (e *env) readAs(key, group, consumer string, count int64) []string {
	e.t.Helper()
	res, err := e.client.XReadGroup(context.Background(), &redis.XReadGroupArgs{
		Group: group, Consumer: consumer, Streams: []string{key, ">"}, Count: count, Block: -1,
	}).Result()
	if err != nil {
		e.t.Fatalf("XREADGROUP %s %s: %v", key, group, err)
	}
	var ids []string
	for _, m := range res[0].Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func (e *env) ackIDs(key, group string, ids ...string) {
	e.t.Helper()
	if err := e.client.XAck(context.Background(), key, group, ids...).Err(); err != nil {
		e.t.Fatal(err)
	}
}

// TestTrimmerKeepsWhatAGroupStillNeeds: with one group done and one lagging (entries delivered and
// unacked, entries undelivered), the trimmer deletes only what both acked.
func TestTrimmerKeepsWhatAGroupStillNeeds(t *testing.T) {
	onRedisAndCluster(t, testTrimmerKeepsWhatAGroupStillNeeds)
}

func testTrimmerKeepsWhatAGroupStillNeeds(t *testing.T, e *env) {
	e.publish(e.publisher(), []string{"a"}, 10)
	key := e.keys()[ShardFor("a", e.shards)]
	all := e.ids(key)
	tr := e.trimmer("fast", "slow")

	// The groups do not exist yet: they are created at 0 and nothing is trimmed.
	e.trimOnce(tr, 0)
	for _, k := range e.keys() {
		groups, err := e.client.XInfoGroups(context.Background(), k).Result()
		if err != nil || len(groups) != 2 {
			t.Fatalf("groups on %s after the first trim = %v, %v; want fast and slow created", k, groups, err)
		}
		for _, g := range groups {
			if g.LastDeliveredID != "0-0" {
				t.Errorf("group %s on %s created at %s, want 0-0 so that it sees every entry", g.Name, k, g.LastDeliveredID)
			}
		}
	}

	e.ackIDs(key, "fast", e.readAs(key, "fast", "f", 100)...)
	slow := e.readAs(key, "slow", "s", 4)
	e.ackIDs(key, "slow", slow[:2]...)
	// slow: acked 0,1; pending 2,3; never delivered 4..9.
	e.trimOnce(tr, 2)
	if got := e.ids(key); !slices.Equal(got, all[2:]) {
		t.Fatalf("after trimming, stream holds %v, want %v (slow's pending entries and beyond)", got, all[2:])
	}

	// Nothing pending: slow needs what follows its last-delivered id.
	e.ackIDs(key, "slow", slow[2:]...)
	e.trimOnce(tr, 2)
	if got := e.ids(key); !slices.Equal(got, all[4:]) {
		t.Fatalf("after slow acked all it read, stream holds %v, want %v (never delivered to slow)", got, all[4:])
	}
	e.trimOnce(tr, 0)

	e.ackIDs(key, "slow", e.readAs(key, "slow", "s", 100)...)
	e.trimOnce(tr, 6)
	if got := e.ids(key); len(got) != 0 {
		t.Errorf("after every group acked everything, stream holds %v, want nothing", got)
	}
	// New entries after a full trim are kept until read.
	e.publish(e.publisher(), []string{"a"}, 1)
	e.trimOnce(tr, 0)
}

// TestTrimmerWaitsForUnconfiguredGroups: a group present on the stream but not in the config
// (say, a newly deployed alerter) also holds back trimming.
func TestTrimmerWaitsForUnconfiguredGroups(t *testing.T) {
	e := newEnv(t)
	e.publish(e.publisher(), []string{"a"}, 4)
	key := e.keys()[ShardFor("a", e.shards)]
	tr := e.trimmer("only")
	e.trimOnce(tr, 0) // creates "only"
	if err := e.client.XGroupCreate(context.Background(), key, "extra", "0").Err(); err != nil {
		t.Fatal(err)
	}
	e.ackIDs(key, "only", e.readAs(key, "only", "o", 100)...)
	e.trimOnce(tr, 0)
	if n := len(e.ids(key)); n != 4 {
		t.Fatalf("stream holds %d entries, want 4: group extra has read nothing", n)
	}
	e.ackIDs(key, "extra", e.readAs(key, "extra", "x", 3)...)
	e.trimOnce(tr, 3)
}

// TestTrimmerRun trims in the background until cancelled.
func TestTrimmerRun(t *testing.T) { onRedisAndCluster(t, testTrimmerRun) }

func testTrimmerRun(t *testing.T, e *env) {
	e.publish(e.publisher(), []string{"a"}, 3)
	key := e.keys()[ShardFor("a", e.shards)]
	tr, err := NewTrimmer(e.client, TrimmerConfig{Prefix: e.prefix, Shards: e.shards, Groups: []string{"g"}, Interval: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tr.Run(ctx) }()
	testenv.Eventually(t, 5*time.Second, func() string {
		if g, err := e.client.XInfoGroups(context.Background(), key).Result(); err != nil || len(g) != 1 {
			return fmt.Sprintf("group g not created by Run: groups %v, err %v", g, err)
		}
		return ""
	})
	e.ackIDs(key, "g", e.readAs(key, "g", "c", 100)...)
	testenv.Eventually(t, 5*time.Second, func() string {
		if len(e.ids(key)) == 0 {
			return ""
		}
		return "acked entries not trimmed by Run"
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}
