// Package notify delivers alert transitions to webhook notification channels: it consumes the
// alerts stream in the consumer group "notifier" on Watermill's router (retry with backoff, a
// poison queue, panic recovery), holds back silenced transitions, and posts the Alertmanager v4
// webhook body, signed with the channel's secret, once per transition and channel however many
// copies run and however often an entry is redelivered.
//
// # Once per transition and channel
//
// Delivery to one channel goes through three Redis keys under the prefix:
//
//   - notify:lock:<alert id>:<channel id>, taken with SET NX before the POST and released after
//     it: two copies (or two deliveries of a redelivered entry) never post to a channel for the
//     same alert at the same time, and the transitions of one alert reach a channel one by one.
//   - notified:<event id>:<channel id>, set (30 days) after a 2xx: a retry, a redelivery or a
//     restart after a crash skips that channel for that transition.
//   - notify:last:<alert id>:<channel id>, the sample time of the newest transition delivered: a
//     transition older than one already delivered (a firing overtaken by its resolve on another
//     copy) is skipped instead of leaving the receiver with a stale state.
//
// What remains is the window between a receiver's 2xx and the marker write: a crash (or a Redis
// outage) there sends that transition to that channel again on redelivery. Within one process a
// failed marker write is remembered, so its own retries do not resend.
//
// # Shutdown
//
// When Run's context is done, no new entry is started (a further entry is held, unacked, for a
// restart or another copy), retry waits and lock waits of the entries in hand end at once, a POST
// in flight is allowed to finish (at most WebhookTimeout) so that its marker is written, the
// router acknowledges what completed, and then the router and both Redis clients of Run close.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/silence"
)

// Group is the consumer group of the notifier on the alerts stream.
const Group = "notifier"

// PoisonKey is the stream that receives, with the reason in the metadata key
// middleware.ReasonForPoisonedKey ("reason_poisoned"), the alerts-stream entries the notifier
// gave up on: undecodable ones, and deliveries still failing after the retries.
func PoisonKey(prefix string) string { return prefix + "alerts:poison" }

// MarkerKey is the key that records that transition eventID reached channelID.
func MarkerKey(prefix, eventID, channelID string) string {
	return prefix + "notified:" + eventID + ":" + channelID
}

func lockKey(prefix, alertID, channelID string) string {
	return prefix + "notify:lock:" + alertID + ":" + channelID
}

func lastKey(prefix, alertID, channelID string) string {
	return prefix + "notify:last:" + alertID + ":" + channelID
}

// Fixed parts of the timing; the rest is Config.
const (
	markerTTL = 30 * 24 * time.Hour
	// lockMargin is added to WebhookTimeout for the lock's TTL, so that a lock never expires
	// under a POST in flight.
	lockMargin = 5 * time.Second
	// sourceTimeout bounds one read of the channels or silences.
	sourceTimeout = 5 * time.Second
	// redisTimeout bounds the Redis writes made after a POST, which must not be cut short by
	// shutdown.
	redisTimeout = 5 * time.Second
	// nackResendSleep is how long the subscriber waits before handing a nacked entry over
	// again (a poison-queue publish that failed); 0 would resend at once, forever.
	nackResendSleep = 500 * time.Millisecond
	// ackGrace bounds how long shutdown waits for the acknowledgements of completed entries.
	ackGrace = 2 * time.Second
	// retryJitter spreads the retries of copies that failed together.
	retryJitter = 0.2
)

