package stream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// ConsumerConfig configures a Consumer. Zero fields take the defaults in their envDefault tags.
type ConsumerConfig struct {
	// Prefix is prepended to every Redis key.
	Prefix string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
	// Shards is the number of metrics streams, the same as the publishers'.
	Shards int `env:"STREAM_SHARDS" envDefault:"4" help:"number of metrics streams (shards); the same for every binary"`
	// Streams, when set, are the keys read instead of the metrics shards (for example the alerts
	// stream); Prefix and Shards then do not choose them.
	Streams []string
	// DeadLetter, when set, is the dead-letter stream instead of DeadLetterKey(Prefix).
	DeadLetter string
	// Group is the consumer group; every copy of one binary shares it. Set by the binary.
	Group string
	// Consumer is this copy's name in the group. It must be stable across restarts, so that a
	// restarted copy resumes its own pending entries first, and unique among the live copies.
	Consumer string `env:"CONSUMER_NAME" help:"stable, unique name of this copy in its consumer group (default: chosen by the binary)"`
	// BatchSize is the most entries handed to the handler at once.
	BatchSize int `env:"STREAM_BATCH_SIZE" envDefault:"500" help:"most stream entries handed over in one batch"`
	// MaxWait is how long the consumer keeps reading to fill a batch, from the first entry read,
	// before handing it over.
	MaxWait time.Duration `env:"STREAM_MAX_WAIT" envDefault:"200ms" help:"how long to keep reading to fill a batch before handing it over"`
	// Block is how long one read waits for new entries when there are none. It also bounds how long
	// shutdown waits for a read in flight: go-redis does not interrupt a blocked read on cancellation.
	Block time.Duration `env:"STREAM_BLOCK" envDefault:"1s" help:"how long one read blocks waiting for new entries"`
	// ClaimMinIdle is how long an entry stays unacked and untouched before live consumers reclaim it
	// from the consumer that read it. The consumer refreshes its own entries' idle time while it works
	// on them, so this bounds how long a dead copy's entries wait, not how long a batch may take.
	ClaimMinIdle time.Duration `env:"STREAM_CLAIM_MIN_IDLE" envDefault:"30s" help:"idle time after which entries of a dead consumer are reclaimed"`
	// ClaimInterval is how often the consumer looks for entries to reclaim.
	ClaimInterval time.Duration `env:"STREAM_CLAIM_INTERVAL" envDefault:"5s" help:"how often to look for entries of dead consumers"`
	// MaxDeliveries is how many deliveries an entry gets; a reclaimed or resumed entry delivered more
	// often is dead-lettered instead of handed over. Retries of a failing batch in the same consumer
	// are not deliveries.
	MaxDeliveries int `env:"STREAM_MAX_DELIVERIES" envDefault:"5" help:"deliveries after which an entry is dead-lettered"`
	// RetryMin and RetryMax bound the exponential backoff between attempts at a failing batch.
	RetryMin time.Duration `env:"STREAM_RETRY_MIN" envDefault:"100ms" help:"first delay before retrying a failed batch"`
	RetryMax time.Duration `env:"STREAM_RETRY_MAX" envDefault:"30s" help:"longest delay between retries of a failed batch"`
	// DrainTimeout is how long, after shutdown begins, the batch in hand may still be handled and
	// acked before the handler's context is cancelled.
	DrainTimeout time.Duration `env:"STREAM_DRAIN_TIMEOUT" envDefault:"10s" help:"how long the batch in hand may take to finish at shutdown"`
	// Registerer receives the consumer's metrics; nil registers nothing. Several consumers may
	// share one Registerer: the metrics carry the group as a label.
	Registerer prometheus.Registerer
}

// setDefaults fills the zero fields from their envDefault tags, the one place the defaults are
// written (config.Defaults).
func (c *ConsumerConfig) setDefaults() error { return config.Defaults(c) }

