package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func count(hs []handled, payload string) int {
	n := 0
	for _, h := range hs {
		if h.payload == payload {
			n++
		}
	}
	return n
}

// TestReplayGoesToTheDeadLetteringGroupOnly: a dead letter replayed is handled again by the group
// that dead-lettered it (from its replay stream), not by the other groups; it leaves the
// dead-letter stream and, once acked, the replay stream; if it fails again it is dead-lettered
// again.
func TestReplayGoesToTheDeadLetteringGroupOnly(t *testing.T) {
	onRedisAndCluster(t, testReplayGoesToTheDeadLetteringGroupOnly)
}

func testReplayGoesToTheDeadLetteringGroupOnly(t *testing.T, e *env) {
	p := e.publisher()
	sent := e.publish(p, []string{"good"}, 3)
	if err := p.Publish(context.Background(), "bad", []byte("bad payload"), map[string]string{MetaPoints: "1"}); err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Bool
	refuse.Store(true)
	picky, other := newRecorder(), newRecorder()
	e.start(e.consumerConfig("picky", "c"), func(ctx context.Context, b []*Message) error {
		var keep []*Message
		for _, m := range b {
			if refuse.Load() && string(m.Msg.Payload) == "bad payload" {
				m.Reject(errors.New("influxdb: database not found"))
				continue
			}
			keep = append(keep, m)
		}
		return picky.handle(ctx, keep)
	})
	e.start(e.consumerConfig("other", "c"), other.handle)
	picky.waitFor(t, len(sent), 10*time.Second)
	other.waitFor(t, len(sent)+1, 10*time.Second)
	testenv.WaitDrained(t, e.client, "picky", e.keys()...)

	dead, total, err := ListDeadLetters(context.Background(), e.client, DeadLetterKey(e.prefix), 10, 0)
	if err != nil || total != 1 || len(dead) != 1 {
		t.Fatalf("ListDeadLetters = %v, %d, %v; want one", dead, total, err)
	}
	if d := dead[0]; d.Group != "picky" || !strings.Contains(d.Reason, "database not found") || !d.Replayable || d.Time.IsZero() {
		t.Errorf("dead letter = %+v, want group picky, the reason, replayable, a time", d)
	}
	if _, err := ReplayDeadLetters(context.Background(), e.client, e.prefix, DeadLetterKey(e.prefix), []string{"1-1"}, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReplayDeadLetters(unknown id) = %v, want ErrNotFound", err)
	}

	refuse.Store(false)
	replayed, err := ReplayDeadLetters(context.Background(), e.client, e.prefix, DeadLetterKey(e.prefix), []string{dead[0].ID}, false)
	if err != nil || len(replayed) != 1 || replayed[0].ReplayID == "" {
		t.Fatalf("ReplayDeadLetters = %v, %v; want one replayed", replayed, err)
	}
	got := picky.waitFor(t, len(sent)+1, 10*time.Second)
	last := got[len(got)-1]
	if last.payload != "bad payload" || last.stream != ReplayKey(e.prefix, "picky") {
		t.Errorf("picky handled %q from %s, want the replayed entry from %s", last.payload, last.stream, ReplayKey(e.prefix, "picky"))
	}
	testenv.WaitDrained(t, e.client, "picky", ReplayKey(e.prefix, "picky"))
	testenv.WaitDrained(t, e.client, "other", e.keys()...)
	if n := count(other.all(), "bad payload"); n != 1 {
		t.Errorf("the other group handled the entry %d times, want 1 (replay is for the dead-lettering group only)", n)
	}
	if n := e.client.XLen(context.Background(), DeadLetterKey(e.prefix)).Val(); n != 0 {
		t.Errorf("dead-letter stream holds %d entries after the replay, want 0", n)
	}
	testenv.Eventually(t, 5*time.Second, func() string {
		if n := e.client.XLen(context.Background(), ReplayKey(e.prefix, "picky")).Val(); n != 0 {
			return fmt.Sprintf("replay stream holds %d entries after they were handled, want 0", n)
		}
		return ""
	})

	// Fails again: dead-lettered again, from the replay stream.
	refuse.Store(true)
	if err := p.Publish(context.Background(), "bad", []byte("bad payload"), map[string]string{MetaPoints: "1"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitDrained(t, e.client, "picky", e.keys()...)
	if _, err := ReplayDeadLetters(context.Background(), e.client, e.prefix, DeadLetterKey(e.prefix), nil, true); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() string {
		d, _, err := ListDeadLetters(context.Background(), e.client, DeadLetterKey(e.prefix), 10, 0)
		if err != nil || len(d) != 1 || d[0].Stream != ReplayKey(e.prefix, "picky") {
			return fmt.Sprintf("dead letters %+v (%v), want the replayed entry dead-lettered again from the replay stream", d, err)
		}
		return ""
	})
	counts, err := CountDeadLettersByGroup(context.Background(), e.client, DeadLetterKey(e.prefix))
	if err != nil || counts["picky"] != 1 || len(counts) != 1 {
		t.Errorf("CountDeadLettersByGroup = %v, %v; want picky:1", counts, err)
	}
}

func TestListDeadLettersPages(t *testing.T) {
	e := newEnv(t)
	key := DeadLetterKey(e.prefix)
	for i := range 5 {
		e.client.XAdd(context.Background(), &redis.XAddArgs{Stream: key, Values: []any{FieldGroup, "g", FieldReason, fmt.Sprint(i)}})
	}
	tests := []struct {
		limit, offset int
		want          string
	}{
		{2, 0, "4,3"}, {2, 2, "2,1"}, {2, 4, "0"}, {2, 5, ""}, {10, 0, "4,3,2,1,0"},
	}
	for _, tt := range tests {
		got, total, err := ListDeadLetters(context.Background(), e.client, key, tt.limit, tt.offset)
		var reasons []string
		for _, d := range got {
			reasons = append(reasons, d.Reason)
		}
		if err != nil || total != 5 || strings.Join(reasons, ",") != tt.want {
			t.Errorf("ListDeadLetters(limit %d, offset %d) = %v, %d, %v; want %s of 5", tt.limit, tt.offset, reasons, total, err, tt.want)
		}
	}
}

func TestTrimDeadLettersByAge(t *testing.T) {
	e := newEnv(t)
	key := DeadLetterKey(e.prefix)
	now := time.Now()
	for _, age := range []time.Duration{40 * 24 * time.Hour, 31 * 24 * time.Hour, 29 * 24 * time.Hour, time.Minute} {
		id := fmt.Sprintf("%d-0", now.Add(-age).UnixMilli())
		if err := e.client.XAdd(context.Background(), &redis.XAddArgs{Stream: key, ID: id, Values: []any{FieldGroup, "g"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := TrimDeadLetters(context.Background(), e.client, key, 0, now); err != nil || n != 0 {
		t.Errorf("TrimDeadLetters(max age 0) = %d, %v; want 0 (keep all)", n, err)
	}
	n, err := TrimDeadLetters(context.Background(), e.client, key, 30*24*time.Hour, now)
	if err != nil || n != 2 {
		t.Errorf("TrimDeadLetters(30d) = %d, %v; want the 2 older ones", n, err)
	}
	if l := e.client.XLen(context.Background(), key).Val(); l != 2 {
		t.Errorf("%d dead letters left, want 2", l)
	}
}

// The trimmer ages out the metrics dead letters and every other dead-letter stream it is given
// (the alert consumers'), and nothing younger than DEAD_LETTER_MAX_AGE.
func TestTrimmerAgesOutEveryDeadLetterStream(t *testing.T) {
	onRedisAndCluster(t, testTrimmerAgesOutEveryDeadLetterStream)
}

func testTrimmerAgesOutEveryDeadLetterStream(t *testing.T, e *env) {
	other := e.prefix + "alerts:poison"
	now := time.Now()
	for _, key := range []string{DeadLetterKey(e.prefix), other} {
		for _, age := range []time.Duration{40 * 24 * time.Hour, time.Minute} {
			id := fmt.Sprintf("%d-0", now.Add(-age).UnixMilli())
			if err := e.client.XAdd(context.Background(), &redis.XAddArgs{Stream: key, ID: id, Values: []any{FieldGroup, "g"}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr, err := NewTrimmer(e.client, TrimmerConfig{Prefix: e.prefix, Shards: e.shards, DeadLetterMaxAge: 30 * 24 * time.Hour,
		OtherDeadLetters: []string{other}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TrimOnce(context.Background()); err != nil {
		t.Fatalf("TrimOnce() = %v", err)
	}
	for _, key := range []string{DeadLetterKey(e.prefix), other} {
		if l := e.client.XLen(context.Background(), key).Val(); l != 1 {
			t.Errorf("XLEN %s = %d after the trim, want 1 (the 40-day-old entry gone, the new one kept)", key, l)
		}
	}
}
