// Package stream is the Redis Streams layer: the Watermill publisher that appends agent batches to
// sharded streams, the batch consumer that reads, acks, reclaims and dead-letters many entries at a
// time on go-redis, and the trimmer that deletes only what every consumer group has acked.
package stream

import (
	"context"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Metadata keys set by the gateway on every metrics entry.
const (
	// MetaAgent is the agent id the batch belongs to.
	MetaAgent = "agent"
	// MetaReceivedAt is when the gateway accepted the batch, Unix nanoseconds in decimal.
	MetaReceivedAt = "received_at"
	// MetaPoints is the number of points in the payload, in decimal.
	MetaPoints = "points"
)

// Fields of a dead-letter entry (see DeadLetterKey). The Watermill wire fields of the original entry
// (FieldUUID, FieldPayload, FieldMetadata) are copied verbatim when present, so a dead-letter entry is
// itself decodable by Watermill's unmarshaller and can be replayed by XADDing those fields back.
const (
	// FieldStream is the key of the stream the entry came from.
	FieldStream = "stream"
	// FieldID is the id the entry had in that stream.
	FieldID = "id"
	// FieldGroup is the consumer group that gave up on the entry.
	FieldGroup = "group"
	// FieldConsumer is the consumer that moved the entry.
	FieldConsumer = "consumer"
	// FieldReason says why the entry was dead-lettered.
	FieldReason = "reason"
	// FieldDeliveries is the entry's delivery count when it was dead-lettered, in decimal.
	FieldDeliveries = "deliveries"
	// FieldUUID is Watermill's message UUID field.
	FieldUUID = "_watermill_message_uuid"
	// FieldPayload is Watermill's payload field.
	FieldPayload = "payload"
	// FieldMetadata is Watermill's metadata field (msgpack).
	FieldMetadata = "metadata"
	// FieldRaw holds, for an entry that could not be decoded, every field of the original entry as a
	// JSON object of strings.
	FieldRaw = "raw"
)

// Message is one stream entry handed to a batch handler. Msg is the decoded Watermill message:
// for metrics entries its payload is canonical line protocol, one point per line, every point
// carrying the tag agent and a nanosecond timestamp.
type Message struct {
	Stream     string // the Redis key of the stream the entry came from
	ID         string // the entry id
	Deliveries int64  // how many times the entry has been delivered, this time included
	Msg        *message.Message

	reject error
}

// Reject marks the message as permanently unprocessable. When the handler then returns nil, the
// consumer moves the message to the dead-letter stream with err as the reason and acks it. When the
// handler returns an error the mark is cleared: the whole batch is retried and the handler decides
// again.
func (m *Message) Reject(err error) { m.reject = err }

// Rejected returns the reason given to Reject, or nil.
func (m *Message) Rejected() error { return m.reject }

// Handler processes one batch of messages, in stream order within each stream.
//
// Returning nil means the effect of every message not Rejected is durable: the consumer dead-letters
// the Rejected ones, then acks the whole batch. A non-nil error is transient: nothing is acked and the
// consumer retries the same batch with backoff until it succeeds or the consumer stops; an error that
// implements RetryAfterError sets the wait before the next attempt. Permanent per-message failures
// are reported with Reject, never with an error, or the batch would be retried forever.
//
// ctx is not cancelled when the consumer starts shutting down, only DrainTimeout later, so that the
// batch in hand can still be flushed. A handler must bound its own calls (timeouts): while it runs,
// the consumer keeps the batch claimed so that no other consumer takes it over.
type Handler func(ctx context.Context, batch []*Message) error

// RetryAfterError is implemented by handler errors that know when to try again (an HTTP 429 or 503
// with Retry-After, for instance). A positive RetryAfter replaces the consumer's own backoff delay.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// StreamKeys returns the keys of the metrics streams: prefix+"metrics:{0}" … prefix+"metrics:{shards-1}".
// The braces are a Redis Cluster hash tag, so that shards spread over the cluster's slots. A shard
// count below 1 counts as 1.
func StreamKeys(prefix string, shards int) []string {
	shards = max(shards, 1)
	keys := make([]string, shards)
	for i := range keys {
		keys[i] = prefix + "metrics:{" + strconv.Itoa(i) + "}"
	}
	return keys
}

// ShardFor returns the shard in [0, shards) that agentID's batches go to: the 32-bit FNV-1a hash of
// the id modulo shards. The mapping is stable across processes and releases, so an agent's batches
// always land on the same stream, in order. A shard count below 1 counts as 1.
func ShardFor(agentID string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(agentID))
	return int(h.Sum32() % uint32(shards))
}

// DeadLetterKey returns the key of the dead-letter stream: prefix+"metrics:dead". Entries that can
// never be processed are appended there with the fields Field*, and acked on their own stream.
// The gateway's trimmer deletes entries older than DEAD_LETTER_MAX_AGE; an operator replays them
// (ReplayDeadLetters) before that.
//
// There is one dead-letter stream for all shards (dead letters are rare: its one slot is no hot
// spot, and the list and replay API read one stream). On Redis Cluster it is not in a shard's slot,
// so the consumer appends the dead letter and then acks the entry on its shard, two commands and no
// MULTI, as it always did: a crash between them redelivers the entry, which can then be
// dead-lettered a second time (a duplicate dead letter, never a lost entry).
func DeadLetterKey(prefix string) string {
	return prefix + "metrics:dead"
}