// Validate reports a configuration that cannot work, naming the environment variable.
func (c ConsumerConfig) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Group != "", "consumer group is empty")
	check(c.Consumer != "", "CONSUMER_NAME is empty: each copy needs a stable name")
	check(c.Shards > 0 && c.Shards <= 1024, "STREAM_SHARDS=%d: want 1 to 1024", c.Shards)
	check(c.BatchSize > 0 && c.BatchSize <= 100_000, "STREAM_BATCH_SIZE=%d: want 1 to 100000", c.BatchSize)
	check(c.MaxWait > 0, "STREAM_MAX_WAIT=%s: want > 0", c.MaxWait)
	check(c.Block >= time.Millisecond, "STREAM_BLOCK=%s: want >= 1ms", c.Block)
	check(c.ClaimMinIdle >= 2*c.MaxWait && c.ClaimMinIdle >= 30*time.Millisecond,
		"STREAM_CLAIM_MIN_IDLE=%s: want >= 30ms and >= 2 × STREAM_MAX_WAIT (%s)", c.ClaimMinIdle, c.MaxWait)
	check(c.ClaimInterval > 0, "STREAM_CLAIM_INTERVAL=%s: want > 0", c.ClaimInterval)
	check(c.MaxDeliveries > 0, "STREAM_MAX_DELIVERIES=%d: want > 0", c.MaxDeliveries)
	check(c.RetryMin > 0 && c.RetryMax >= c.RetryMin,
		"STREAM_RETRY_MIN=%s, STREAM_RETRY_MAX=%s: want 0 < min <= max", c.RetryMin, c.RetryMax)
	check(c.DrainTimeout > 0, "STREAM_DRAIN_TIMEOUT=%s: want > 0", c.DrainTimeout)
	return errors.Join(errs...)
}

// Consumer reads the metrics streams as one member of a consumer group and hands batches of
// decoded entries to a Handler: many entries per XREADGROUP, one pipelined XACK per stream.
//
// Delivery is at least once. An entry is acked only after the handler returned nil for a batch
// holding it, or after it was copied to the dead-letter stream: when it cannot be decoded, when the
// handler Rejected it, or when it was delivered more than MaxDeliveries times. At start the consumer
// creates its group on every stream (from id 0, so nothing published before is skipped) and
// handles its own pending entries before new ones; every ClaimInterval it reclaims entries other
// consumers left idle for ClaimMinIdle. A consumer of the metrics streams (no cfg.Streams) also
// reads ReplayKey(Prefix, Group), and deletes the entries it acks there.
//
// All shard streams are read in one XREADGROUP call, which Redis Cluster refuses unless the keys
// share a slot: the Consumer supports single Redis servers (and Sentinel), not Redis Cluster.
//
// The Consumer does not own its client: the caller closes it after Run has returned.
type Consumer struct {
	client   redis.UniversalClient
	cfg      ConsumerConfig
	keys     []string
	readArgs []string // keys followed by one ">" per key
	replay   string   // the group's replay stream (one of keys), "" when it reads cfg.Streams
	deadKey  string
	handler  Handler
	logger   *slog.Logger
	metrics  *consumerMetrics
	running  atomic.Bool

	// carry holds entries read beyond BatchSize (COUNT applies per stream); they are ours in the
	// PEL and go first into the next batch.
	carry     []entry
	lastClaim time.Time
}

// entry is one stream entry as read, before decoding. values is nil when the entry was deleted
// from the stream while still pending.
type entry struct {
	stream     string
	id         string
	values     map[string]any
	deliveries int64
}

// deadLetter is an entry on its way to the dead-letter stream.
type deadLetter struct {
	e      entry
	reason string
	class  string // metrics label: rejected, undecodable, max_deliveries
}

