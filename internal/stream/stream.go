// Package stream is the Redis Streams layer: the Watermill publisher that appends agent batches to
// sharded streams, the batch consumer that reads, acks, reclaims and dead-letters many entries at a
// time on go-redis, and the trimmer that deletes only what every consumer group has acked.
package stream

import (
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

// Reject marks the message as permanently unprocessable: the consumer moves it to the dead-letter
// stream with err as the reason and acks it, whatever the handler returns.
func (m *Message) Reject(err error) { m.reject = err }

// Rejected returns the reason given to Reject, or nil.
func (m *Message) Rejected() error { return m.reject }
