package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Prefix is prepended to every Redis key.
	Prefix string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
	// Shards is the number of metrics streams; 0 means 4. Every publisher and consumer of a
	// deployment must use the same value, or agents change shards.
	Shards int `env:"STREAM_SHARDS" envDefault:"4" help:"number of metrics streams (shards); the same for every binary"`
}

// setDefaults fills the zero fields from their envDefault tags, the one place the defaults are
// written (config.Defaults).
func (c *PublisherConfig) setDefaults() error { return config.Defaults(c) }

// Validate reports a configuration that cannot work.
func (c PublisherConfig) Validate() error {
	if c.Shards < 0 || c.Shards > 1024 {
		return fmt.Errorf("STREAM_SHARDS=%d: want 1 to 1024", c.Shards)
	}
	return nil
}

// Publisher appends one entry per agent batch to the agent's shard stream, in Watermill's message
// format, through watermill-redisstream's Publisher (so any Watermill subscriber can read it). It
// never trims on publish: trimming is the Trimmer's job, below what every group acked.
//
// A Publisher does not own its Redis client and has no Close method: Watermill's Publisher.Close
// closes the client it was given, which other parts of the binary share, so it is never called. The
// caller closes the client after the last Publish has returned. Publish is safe for concurrent use.
type Publisher struct {
	wm     *redisstream.Publisher
	keys   []string
	logger *slog.Logger
}

// NewPublisher returns a Publisher writing through client. Zero config fields take their defaults.
// A nil logger discards logs.
func NewPublisher(client redis.UniversalClient, cfg PublisherConfig, logger *slog.Logger) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("creating stream publisher: nil redis client")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("creating stream publisher: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating stream publisher: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "stream.publisher")
	wm, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client: client,
		// Maxlens and DefaultMaxlen stay 0: XADD MAXLEN ~ would delete entries no group has read.
	}, watermill.NewSlogLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("creating watermill publisher: %w", err)
	}
	return &Publisher{wm: wm, keys: StreamKeys(cfg.Prefix, cfg.Shards), logger: logger}, nil
}

// Publish appends payload, one batch of agentID's points, to the agent's shard stream, as a
// Watermill message with a new UUID and metadata meta plus MetaAgent=agentID. It returns once Redis
// has stored the entry, or with the Redis error (unreachable, OOM under maxmemory, ctx done): the
// caller must then treat the batch as not accepted. meta is not modified.
func (p *Publisher) Publish(ctx context.Context, agentID string, payload []byte, meta map[string]string) error {
	if agentID == "" {
		return errors.New("publishing batch: empty agent id")
	}
	msg := message.NewMessage(uuid.NewString(), payload)
	msg.Metadata = make(message.Metadata, len(meta)+1)
	for k, v := range meta {
		msg.Metadata[k] = v
	}
	msg.Metadata[MetaAgent] = agentID
	msg.SetContext(ctx) // the Watermill publisher sends its XADD with the message's context
	key := p.keys[ShardFor(agentID, len(p.keys))]
	if err := p.wm.Publish(key, msg); err != nil {
		return fmt.Errorf("publishing batch of agent %s to %s: %w", agentID, key, err)
	}
	return nil
}

// Streams returns the keys of the streams the publisher writes to, in shard order.
func (p *Publisher) Streams() []string { return append([]string(nil), p.keys...) }