// NewConsumer returns a Consumer of cfg.Group that hands batches to h. Zero config fields take
// their defaults; the result of Validate is returned as is. A nil logger discards logs.
func NewConsumer(client redis.UniversalClient, cfg ConsumerConfig, h Handler, logger *slog.Logger) (*Consumer, error) {
	if client == nil {
		return nil, errors.New("creating stream consumer: nil redis client")
	}
	if h == nil {
		return nil, errors.New("creating stream consumer: nil handler")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("creating stream consumer: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating stream consumer: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	metrics, err := newConsumerMetrics(cfg.Registerer, cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("creating stream consumer: %w", err)
	}
	keys := cfg.Streams
	replayKey := ""
	if len(keys) == 0 {
		// A consumer of the metrics streams also reads its group's replay stream, where the
		// operator puts back the group's dead letters (ReplayDeadLetters).
		replayKey = ReplayKey(cfg.Prefix, cfg.Group)
		keys = append(StreamKeys(cfg.Prefix, cfg.Shards), replayKey)
	}
	readArgs := append(append([]string(nil), keys...), make([]string, len(keys))...)
	for i := range keys {
		readArgs[len(keys)+i] = ">"
	}
	return &Consumer{
		client:   client,
		cfg:      cfg,
		keys:     keys,
		readArgs: readArgs,
		replay:   replayKey,
		deadKey:  cmp.Or(cfg.DeadLetter, DeadLetterKey(cfg.Prefix)),
		handler:  h,
		logger:   logger.With("component", "stream.consumer", "group", cfg.Group, "consumer", cfg.Consumer),
		metrics:  metrics,
	}, nil
}

// Run consumes until ctx is done, then returns nil. Redis errors are logged and retried with
// backoff; they never end Run. On cancellation Run stops reading, lets the batch in hand finish
// (the handler's context lives DrainTimeout longer than ctx) and acks it if the handler succeeded;
// what was not processed stays pending for this consumer name, to be resumed at the next start
// or reclaimed by another copy. Run may be called once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("stream consumer: Run called twice")
	}
	c.logger.Info("consumer starting", "streams", len(c.keys), "batch_size", c.cfg.BatchSize)
	if !c.ensureGroups(ctx) {
		return nil
	}
	c.resumeOwnPending(ctx)

	failures := 0
	for ctx.Err() == nil {
		if len(c.carry) == 0 && time.Since(c.lastClaim) >= c.cfg.ClaimInterval {
			c.reclaim(ctx)
			c.lastClaim = time.Now()
			continue
		}
		batch, err := c.fill(ctx)
		if len(batch) > 0 {
			c.process(ctx, batch)
		}
		if err == nil {
			failures = 0
			continue
		}
		c.logger.Warn("reading streams failed", "err", err)
		if isNoGroup(err) && !c.ensureGroups(ctx) {
			break
		}
		sleep(ctx, c.backoff(failures))
		failures++
	}
	if len(c.carry) > 0 {
		c.logger.Info("entries read but not handled stay pending for this consumer", "entries", len(c.carry))
	}
	c.logger.Info("consumer stopped")
	return nil
}

// ensureGroups creates the group on every stream, from id 0 so that every entry published before
// the group existed is delivered. It retries until it succeeds (true) or ctx is done (false).
func (c *Consumer) ensureGroups(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		err := createGroups(ctx, c.client, c.keys, c.cfg.Group)
		if err == nil {
			return true
		}
		c.logger.Warn("creating consumer groups failed", "err", err)
		if !sleep(ctx, c.backoff(attempt)) {
			return false
		}
	}
}

// createGroups runs XGROUP CREATE key group 0 MKSTREAM on every key; an existing group is fine.
func createGroups(ctx context.Context, client redis.UniversalClient, keys []string, group string) error {
	for _, key := range keys {
		err := client.XGroupCreateMkStream(ctx, key, group, "0").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("creating group %s on %s: %w", group, key, err)
		}
	}
	return nil
}

func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}

