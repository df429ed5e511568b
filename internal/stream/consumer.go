package stream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// before handing it over. It is timed on the client side, never as a server-side BLOCK.
	MaxWait time.Duration `env:"STREAM_MAX_WAIT" envDefault:"200ms" help:"how long to keep reading to fill a batch before handing it over"`
	// Block is how long one idle read waits for new entries when there are none (an XADD wakes it
	// at once; only the timeout waits for Redis's clock). It also bounds how long shutdown waits
	// for a read in flight: go-redis does not interrupt a blocked read on cancellation.
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
// Reading. Blocking readers wait for new entries with a long XREADGROUP … BLOCK (cfg.Block), which
// an XADD wakes at once; they feed an inbox from which the consumer assembles batches, and read
// again once the consumer has taken what they put there. Once the first entry of a batch is in
// hand, the consumer waits for more (up to MaxWait or BatchSize) on its own clock, taking the
// inbox every MaxWait/4 (so that a trickle of entries makes a few reads per batch, not one per
// XADD), never with a short server-side BLOCK: Redis times a BLOCK out only when its event
// loop wakes (hz 10: up to 100 ms late), so short BLOCKs made the lightest load the slowest. On a
// single Redis (or through Sentinel) one reader covers every stream with one multi-key XREADGROUP.
// On Redis Cluster (a *redis.ClusterClient) every command names one stream, so that it stays in
// one slot: one reader per stream (each holds a connection to the stream's node while it waits:
// with many shards, size the client's pool_size above the number of streams per node), and the
// resume, reclaim, delivery-count, ack and claim-refresh calls are made per stream, pipelined (the
// cluster client sends a pipeline's commands node by node). Entries of one stream are handed over
// in stream order.
//
// The Consumer does not own its client: the caller closes it after Run has returned.
type Consumer struct {
	client   redis.UniversalClient
	cfg      ConsumerConfig
	keys     []string
	readSets [][]string // the streams each blocking reader covers
	replay   string     // the group's replay stream (one of keys), "" when it reads cfg.Streams
	deadKey  string
	// checkShards is set when the consumer reads the metrics shards: Run then refuses to start
	// while shards beyond cfg.Shards hold entries some group has not handled (ShardsBeyond).
	checkShards bool
	handler     Handler
	logger      *slog.Logger
	metrics     *consumerMetrics
	running     atomic.Bool

	// inbox holds the entries the readers read and no batch has taken yet; they are ours in the
	// PEL and are kept claimed with the batch in hand.
	inbox     *inbox
	lastClaim time.Time
}

// entry is one stream entry as read, before decoding. values is nil when the entry was deleted
// from the stream while still pending.
type entry struct {
	stream     string
	id         string
	values     map[string]any
	deliveries int64
	reader     int // the reader that read it, for the inbox's accounting
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
	logger = logger.With("component", "stream.consumer", "group", cfg.Group, "consumer", cfg.Consumer)
	readSets := [][]string{keys}
	if _, ok := client.(*redis.ClusterClient); ok {
		// A multi-key XREADGROUP is refused across slots (CROSSSLOT), and a blocked read waits on
		// one node only: one reader per stream.
		readSets = make([][]string, len(keys))
		for i, k := range keys {
			readSets[i] = []string{k}
		}
	}
	return &Consumer{
		client:      client,
		cfg:         cfg,
		keys:        keys,
		readSets:    readSets,
		replay:      replayKey,
		deadKey:     cmp.Or(cfg.DeadLetter, DeadLetterKey(cfg.Prefix)),
		checkShards: slices.Contains(keys, StreamKeys(cfg.Prefix, cfg.Shards)[0]),
		handler:     h,
		logger:      logger,
		metrics:     metrics,
		inbox:       newInbox(len(readSets)),
	}, nil
}

// Run consumes until ctx is done, then returns nil. Redis errors are logged and retried with
// backoff; they never end Run. A consumer of the metrics shards returns an error at once (a
// *ShardsBeyondError) when streams of shards beyond cfg.Shards hold entries some group has not
// acked: it would never read them. On cancellation Run stops reading, lets the batch in hand finish
// (the handler's context lives DrainTimeout longer than ctx) and acks it if the handler succeeded;
// what was not processed stays pending for this consumer name, to be resumed at the next start
// or reclaimed by another copy. Run may be called once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("stream consumer: Run called twice")
	}
	c.logger.Info("consumer starting", "streams", len(c.keys), "readers", len(c.readSets), "batch_size", c.cfg.BatchSize)
	if !c.ensureGroups(ctx) {
		return nil
	}
	if c.checkShards {
		if err := c.refuseShardsBeyond(ctx); err != nil {
			return err
		}
	}
	c.resumeOwnPending(ctx)
	c.warnPoolSize(ctx)

	var readers sync.WaitGroup
	for r, keys := range c.readSets {
		readers.Go(func() { c.read(ctx, r, keys) })
	}
	for ctx.Err() == nil {
		if time.Since(c.lastClaim) >= c.cfg.ClaimInterval {
			c.reclaim(ctx)
			c.lastClaim = time.Now()
			continue
		}
		if batch := c.fill(ctx); len(batch) > 0 {
			c.process(ctx, batch)
		}
	}
	readers.Wait() // each returns once its read in flight (at most Block) is back
	if n := c.inbox.len(); n > 0 {
		c.logger.Info("entries read but not handled stay pending for this consumer", "entries", n)
	}
	c.logger.Info("consumer stopped")
	return nil
}