// Config configures a Notifier. Prefix and Consumer are set by the binary; the rest is read from
// the environment.
type Config struct {
	// Prefix is prepended to every Redis key (REDIS_KEY_PREFIX of the binary).
	Prefix string
	// Consumer is this copy's name in the group: stable across restarts (a restarted copy
	// resumes its own pending entries first) and unique among live copies. Required.
	Consumer string

	// WebhookTimeout bounds one POST, from connecting to reading the answer.
	WebhookTimeout time.Duration `env:"NOTIFIER_WEBHOOK_TIMEOUT" envDefault:"10s" help:"timeout of one webhook POST"`
	// MaxRetries is how many times a failing transition is tried again before it goes to the
	// poison queue.
	MaxRetries int `env:"NOTIFIER_MAX_RETRIES" envDefault:"5" help:"retries of a failing notification before it goes to the poison queue"`
	// RetryInitial and RetryMax bound the exponential backoff (factor 2) between tries.
	RetryInitial time.Duration `env:"NOTIFIER_RETRY_INITIAL" envDefault:"500ms" help:"first delay before retrying a failed notification"`
	RetryMax     time.Duration `env:"NOTIFIER_RETRY_MAX" envDefault:"30s" help:"longest delay between retries of a notification"`
	// CacheTTL is how long the channels and silences read from PostgreSQL are reused. A silence
	// created less than CacheTTL ago may not hold back a notification yet.
	CacheTTL time.Duration `env:"NOTIFIER_CACHE_TTL" envDefault:"5s" help:"how long channels and silences are cached"`
	// MaxIdle is how long an entry stays unacknowledged before another copy claims it. It must
	// exceed a whole retry cycle (RetryCycle), or a slow delivery is claimed and worked twice.
	MaxIdle time.Duration `env:"NOTIFIER_MAX_IDLE" envDefault:"10m" help:"idle time after which another copy claims a pending notification; must exceed a whole retry cycle"`
	// ExternalURL is the gateway's base URL as receivers reach it, for externalURL and
	// generatorURL in the webhook body; empty leaves both empty.
	ExternalURL string `env:"EXTERNAL_URL" help:"public base URL of the gateway, for links in notifications (may be empty)"`
}

// DefaultConfig returns the defaults of the envDefault tags, for tests and embedders.
func DefaultConfig() Config {
	return Config{
		WebhookTimeout: 10 * time.Second,
		MaxRetries:     5,
		RetryInitial:   500 * time.Millisecond,
		RetryMax:       30 * time.Second,
		CacheTTL:       5 * time.Second,
		MaxIdle:        10 * time.Minute,
	}
}

// RetryCycle returns an upper bound of the time one entry can take, all tries included: each
// try reads the sources, may wait for another copy's lock (at most its TTL), posts to every
// channel at once (at most WebhookTimeout) and writes the markers; between tries the backoff
// waits, jitter included.
func (c Config) RetryCycle() time.Duration {
	try := sourceTimeout + (c.WebhookTimeout + lockMargin) + c.WebhookTimeout + redisTimeout
	var waits time.Duration
	wait := c.RetryInitial
	for range c.MaxRetries {
		waits += min(wait, c.RetryMax)
		wait *= 2
	}
	waits = time.Duration(float64(waits) * (1 + retryJitter))
	return time.Duration(c.MaxRetries+1)*try + waits
}

// Validate returns an error naming the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.Consumer == "":
		return errors.New("notifier consumer name is empty: it must be stable across restarts")
	case c.WebhookTimeout <= 0:
		return fmt.Errorf("NOTIFIER_WEBHOOK_TIMEOUT=%s: must be positive", c.WebhookTimeout)
	case c.MaxRetries < 0 || c.MaxRetries > 100:
		return fmt.Errorf("NOTIFIER_MAX_RETRIES=%d: want 0 to 100", c.MaxRetries)
	case c.RetryInitial <= 0:
		return fmt.Errorf("NOTIFIER_RETRY_INITIAL=%s: must be positive", c.RetryInitial)
	case c.RetryMax < c.RetryInitial:
		return fmt.Errorf("NOTIFIER_RETRY_MAX=%s: must be at least NOTIFIER_RETRY_INITIAL (%s)", c.RetryMax, c.RetryInitial)
	case c.CacheTTL < 0:
		return fmt.Errorf("NOTIFIER_CACHE_TTL=%s: must not be negative", c.CacheTTL)
	case c.MaxIdle <= c.RetryCycle():
		return fmt.Errorf("NOTIFIER_MAX_IDLE=%s: must exceed a whole retry cycle (%s), or a slow notification is claimed by another copy and sent twice",
			c.MaxIdle, c.RetryCycle().Round(time.Second))
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("EXTERNAL_URL=%q: want an absolute http or https URL", c.ExternalURL)
		}
	}
	return nil
}

// claimInterval is how often the subscriber looks for entries idle past MaxIdle.
func (c Config) claimInterval() time.Duration { return min(5*time.Second, c.MaxIdle/4) }

// ChannelSource lists the notification channels; *postgres.ChannelStore satisfies it.
type ChannelSource interface {
	List(ctx context.Context) ([]alert.Channel, error)
}