// resumeOwnPending hands over, in batches, the entries this consumer name read in an earlier life
// and never acked (XREADGROUP with id 0 returns the consumer's own PEL).
func (c *Consumer) resumeOwnPending(ctx context.Context) {
	cursors := make(map[string]string, len(c.keys))
	active := append([]string(nil), c.keys...)
	for _, k := range active {
		cursors[k] = "0"
	}
	resumed := 0
	for failures := 0; len(active) > 0 && ctx.Err() == nil; {
		args := append([]string(nil), active...)
		for _, k := range active {
			args = append(args, cursors[k])
		}
		res, err := c.client.XReadGroup(context.WithoutCancel(ctx), &redis.XReadGroupArgs{
			Group: c.cfg.Group, Consumer: c.cfg.Consumer, Streams: args,
			Count: int64(c.cfg.BatchSize), Block: -1,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			c.logger.Warn("reading own pending entries failed", "err", err)
			if !sleep(ctx, c.backoff(failures)) {
				return
			}
			failures++
			continue
		}
		failures = 0
		var batch []entry
		next := active[:0:0]
		for _, s := range res {
			if len(s.Messages) == 0 {
				continue
			}
			cursors[s.Stream] = s.Messages[len(s.Messages)-1].ID
			next = append(next, s.Stream)
			for _, m := range s.Messages {
				batch = append(batch, entry{stream: s.Stream, id: m.ID, values: m.Values})
			}
		}
		active = next
		resumed += len(batch)
		c.processWithDeliveries(ctx, batch)
	}
	if resumed > 0 {
		c.logger.Info("resumed own pending entries", "entries", resumed)
	}
}

// reclaim takes over, stream by stream, the entries idle for ClaimMinIdle in any consumer of the
// group (XAUTOCLAIM, following its cursor) and handles them batch by batch.
func (c *Consumer) reclaim(ctx context.Context) {
	for _, key := range c.keys {
		cursor := "0-0"
		for ctx.Err() == nil {
			msgs, next, err := c.client.XAutoClaim(context.WithoutCancel(ctx), &redis.XAutoClaimArgs{
				Stream: key, Group: c.cfg.Group, Consumer: c.cfg.Consumer,
				MinIdle: c.cfg.ClaimMinIdle, Start: cursor, Count: int64(c.cfg.BatchSize),
			}).Result()
			if err != nil {
				c.logger.Warn("reclaiming idle entries failed", "stream", key, "err", err)
				if isNoGroup(err) {
					c.ensureGroups(ctx)
				}
				break
			}
			// Redis 7 drops entries deleted from the stream from the PEL itself and reports them in
			// a third reply element that go-redis discards; older servers return them here with nil
			// values, and process acks those.
			if len(msgs) > 0 {
				c.metrics.reclaimed.Add(float64(len(msgs)))
				c.logger.Info("reclaimed idle entries", "stream", key, "entries", len(msgs))
				batch := make([]entry, len(msgs))
				for i, m := range msgs {
					batch[i] = entry{stream: key, id: m.ID, values: m.Values}
				}
				c.processWithDeliveries(ctx, batch)
			}
			if next == "0-0" || next == "" {
				break
			}
			cursor = next
		}
	}
}

// processWithDeliveries looks up the delivery count of entries that were not read with ">" and
// processes them in batches of at most BatchSize. Entries no longer pending for this consumer
// (acked or taken by another meanwhile) are left alone.
func (c *Consumer) processWithDeliveries(ctx context.Context, entries []entry) {
	for len(entries) > 0 {
		n := min(len(entries), c.cfg.BatchSize)
		batch, err := c.withDeliveries(ctx, entries[:n])
		entries = entries[n:]
		if err != nil {
			// They stay in this consumer's PEL and come back through reclaim after ClaimMinIdle.
			c.logger.Warn("reading delivery counts failed; entries left pending", "entries", n, "err", err)
			continue
		}
		if len(batch) > 0 {
			c.process(ctx, batch)
		}
	}
}

// withDeliveries fills in each entry's delivery count from the PEL (one XPENDING per entry, in one
// pipeline) and drops the entries that are not pending for this consumer.
func (c *Consumer) withDeliveries(ctx context.Context, entries []entry) ([]entry, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.DrainTimeout)
	defer cancel()
	pipe := c.client.Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(entries))
	for i, e := range entries {
		cmds[i] = pipe.XPendingExt(rctx, &redis.XPendingExtArgs{
			Stream: e.stream, Group: c.cfg.Group, Start: e.id, End: e.id, Count: 1, Consumer: c.cfg.Consumer,
		})
	}
	if _, err := pipe.Exec(rctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading delivery counts: %w", err)
	}
	out := entries[:0:0]
	for i, e := range entries {
		p := cmds[i].Val()
		if len(p) == 0 {
			continue
		}
		e.deliveries = p[0].RetryCount
		out = append(out, e)
	}
	return out, nil
}