// warnPoolSize warns when, on Redis Cluster, the readers blocked on one node would take more than
// half of that node's connection pool, leaving too few for everything else the binary does.
func (c *Consumer) warnPoolSize(ctx context.Context) {
	cc, ok := c.client.(*redis.ClusterClient)
	if !ok {
		return
	}
	pool := cc.Options().PoolSize
	perNode := map[string]int{}
	for _, k := range c.keys {
		if node, err := cc.MasterForKey(ctx, k); err == nil {
			perNode[node.Options().Addr]++
		}
	}
	for node, n := range perNode {
		if pool > 0 && n > pool/2 {
			c.logger.Warn("the readers of this node's streams each hold a connection while they wait: raise pool_size in REDIS_URL",
				"node", node, "streams", n, "pool_size", pool)
		}
	}
}

// refuseShardsBeyond returns an error when streams of shards beyond cfg.Shards hold entries that
// some group has not handled (the shard count was lowered without draining), and warns about
// fully handled ones. Redis errors are retried until ctx is done.
func (c *Consumer) refuseShardsBeyond(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		unhandled, handled, err := ShardsBeyond(ctx, c.client, c.cfg.Prefix, c.cfg.Shards)
		if err == nil {
			if len(handled) > 0 {
				c.logger.Warn("streams beyond STREAM_SHARDS hold only handled entries; delete them", "streams", handled)
			}
			if len(unhandled) > 0 {
				return fmt.Errorf("refusing to start: %w", &ShardsBeyondError{Shards: c.cfg.Shards, Streams: unhandled})
			}
			return nil
		}
		c.logger.Warn("checking for streams beyond STREAM_SHARDS failed", "err", err)
		if !sleep(ctx, c.backoff(attempt)) {
			return nil
		}
	}
}