// SilenceSource lists the silences; *postgres.SilenceStore satisfies it. The notifier asks
// without the expired ones.
type SilenceSource interface {
	List(ctx context.Context, includeExpired bool) ([]silence.Silence, error)
}

// Notifier consumes the alerts stream and delivers transitions to webhooks. Build it with New
// and run it once with Run.
type Notifier struct {
	rdb      redis.UniversalClient
	cfg      Config
	logger   *slog.Logger
	metrics  *metrics
	http     *http.Client
	channels *snapshot[map[string]alert.Channel]
	silences *snapshot[[]silence.Silence]
	recent   *recentSet
	started  atomic.Bool

	// The shutdown gate: see gate and drain.
	mu           sync.Mutex
	draining     bool
	inflight     map[*message.Message]context.CancelFunc
	inflightWG   sync.WaitGroup
	acksExpected atomic.Int64 // entries whose handler succeeded, so the router acks them
	acksDone     atomic.Int64 // XACKs the subscriber completed
}

// New returns a Notifier that uses rdb for its delivery markers and locks (rdb stays the
// caller's: the Notifier never closes it), reads channels and silences through the sources
// (cached for CacheTTL), logs to logger (nil discards) and registers its metrics on reg (nil
// registers nothing; a registry shared by several Notifiers shares the metrics).
func New(rdb redis.UniversalClient, cfg Config, channels ChannelSource, silences SilenceSource, logger *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	if rdb == nil || channels == nil || silences == nil {
		return nil, errors.New("creating notifier: nil redis client, channel source or silence source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating notifier: %w", err)
	}
	switch rdb.(type) {
	case *redis.Client, *redis.ClusterClient: // dedicatedClient can copy them
	default:
		return nil, fmt.Errorf("creating notifier: redis client type %T is not supported (want *redis.Client or *redis.ClusterClient)", rdb)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "notifier")
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("creating notifier: %w", err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = cfg.WebhookTimeout
	n := &Notifier{
		rdb:     rdb,
		cfg:     cfg,
		logger:  logger,
		metrics: m,
		http: &http.Client{
			Transport: transport,
			// A redirect is an answer, not a delivery: following it would turn the POST into a
			// GET (301-303) or send the signed body to a host the operator never configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		recent:   newRecentSet(10 * time.Minute),
		inflight: make(map[*message.Message]context.CancelFunc),
	}
	n.channels = newSnapshot("channels", logger, func(ctx context.Context) (map[string]alert.Channel, error) {
		list, err := channels.List(ctx)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]alert.Channel, len(list))
		for _, ch := range list {
			byID[ch.ID] = ch
		}
		return byID, nil
	})
	n.silences = newSnapshot("silences", logger, func(ctx context.Context) ([]silence.Silence, error) {
		return silences.List(ctx, false)
	})
	return n, nil
}

