package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReplayKey returns the key of group's replay stream: prefix+"replay:"+group. A Consumer of group
// reads it besides its streams, so a dead letter replayed there is delivered again to that group
// only, never re-appended to the shared metrics streams the other groups read.
func ReplayKey(prefix, group string) string {
	return prefix + "replay:" + group
}

// DeadLetter is one entry of a dead-letter stream, as an operator sees it.
type DeadLetter struct {
	// ID is the dead letter's own id in the dead-letter stream (what replay takes).
	ID string `json:"id"`
	// Time is when it was dead-lettered (from ID).
	Time time.Time `json:"time"`
	// Stream and EntryID are where the entry was read; Group and Consumer who gave up on it.
	Stream     string `json:"stream"`
	EntryID    string `json:"entry_id"`
	Group      string `json:"group"`
	Consumer   string `json:"consumer"`
	Reason     string `json:"reason"`
	Deliveries int64  `json:"deliveries"`
	// Replayable is false when the entry kept neither Watermill fields nor raw values.
	Replayable bool `json:"replayable"`
}

func deadLetterOf(m redis.XMessage) DeadLetter {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	d := DeadLetter{ID: m.ID, Stream: s(FieldStream), EntryID: s(FieldID), Group: s(FieldGroup),
		Consumer: s(FieldConsumer), Reason: s(FieldReason)}
	d.Deliveries, _ = strconv.ParseInt(s(FieldDeliveries), 10, 64)
	if ms, _, ok := strings.Cut(m.ID, "-"); ok {
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
			d.Time = time.UnixMilli(n).UTC()
		}
	}
	_, hasPayload := m.Values[FieldPayload]
	_, hasRaw := m.Values[FieldRaw]
	d.Replayable = d.Group != "" && (hasPayload || hasRaw)
	return d
}

// ListDeadLetters returns the dead letters of key, newest first, skipping offset and returning at
// most limit, with the total count.
func ListDeadLetters(ctx context.Context, client redis.UniversalClient, key string, limit, offset int) ([]DeadLetter, int, error) {
	total, err := client.XLen(ctx, key).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("counting dead letters in %s: %w", key, err)
	}
	out := []DeadLetter{}
	if offset >= int(total) || limit <= 0 {
		return out, int(total), nil
	}
	msgs, err := client.XRevRangeN(ctx, key, "+", "-", int64(offset+limit)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("reading dead letters from %s: %w", key, err)
	}
	for i := offset; i < len(msgs); i++ {
		out = append(out, deadLetterOf(msgs[i]))
	}
	return out, int(total), nil
}

// CountDeadLettersByGroup counts the dead letters of key per group, reading it in pages.
func CountDeadLettersByGroup(ctx context.Context, client redis.UniversalClient, key string) (map[string]int, error) {
	counts := map[string]int{}
	start := "-"
	for {
		msgs, err := client.XRangeN(ctx, key, start, "+", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("reading dead letters from %s: %w", key, err)
		}
		for _, m := range msgs {
			g, _ := m.Values[FieldGroup].(string)
			counts[g]++
		}
		if len(msgs) < 1000 {
			return counts, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// Replayed is one dead letter handed back to its group.
type Replayed struct {
	DeadLetter
	// ReplayID is the id of the new entry in the group's replay stream.
	ReplayID string `json:"replay_id"`
}

// ErrNotFound names a dead-letter id that is not in the stream.
var ErrNotFound = errors.New("no such dead letter")

// ReplayDeadLetters appends each chosen dead letter of deadKey to its group's replay stream
// (ReplayKey) with its original Watermill fields (or, for an undecodable one, its raw fields), then
// deletes it from deadKey. With all set every dead letter is replayed, else those with the given
// ids (an unknown id: ErrNotFound, nothing replayed). A replayed entry that fails again is
// dead-lettered again by the consumer.
//
// The two streams sit in different Redis Cluster slots, so the append and the delete are two
// commands, not one MULTI: the append comes first, so a dead letter is never lost; if the delete
// fails (the error is returned) it stays in deadKey too, and a second replay would hand it to its
// group twice, which the groups' idempotent handling absorbs.
func ReplayDeadLetters(ctx context.Context, client redis.UniversalClient, prefix, deadKey string, ids []string, all bool) ([]Replayed, error) {
	var msgs []redis.XMessage
	if all {
		var err error
		if msgs, err = client.XRange(ctx, deadKey, "-", "+").Result(); err != nil {
			return nil, fmt.Errorf("reading dead letters from %s: %w", deadKey, err)
		}
	} else {
		for _, id := range ids {
			m, err := client.XRange(ctx, deadKey, id, id).Result()
			if err != nil {
				return nil, fmt.Errorf("reading dead letter %s: %w", id, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
			}
			msgs = append(msgs, m[0])
		}
	}
	out := []Replayed{}
	for _, m := range msgs {
		d := deadLetterOf(m)
		if !d.Replayable {
			continue
		}
		values := replayValues(m.Values)
		replayID, err := client.XAdd(ctx, &redis.XAddArgs{Stream: ReplayKey(prefix, d.Group), Values: values}).Result()
		if err != nil {
			return out, fmt.Errorf("replaying dead letter %s to group %s: %w", m.ID, d.Group, err)
		}
		out = append(out, Replayed{DeadLetter: d, ReplayID: replayID})
		if err := client.XDel(ctx, deadKey, m.ID).Err(); err != nil {
			return out, fmt.Errorf("deleting dead letter %s after replaying it to group %s as %s (it is in both now): %w", m.ID, d.Group, replayID, err)
		}
	}
	return out, nil
}

// replayValues rebuilds the entry a consumer reads: the Watermill fields, or the raw fields of an
// undecodable entry.
func replayValues(v map[string]any) []any {
	var out []any
	for _, f := range []string{FieldUUID, FieldPayload, FieldMetadata} {
		if x, ok := v[f]; ok {
			out = append(out, f, x)
		}
	}
	if len(out) > 0 {
		return out
	}
	if raw, ok := v[FieldRaw].(string); ok {
		if fields, err := parseRaw(raw); err == nil {
			return fields
		}
	}
	return []any{FieldRaw, v[FieldRaw]}
}

// TrimDeadLetters deletes the dead letters of key older than maxAge (XTRIM MINID); 0 keeps all.
func TrimDeadLetters(ctx context.Context, client redis.UniversalClient, key string, maxAge time.Duration, now time.Time) (int64, error) {
	if maxAge <= 0 {
		return 0, nil
	}
	minID := strconv.FormatInt(now.Add(-maxAge).UnixMilli(), 10)
	n, err := client.XTrimMinID(ctx, key, minID).Result()
	if err != nil {
		return 0, fmt.Errorf("trimming dead letters of %s older than %v: %w", key, maxAge, err)
	}
	return n, nil
}

// parseRaw turns FieldRaw (a JSON object of strings) back into XADD field-value pairs.
func parseRaw(raw string) ([]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, fmt.Errorf("decoding raw dead letter: %w", err)
	}
	if len(m) == 0 {
		return nil, errors.New("decoding raw dead letter: no fields")
	}
	out := make([]any, 0, 2*len(m))
	for k, v := range m {
		out = append(out, k, fmt.Sprint(v))
	}
	return out, nil
}