// read is reader r: until ctx is done it reads new entries (">") of its streams with a long
// blocking XREADGROUP (cfg.Block) and puts them in the inbox. It reads again only once the
// consumer has taken everything it put there, so the inbox holds at most BatchSize entries per
// stream.
func (c *Consumer) read(ctx context.Context, r int, keys []string) {
	args := make([]string, 0, 2*len(keys))
	args = append(args, keys...)
	for range keys {
		args = append(args, ">")
	}
	for failures := 0; ctx.Err() == nil; {
		select {
		case <-ctx.Done():
			return
		case <-c.inbox.credit[r]:
		}
		// Not ctx: a read cut short by cancellation loses its reply, and with it entries Redis has
		// already moved to this consumer's PEL. Block bounds the wait instead.
		res, err := c.client.XReadGroup(context.WithoutCancel(ctx), &redis.XReadGroupArgs{
			Group: c.cfg.Group, Consumer: c.cfg.Consumer, Streams: args,
			Count: int64(c.cfg.BatchSize), Block: c.cfg.Block,
		}).Result()
		var got []entry
		for _, s := range res {
			for _, m := range s.Messages {
				got = append(got, entry{stream: s.Stream, id: m.ID, values: m.Values, deliveries: 1, reader: r})
			}
		}
		c.inbox.put(r, got)
		if err == nil || errors.Is(err, redis.Nil) {
			failures = 0
			continue
		}
		c.logger.Warn("reading streams failed", "streams", keys, "err", err)
		if isNoGroup(err) {
			if err := createGroups(ctx, c.client, keys, c.cfg.Group); err != nil {
				c.logger.Warn("creating consumer groups failed", "err", err)
			}
		}
		sleep(ctx, c.backoff(failures))
		failures++
	}
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
// and never acked (XREADGROUP with id 0 returns the consumer's own PEL): one XREADGROUP per stream,
// all in one pipeline per round.
func (c *Consumer) resumeOwnPending(ctx context.Context) {
	cursors := make(map[string]string, len(c.keys))
	active := append([]string(nil), c.keys...)
	for _, k := range active {
		cursors[k] = "0"
	}
	resumed := 0
	for failures := 0; len(active) > 0 && ctx.Err() == nil; {
		rctx := context.WithoutCancel(ctx)
		pipe := c.client.Pipeline()
		cmds := make([]*redis.XStreamSliceCmd, len(active))
		for i, k := range active {
			cmds[i] = pipe.XReadGroup(rctx, &redis.XReadGroupArgs{
				Group: c.cfg.Group, Consumer: c.cfg.Consumer, Streams: []string{k, cursors[k]},
				Count: int64(c.cfg.BatchSize), Block: -1,
			})
		}
		_, err := pipe.Exec(rctx)
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
		for _, cmd := range cmds {
			for _, s := range cmd.Val() {
				if len(s.Messages) == 0 {
					continue
				}
				cursors[s.Stream] = s.Messages[len(s.Messages)-1].ID
				next = append(next, s.Stream)
				for _, m := range s.Messages {
					batch = append(batch, entry{stream: s.Stream, id: m.ID, values: m.Values})
				}
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

// fill assembles the next batch from the inbox: it waits for a first entry until the next
// reclaim is due or ctx is done (nil), then for more until it has BatchSize of them or MaxWait has
// passed since the first. Both waits are on the client side: the readers' blocked reads return as
// soon as an XADD arrives. With ctx done it returns what it has, to be handled within the drain.
func (c *Consumer) fill(ctx context.Context) []entry {
	claim := time.NewTimer(time.Until(c.lastClaim.Add(c.cfg.ClaimInterval)))
	defer claim.Stop()
	for c.inbox.len() == 0 {
		select {
		case <-c.inbox.ready:
		case <-claim.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	batch := c.inbox.take(c.cfg.BatchSize)
	wait := time.NewTimer(c.cfg.MaxWait)
	defer wait.Stop()
	// While the batch fills, take what the readers read every MaxWait/4, or at once when what
	// they read completes the batch, rather than at each arrival: a reader reads again only once its
	// entries are taken, so under a steady trickle this makes a few large reads per batch where
	// there was one per XADD, each a round trip and CPU in the worker and in Redis (at 2000
	// entries/s a worker made about as many reads as entries). An entry that arrives meanwhile,
	// and a batch completed by entries read one at a time, wait at most one tick longer, never
	// past MaxWait: the batch takes what is there when MaxWait ends.
	pace := time.NewTicker(max(c.cfg.MaxWait/4, time.Millisecond))
	defer pace.Stop()
	for len(batch) < c.cfg.BatchSize {
		select {
		case <-c.inbox.ready:
			if c.inbox.len() >= c.cfg.BatchSize-len(batch) {
				batch = append(batch, c.inbox.take(c.cfg.BatchSize-len(batch))...)
			}
		case <-pace.C:
			batch = append(batch, c.inbox.take(c.cfg.BatchSize-len(batch))...)
		case <-wait.C:
			return append(batch, c.inbox.take(c.cfg.BatchSize-len(batch))...)
		case <-ctx.Done():
			return batch
		}
	}
	return batch
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
		msgs = make([]*Message, 0, len(entries))
		raw  = make([]entry, 0, len(entries)) // raw[i] is the entry behind msgs[i]
		dead []deadLetter
		dec  = newDecoder()
		// One allocation for the batch's Messages rather than one each.
		backing = make([]Message, len(entries))
	)
	for _, e := range entries {
		switch {
		case e.values == nil:
			c.logger.Warn("pending entry was deleted from its stream before it was handled; acking it", "stream", e.stream, "id", e.id)
		case e.deliveries > int64(c.cfg.MaxDeliveries):
			dead = append(dead, deadLetter{e: e, class: "max_deliveries",
				reason: fmt.Sprintf("exceeded %d deliveries", c.cfg.MaxDeliveries)})
		default:
			msg, err := decode(dec, e.values)
			if err != nil {
				dead = append(dead, deadLetter{e: e, class: "undecodable", reason: "undecodable entry: " + err.Error()})
				continue
			}
			m := &backing[len(msgs)]
			*m = Message{Stream: e.stream, ID: e.id, Deliveries: e.deliveries, Msg: msg}
			msgs = append(msgs, m)
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

// decode turns an entry's fields into a Watermill message (see decoder). A panic in the msgpack
// library must not stop the consumer: it makes the entry undecodable.
func decode(d *decoder, values map[string]any) (msg *message.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("unmarshalling: %v", r)
		}
	}()
	return d.decode(values)
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

// keepClaimed re-claims the batch and the entries waiting in the inbox for this consumer every
// ClaimMinIdle/4 while the batch is in hand (XCLAIM … JUSTID per stream, pipelined, which resets the
// idle time without counting a delivery), so that no other consumer reclaims them while the handler
// works or retries. The returned function stops it and waits for it.
func (c *Consumer) keepClaimed(ctx context.Context, entries []entry) func() {
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
			for stream, ids := range idsByStream(append(c.inbox.snapshot(), entries...)) {
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