// fill reads new entries (">") from every stream until it has BatchSize of them or MaxWait has
// passed since the first one arrived. It returns nil when Block passed with nothing to read. Entries
// already read are returned even with an error, so that they are handled.
func (c *Consumer) fill(ctx context.Context) ([]entry, error) {
	n := min(len(c.carry), c.cfg.BatchSize)
	batch := make([]entry, n, c.cfg.BatchSize)
	copy(batch, c.carry)
	c.carry = append(c.carry[:0], c.carry[n:]...)
	var deadline time.Time
	if n > 0 {
		deadline = time.Now().Add(c.cfg.MaxWait)
	}
	for len(batch) < c.cfg.BatchSize && ctx.Err() == nil {
		block := c.cfg.Block
		if !deadline.IsZero() {
			// BLOCK 0 would wait forever: hand over rather than block for less than a millisecond.
			if block = time.Until(deadline); block < time.Millisecond {
				break
			}
		}
		// Not ctx: a read cut short by cancellation loses its reply, and with it entries Redis has
		// already moved to this consumer's PEL. Block bounds the wait instead.
		res, err := c.client.XReadGroup(context.WithoutCancel(ctx), &redis.XReadGroupArgs{
			Group: c.cfg.Group, Consumer: c.cfg.Consumer, Streams: c.readArgs,
			Count: int64(c.cfg.BatchSize - len(batch)), Block: block,
		}).Result()
		if errors.Is(err, redis.Nil) {
			if len(batch) == 0 {
				return nil, nil
			}
			break
		}
		if err != nil {
			return batch, fmt.Errorf("reading new entries: %w", err)
		}
		for _, s := range res {
			for _, m := range s.Messages {
				e := entry{stream: s.Stream, id: m.ID, values: m.Values, deliveries: 1}
				if len(batch) < c.cfg.BatchSize {
					batch = append(batch, e)
				} else {
					c.carry = append(c.carry, e)
				}
			}
		}
		if len(batch) > 0 && deadline.IsZero() {
			deadline = time.Now().Add(c.cfg.MaxWait)
		}
	}
	return batch, nil
}