// Run consumes the alerts stream until ctx is done, then drains (see the package comment) and
// returns nil; it returns an error when it cannot start, or when the subscription ends by
// itself. Run may be called once. It opens two Redis clients of its own with rdb's options (the
// Watermill subscriber and publisher close the client they are given) and closes both before
// returning; rdb is left open.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("notifier: Run called twice")
	}
	stream := alertredis.StreamKey(n.cfg.Prefix)
	wlogger := watermill.NewSlogLoggerWithLevelMapping(n.logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})

	subClient, err := dedicatedClient(n.rdb)
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	subClient.AddHook(ackHook{done: &n.acksDone})
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        subClient,
		Unmarshaller:  tolerantUnmarshaller{},
		Consumer:      n.cfg.Consumer,
		ConsumerGroup: Group,
		// "0": a group created after the first events were appended still gets them.
		OldestId:        "0",
		NackResendSleep: nackResendSleep,
		// Not forever: the read loop notices Close within BlockTime.
		DisableIndefiniteInitialBlock: true,
		BlockTime:                     time.Second,
		ClaimInterval:                 n.cfg.claimInterval(),
		MaxIdleTime:                   n.cfg.MaxIdle,
	}, wlogger)
	if err != nil {
		subClient.Close()
		return fmt.Errorf("notifier: creating subscriber: %w", err)
	}
	defer sub.Close() // closes subClient; idempotent after the router closed it

	pubClient, err := dedicatedClient(n.rdb)
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	// Maxlen stays 0: MAXLEN trimming deletes entries nobody has looked at.
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pubClient}, wlogger)
	if err != nil {
		pubClient.Close()
		return fmt.Errorf("notifier: creating poison-queue publisher: %w", err)
	}
	defer pub.Close() // closes pubClient

	if err := n.resumeOwnPending(ctx, subClient, stream); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: n.drainTimeout() + ackGrace}, wlogger)
	if err != nil {
		return fmt.Errorf("notifier: creating router: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(poisonPublisher{pub: pub, n: n}, PoisonKey(n.cfg.Prefix), n.shouldPoison)
	if err != nil {
		return fmt.Errorf("notifier: creating poison queue: %w", err)
	}
	// No ShouldRetry: Watermill v1.5.1 advances the backoff once more for it, which would
	// quadruple each wait. Permanent errors are returned as backoff.Permanent instead, and a
	// cancelled entry stops the retries by its context.
	retry := middleware.Retry{
		MaxRetries:          n.cfg.MaxRetries,
		InitialInterval:     n.cfg.RetryInitial,
		MaxInterval:         n.cfg.RetryMax,
		Multiplier:          2,
		RandomizationFactor: retryJitter,
	}
	// Outermost first: the shutdown gate sees every entry; the poison queue takes what the
	// retries gave up on; a recovered panic is permanent, as it would only panic again.
	router.AddMiddleware(n.gate, poison, retry.Middleware, permanentPanics, middleware.Recoverer)
	router.AddConsumerHandler(Group, stream, sub, n.handle)

	// The router gets a context of its own: cancelling the one it runs with cancels every entry
	// in hand at once, which is what drain avoids.
	runDone := make(chan error, 1)
	go func() { runDone <- router.Run(context.WithoutCancel(ctx)) }()
	n.logger.Info("notifier running", "stream", stream, "group", Group, "consumer", n.cfg.Consumer)

	select {
	case err := <-runDone:
		if err == nil {
			err = errors.New("subscription ended")
		}
		return fmt.Errorf("notifier stopped by itself: %w", err)
	case <-ctx.Done():
	}
	start := time.Now()
	n.drain()
	closeErr := router.Close()
	runErr := <-runDone
	n.logger.Info("notifier stopped", "took", time.Since(start).Round(time.Millisecond))
	if err := errors.Join(closeErr, runErr); err != nil {
		return fmt.Errorf("notifier: closing router: %w", err)
	}
	return nil
}

// drainTimeout bounds how long shutdown waits for the entries in hand: their POSTs in flight
// (WebhookTimeout) and the marker writes after them.
func (n *Notifier) drainTimeout() time.Duration { return n.cfg.WebhookTimeout + redisTimeout }

// gate is the outermost middleware. It gives each entry a context that drain cancels, counts
// the entries in hand, and once draining holds new entries back without handling them.
func (n *Notifier) gate(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		n.mu.Lock()
		if n.draining {
			n.mu.Unlock()
			// Held, not nacked: a nack would be handed over again at once. The router's close
			// cancels this context; the entry stays pending for a restart or another copy.
			<-msg.Context().Done()
			return nil, msg.Context().Err()
		}
		ctx, cancel := context.WithCancel(msg.Context())
		n.inflight[msg] = cancel
		n.inflightWG.Add(1)
		n.mu.Unlock()
		defer func() {
			n.mu.Lock()
			delete(n.inflight, msg)
			n.mu.Unlock()
			cancel()
			n.inflightWG.Done()
		}()

		msg.SetContext(ctx)
		out, err := h(msg)
		if err == nil {
			n.acksExpected.Add(1)
		}
		return out, err
	}
}