// process handles one batch: it sorts out deleted, over-delivered and undecodable entries, hands
// the rest to the handler until it succeeds, then dead-letters what must be and acks everything.
// If the handler never succeeds before shutdown, nothing is acked.
func (c *Consumer) process(ctx context.Context, entries []entry) {
	c.metrics.batch.Observe(float64(len(entries)))
	hctx, release := drainContext(ctx, c.cfg.DrainTimeout)
	defer release()
	stopRefresh := c.keepClaimed(ctx, entries)
	defer stopRefresh()

	var (
		msgs []*Message
		raw  []entry // raw[i] is the entry behind msgs[i]
		dead []deadLetter
	)
	for _, e := range entries {
		switch {
		case e.values == nil:
			c.logger.Warn("pending entry was deleted from its stream before it was handled; acking it", "stream", e.stream, "id", e.id)
		case e.deliveries > int64(c.cfg.MaxDeliveries):
			dead = append(dead, deadLetter{e: e, class: "max_deliveries",
				reason: fmt.Sprintf("exceeded %d deliveries", c.cfg.MaxDeliveries)})
		default:
			msg, err := decode(e.values)
			if err != nil {
				dead = append(dead, deadLetter{e: e, class: "undecodable", reason: "undecodable entry: " + err.Error()})
				continue
			}
			msgs = append(msgs, &Message{Stream: e.stream, ID: e.id, Deliveries: e.deliveries, Msg: msg})
			raw = append(raw, e)
		}
	}
	if len(msgs) > 0 {
		if !c.handle(ctx, hctx, msgs) {
			return
		}
		for i, m := range msgs {
			if err := m.Rejected(); err != nil {
				dead = append(dead, deadLetter{e: raw[i], class: "rejected", reason: err.Error()})
			}
		}
	}
	c.settle(hctx, entries, dead)
}

// decode turns an entry's fields into a Watermill message with Watermill's own unmarshaller. It
// type-asserts the values; go-redis always returns strings, but a panic must not stop the consumer.
func decode(values map[string]any) (msg *message.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("unmarshalling: %v", r)
		}
	}()
	return redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(values)
}

// handle calls the handler until it returns nil (true) or shutdown makes further attempts
// pointless (false). After cancellation it makes at most one more attempt, with the drain context.
func (c *Consumer) handle(ctx, hctx context.Context, msgs []*Message) bool {
	for attempt := 0; ; attempt++ {
		for _, m := range msgs {
			m.reject = nil
		}
		start := time.Now()
		err := c.handler(hctx, msgs)
		c.metrics.duration.Observe(time.Since(start).Seconds())
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			c.logger.Warn("batch not handled before shutdown; it stays pending", "entries", len(msgs), "err", err)
			return false
		}
		wait := c.backoff(attempt)
		var ra RetryAfterError
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			wait = ra.RetryAfter()
		}
		c.metrics.retries.Inc()
		c.logger.Warn("handler failed; retrying batch", "entries", len(msgs), "attempt", attempt+1, "wait", wait, "err", err)
		sleep(ctx, wait) // on cancellation, one last attempt follows
	}
}

// settle appends the dead letters, then acks every entry of the batch, retrying Redis errors
// until ctx (the drain context) is done. Dead letters already written are not written again.
func (c *Consumer) settle(ctx context.Context, entries []entry, dead []deadLetter) {
	for attempt := 0; ; attempt++ {
		var err error
		if dead, err = c.writeDeadLetters(ctx, dead); err == nil {
			err = c.ack(ctx, entries)
		}
		if err == nil {
			c.metrics.acked.Add(float64(len(entries)))
			return
		}
		if ctx.Err() != nil {
			c.logger.Error("acking a handled batch failed; its entries will be delivered again", "entries", len(entries), "err", err)
			return
		}
		c.logger.Warn("acking a handled batch failed; retrying", "entries", len(entries), "err", err)
		sleep(ctx, c.backoff(attempt))
	}
}

// writeDeadLetters XADDs the dead letters in one pipeline and returns those not written.
func (c *Consumer) writeDeadLetters(ctx context.Context, dead []deadLetter) ([]deadLetter, error) {
	if len(dead) == 0 {
		return nil, nil
	}
	pipe := c.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(dead))
	for i, d := range dead {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: c.deadKey, Values: c.deadLetterValues(d)})
	}
	_, err := pipe.Exec(ctx)
	var left []deadLetter
	for i, d := range dead {
		if cmds[i].Err() != nil {
			left = append(left, d)
			continue
		}
		c.metrics.dead.WithLabelValues(d.class).Inc()
		c.logger.Warn("entry dead-lettered", "stream", d.e.stream, "id", d.e.id, "deliveries", d.e.deliveries, "reason", d.reason)
	}
	if err != nil {
		return left, fmt.Errorf("writing dead letters to %s: %w", c.deadKey, err)
	}
	return nil, nil
}

func (c *Consumer) deadLetterValues(d deadLetter) []any {
	v := []any{
		FieldStream, d.e.stream,
		FieldID, d.e.id,
		FieldGroup, c.cfg.Group,
		FieldConsumer, c.cfg.Consumer,
		FieldReason, d.reason,
		FieldDeliveries, strconv.FormatInt(d.e.deliveries, 10),
	}
	for _, f := range []string{FieldUUID, FieldPayload, FieldMetadata} {
		if x, ok := d.e.values[f]; ok {
			v = append(v, f, x)
		}
	}
	if d.class == "undecodable" {
		if b, err := json.Marshal(d.e.values); err == nil {
			v = append(v, FieldRaw, string(b))
		}
	}
	return v
}

// ack XACKs the entries, one command per stream, in one pipeline.
func (c *Consumer) ack(ctx context.Context, entries []entry) error {
	pipe := c.client.Pipeline()
	for stream, ids := range idsByStream(entries) {
		pipe.XAck(ctx, stream, c.cfg.Group, ids...)
		if stream == c.replay {
			// The replay stream has this one group: a handled entry is gone for good.
			pipe.XDel(ctx, stream, ids...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("acking entries: %w", err)
	}
	return nil
}

// keepClaimed re-claims the batch and the carried entries for this consumer every ClaimMinIdle/4
// while the batch is in hand (XCLAIM … JUSTID, which resets the idle time without counting a
// delivery), so that no other consumer reclaims them while the handler works or retries. The
// returned function stops it and waits for it.
func (c *Consumer) keepClaimed(ctx context.Context, entries []entry) func() {
	all := append(append([]entry(nil), entries...), c.carry...)
	byStream := idsByStream(all)
	every := c.cfg.ClaimMinIdle / 4
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			pipe := c.client.Pipeline()
			for stream, ids := range byStream {
				pipe.XClaimJustID(rctx, &redis.XClaimArgs{Stream: stream, Group: c.cfg.Group, Consumer: c.cfg.Consumer, Messages: ids})
			}
			if _, err := pipe.Exec(rctx); err != nil && !errors.Is(err, redis.Nil) {
				c.logger.Warn("refreshing the claim on the batch in hand failed", "err", err)
			}
			cancel()
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

func idsByStream(entries []entry) map[string][]string {
	m := make(map[string][]string)
	for _, e := range entries {
		m[e.stream] = append(m[e.stream], e.id)
	}
	return m
}

// backoff returns the delay before retry number attempt (from 0): RetryMin doubled per attempt up
// to RetryMax, with jitter over its upper half so that copies retrying together spread out.
// Hand-written: it is four lines, and the retry loop must also honour Retry-After and keep the
// batch claimed, which the retry libraries' loops do not let us interleave.
func (c *Consumer) backoff(attempt int) time.Duration {
	d := c.cfg.RetryMax
	if attempt < 32 && c.cfg.RetryMin<<attempt < c.cfg.RetryMax && c.cfg.RetryMin<<attempt > 0 {
		d = c.cfg.RetryMin << attempt
	}
	return d/2 + rand.N(d/2+1)
}

// drainContext returns a context that is not cancelled with ctx but grace after it, so that work
// in hand at shutdown can finish within a bound. release frees its resources.
func drainContext(ctx context.Context, grace time.Duration) (context.Context, func()) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var timer atomic.Pointer[time.Timer]
	stop := context.AfterFunc(ctx, func() { timer.Store(time.AfterFunc(grace, cancel)) })
	return dctx, func() {
		stop()
		if t := timer.Load(); t != nil {
			t.Stop()
		}
		cancel()
	}
}

// sleep waits for d or until ctx is done; it reports whether the full wait elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