// drain stops new entries, cancels the waits of those in hand (their POSTs in flight run on
// a context of their own), waits for them, then for the subscriber's XACKs of those that
// completed, each wait bounded.
func (n *Notifier) drain() {
	n.mu.Lock()
	n.draining = true
	for _, cancel := range n.inflight {
		cancel()
	}
	n.mu.Unlock()

	done := make(chan struct{})
	go func() { n.inflightWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(n.drainTimeout()):
		n.logger.Warn("entries still in hand at shutdown; they stay pending and are redelivered", "waited", n.drainTimeout())
	}
	deadline := time.Now().Add(ackGrace)
	for n.acksDone.Load() < n.acksExpected.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// shouldPoison decides which final errors go to the poison queue: not those of an entry cut
// short by shutdown, which stays pending and is redelivered.
func (n *Notifier) shouldPoison(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.draining
}

// resumeOwnPending makes the entries this consumer had in hand when it last stopped claimable
// at once, so that the subscriber's first claim pass (which runs before it reads new entries)
// hands them over: the library only claims entries idle for MaxIdle, which would leave a
// restarted copy's own entries waiting that long. XCLAIM to itself with IDLE sets their idle
// time; JUSTID keeps the delivery count.
func (n *Notifier) resumeOwnPending(ctx context.Context, client redis.UniversalClient, stream string) error {
	err := client.XGroupCreateMkStream(ctx, stream, Group, "0").Err()
	if err != nil && !isBusyGroup(err) {
		return fmt.Errorf("notifier: creating consumer group: %w", err)
	}
	pending, err := client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: Group, Start: "-", End: "+", Count: 1000, Consumer: n.cfg.Consumer,
	}).Result()
	if err != nil {
		return fmt.Errorf("notifier: listing own pending entries: %w", err)
	}
	if len(pending) == 0 {
		return nil
	}
	args := []any{"XCLAIM", stream, Group, n.cfg.Consumer, 0}
	for _, p := range pending {
		args = append(args, p.ID)
	}
	args = append(args, "IDLE", n.cfg.MaxIdle.Milliseconds(), "JUSTID")
	if err := client.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("notifier: resuming own pending entries: %w", err)
	}
	n.logger.Info("resuming own pending entries", "count", len(pending))
	return nil
}

func isBusyGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP")
}

// dedicatedClient returns a new client with rdb's options. The Watermill subscriber and
// publisher close the client they are given on Close, so they never get the caller's.
func dedicatedClient(rdb redis.UniversalClient) (redis.UniversalClient, error) {
	switch c := rdb.(type) {
	case *redis.Client:
		opts := *c.Options()
		return redis.NewClient(&opts), nil
	case *redis.ClusterClient:
		opts := *c.Options()
		return redis.NewClusterClient(&opts), nil
	}
	return nil, fmt.Errorf("redis client type %T is not supported", rdb)
}

// ackHook counts the XACKs the subscriber's client completed, so that drain can wait for the
// acknowledgement of the last entry handled before closing the router.
type ackHook struct{ done *atomic.Int64 }

func (ackHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h ackHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && cmd.Name() == "xack" {
			h.done.Add(1)
		}
		return err
	}
}

func (ackHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// poisonPublisher counts and logs what goes to the poison queue.
type poisonPublisher struct {
	pub *redisstream.Publisher
	n   *Notifier
}

func (p poisonPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.pub.Publish(topic, msgs...); err != nil {
		p.n.logger.Error("publishing to the poison queue failed; the entry is retried", "err", err)
		return err
	}
	for _, msg := range msgs {
		p.n.metrics.poisoned.Inc()
		p.n.logger.Error("notification given up, sent to the poison queue",
			"event", msg.UUID, "poison_stream", topic, "reason", msg.Metadata.Get(middleware.ReasonForPoisonedKey))
	}
	return nil
}

func (p poisonPublisher) Close() error { return nil } // pub is closed by Run

// Undecodable entries: the redisstream subscriber stops its subscription when its
// unmarshaller fails, so tolerantUnmarshaller hands such an entry over as a message that the
// handler sends straight to the poison queue.
const undecodableKey = "notify_undecodable"

type tolerantUnmarshaller struct{}

func (tolerantUnmarshaller) Unmarshal(values map[string]any) (msg *message.Message, err error) {
	defer func() {
		if r := recover(); r != nil { // the library type-asserts the fields
			msg, err = nil, fmt.Errorf("malformed entry: %v", r)
		}
		if err != nil {
			msg = undecodableMessage(values, err)
			err = nil
		}
	}()
	return redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(values)
}

func undecodableMessage(values map[string]any, cause error) *message.Message {
	uuid, _ := values[redisstream.UUIDHeaderKey].(string)
	if uuid == "" {
		uuid = watermill.NewUUID()
	}
	payload, _ := values["payload"].(string)
	msg := message.NewMessage(uuid, []byte(payload))
	msg.Metadata.Set(undecodableKey, cause.Error())
	return msg
}
