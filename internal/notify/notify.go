// Package notify delivers alert transitions to webhook notification channels. It consumes the
// alerts streams of every shard (alertredis.StreamKeys) as consumer group "notifier" on the
// shared batch consumer (stream.Consumer:
// batches, reclaim of a dead copy's entries, dead letters) and runs each entry through a chain
// of small stages, read the way Alertmanager's notify.Stage chain reads: silence, route to the
// channels, then per channel and concurrently: retry (bounded, with backoff) around the lock,
// dedupe, deliver (the Alertmanager v4 webhook body, signed with the channel's secret) and
// record. Each transition reaches each channel once however many copies run and however often
// an entry is redelivered.
//
// Channels of type email are sent over SMTP instead of a POST (email.go). A channel with a
// repeat interval gets a still-firing alert again every interval (repeat.go); a channel with
// group_by collects the transitions of a group in Redis for group_wait and gets them as one
// notification (group.go). Both are driven by a loop every copy runs, each repeat and group
// claimed by one copy in Redis.
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
// # Failures
//
// A receiver that keeps failing (past MaxRetries) or refuses for good (a 4xx, an address the
// egress policy refuses), an entry that does not decode, and a stage that panics give the
// entry up: it goes to the dead-letter stream PoisonKey with the reason, the rest of the batch
// goes on. Our own stores failing (Redis, PostgreSQL with nothing cached) never give an entry
// up: the batch is retried until they answer.
//
// # Shutdown
//
// When Run's context is done, no new delivery starts, retry and lock waits end at once, a POST
// in flight is allowed to finish (at most WebhookTimeout) so that its marker is written, and the
// batch is acknowledged if every entry of it completed; otherwise it stays pending and this
// consumer name resumes it at its next start (another copy reclaims it after
// STREAM_CLAIM_MIN_IDLE).
package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/egress"
	"github.com/agentmonitor/agentmonitor/internal/silence"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Group is the consumer group of the notifier on the alerts streams.
const Group = "notifier"

// PoisonKey is the notifier's dead-letter stream: the alerts-stream entries it gave up on
// (undecodable ones, deliveries that failed for good or past the retries, panics), in the
// consumer's dead-letter format (stream.FieldReason holds the reason; the Watermill fields are
// copied, so the entry is itself a Watermill message and can be replayed).
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
	// retryJitter spreads the retries of copies that failed together.
	retryJitter = 0.2
	// maxWait bounds how long the consumer waits to fill a batch: a notification waits for
	// nothing else.
	maxWait = 20 * time.Millisecond
	// parallel bounds the alerts of one batch delivered at once.
	parallel = 16
)

// Config configures a Notifier. Prefix and Consumer are set by the binary; the rest is read from
// the environment.
type Config struct {
	// Prefix is prepended to every Redis key (REDIS_KEY_PREFIX of the binary).
	Prefix string
	// Consumer is this copy's name in the group: stable across restarts (a restarted copy
	// resumes its own pending entries first) and unique among live copies. Required.
	Consumer string
	// Streams are the alerts streams to read, set by the binary: those of every shard alert
	// state was ever written in (alertredis.KnownShards), so that a lowered STREAM_SHARDS still
	// drains the others. Empty: the streams of shards 0 to STREAM_SHARDS-1.
	Streams []string

	// WebhookTimeout bounds one POST, from connecting to reading the answer.
	WebhookTimeout time.Duration `env:"NOTIFIER_WEBHOOK_TIMEOUT" envDefault:"10s" help:"timeout of one webhook POST"`
	// MaxRetries is how many times a failing delivery is tried again before the entry goes to
	// the dead-letter stream.
	MaxRetries int `env:"NOTIFIER_MAX_RETRIES" envDefault:"5" help:"retries of a failing notification before it goes to the dead-letter stream alerts:poison"`
	// RetryInitial and RetryMax bound the exponential backoff (factor 2) between tries.
	RetryInitial time.Duration `env:"NOTIFIER_RETRY_INITIAL" envDefault:"500ms" help:"first delay before retrying a failed notification"`
	RetryMax     time.Duration `env:"NOTIFIER_RETRY_MAX" envDefault:"30s" help:"longest delay between retries of a notification"`
	// CacheTTL is how long the channels and silences read from PostgreSQL are reused. A silence
	// created less than CacheTTL ago may not hold back a notification yet.
	CacheTTL time.Duration `env:"NOTIFIER_CACHE_TTL" envDefault:"5s" help:"how long channels and silences are cached"`
	// ExternalURL is the gateway's base URL as receivers reach it, for externalURL and
	// generatorURL in the webhook body; empty leaves both empty.
	ExternalURL string `env:"EXTERNAL_URL" help:"public base URL of the gateway, for links in notifications (may be empty)"`
	// AllowedNetworks opens addresses the egress policy refuses by default (loopback, private,
	// link-local, CGNAT): CIDRs, addresses or host names (egress.NewPolicy).
	// RepeatCheck is how often each copy looks for repeats that are due (channels'
	// repeat_interval): a repeat goes out at most this late.
	RepeatCheck time.Duration `env:"NOTIFIER_REPEAT_CHECK" envDefault:"10s" help:"how often due repeats of still-firing alerts are looked for"`
	// SMTPAddr (host:port) is the SMTP server of e-mail channels; empty: e-mail channels fail.
	// SMTPUsername and SMTPPassword, when set, authenticate with AUTH PLAIN (only over TLS).
	// SMTPFrom is the sender address. SMTPStartTLS requires STARTTLS before anything is sent.
	SMTPAddr        string   `env:"SMTP_ADDR" help:"host:port of the SMTP server e-mail channels send through (empty: none)"`
	SMTPUsername    string   `env:"SMTP_USERNAME" help:"SMTP AUTH PLAIN user (empty: no authentication)"`
	SMTPPassword    string   `env:"SMTP_PASSWORD" help:"SMTP AUTH PLAIN password"`
	SMTPFrom        string   `env:"SMTP_FROM" help:"sender address of notification e-mails (required with SMTP_ADDR)"`
	SMTPStartTLS    bool     `env:"SMTP_STARTTLS" envDefault:"true" help:"require STARTTLS on the SMTP connection (false only for a relay on a trusted network)"`
	AllowedNetworks []string `env:"WEBHOOK_ALLOWED_NETWORKS" envSeparator:"," help:"comma-separated CIDRs, addresses and host names webhooks may reach although private, loopback or link-local (default: none; public addresses only)"`
}

// DefaultConfig returns the defaults of the envDefault tags, for tests and embedders.
func DefaultConfig() Config {
	var c Config
	// Only a tag that does not parse can fail here, and the config tests parse every tag.
	_ = config.Defaults(&c)
	return c
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
	case c.RepeatCheck <= 0:
		return fmt.Errorf("NOTIFIER_REPEAT_CHECK=%s: must be positive", c.RepeatCheck)
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("EXTERNAL_URL=%q: want an absolute http or https URL", c.ExternalURL)
		}
	}
	if _, err := egress.NewPolicy(c.AllowedNetworks); err != nil {
		return err
	}
	if c.SMTPAddr != "" {
		host, port, err := net.SplitHostPort(c.SMTPAddr)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("SMTP_ADDR=%q: want host:port", c.SMTPAddr)
		}
		if err := egress.CheckHostSpelling(host); err != nil {
			return fmt.Errorf("SMTP_ADDR=%q: %w", c.SMTPAddr, err)
		}
		if a, err := mail.ParseAddress(c.SMTPFrom); err != nil || a.Address != c.SMTPFrom {
			return fmt.Errorf("SMTP_FROM=%q: want a bare e-mail address such as alerts@example.com", c.SMTPFrom)
		}
	}
	return nil
}

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
	rdb     redis.UniversalClient
	cfg     Config
	shards  int // of the alert state (STREAM_SHARDS)
	streams []string
	logger  *slog.Logger
	metrics *metrics
	http    *http.Client
	// dialer connects to the SMTP server through the egress policy; smtpTLS, when set (tests),
	// replaces the TLS configuration of STARTTLS (its ServerName is set per connection).
	dialer   func(ctx context.Context, network, addr string) (net.Conn, error)
	smtpTLS  *tls.Config
	channels *snapshot[map[string]alert.Channel]
	silences *snapshot[[]silence.Silence]
	recent   *recentSet
	consumer *stream.Consumer
	started  atomic.Bool

	// pipeline is the chain of stages one transition goes through; repeatPipeline the one of a
	// repeat of a still-firing alert.
	pipeline       Stage
	repeatPipeline Stage
	// stopping is done once Run's context is: waits end, no new POST starts.
	stopping context.Context

	// decided remembers, while one batch is retried, the entries already settled (nil) or
	// given up (the reason), so that a retry of the batch does not run them again.
	mu      sync.Mutex
	decided map[string]error
}

// New returns a Notifier that uses rdb for the alerts stream, its delivery markers and locks
// (rdb stays the caller's: the Notifier never closes it), reads channels and silences through
// the sources (cached for CacheTTL), logs to logger (nil discards) and registers its metrics on
// reg (nil registers nothing; a registry shared by several Notifiers shares the metrics).
// consumer holds the batch consumer's settings (the worker's STREAM_* variables, STREAM_SHARDS
// among them: the notifier reads the alerts stream of every shard); its streams, group,
// dead-letter stream, prefix, consumer name and registerer are the notifier's.
func New(rdb redis.UniversalClient, cfg Config, consumer stream.ConsumerConfig, channels ChannelSource, silences SilenceSource, logger *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	if rdb == nil || channels == nil || silences == nil {
		return nil, errors.New("creating notifier: nil redis client, channel source or silence source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating notifier: %w", err)
	}
	policy, err := egress.NewPolicy(cfg.AllowedNetworks)
	if err != nil {
		return nil, fmt.Errorf("creating notifier: %w", err)
	}
	if err := config.Defaults(&consumer); err != nil {
		return nil, fmt.Errorf("creating notifier: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	consumerLogger := logger
	logger = logger.With("component", "notifier")
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("creating notifier: %w", err)
	}
	n := &Notifier{
		rdb:      rdb,
		cfg:      cfg,
		shards:   max(consumer.Shards, 1),
		logger:   logger,
		metrics:  m,
		http:     webhookClient(policy, cfg.WebhookTimeout),
		dialer:   policy.DialContext(&net.Dialer{Timeout: cfg.WebhookTimeout}),
		recent:   newRecentSet(10 * time.Minute),
		stopping: context.Background(),
		decided:  make(map[string]error),
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
	n.pipeline = n.newPipeline()

	consumer.Prefix, consumer.Consumer = cfg.Prefix, cfg.Consumer
	consumer.Streams = cfg.Streams
	if len(consumer.Streams) == 0 {
		consumer.Streams = alertredis.StreamKeys(cfg.Prefix, consumer.Shards)
	}
	consumer.Group = Group
	consumer.DeadLetter = PoisonKey(cfg.Prefix)
	consumer.Registerer = reg
	if consumer.MaxWait == 0 || consumer.MaxWait > maxWait {
		consumer.MaxWait = maxWait
	}
	// Shutdown lets a POST in flight finish and write its marker before the ack.
	consumer.DrainTimeout = max(consumer.DrainTimeout, cfg.WebhookTimeout+2*redisTimeout)
	n.streams = consumer.Streams
	if n.consumer, err = stream.NewConsumer(rdb, consumer, n.handle, consumerLogger); err != nil {
		return nil, fmt.Errorf("creating notifier: %w", err)
	}
	return n, nil
}

// Run consumes the alerts stream until ctx is done, then drains (see the package comment) and
// returns nil. Run may be called once.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.started.CompareAndSwap(false, true) {
		return errors.New("notifier: Run called twice")
	}
	n.stopping = ctx
	n.logger.Info("notifier running", "streams", n.streams, "group", Group, "consumer", n.cfg.Consumer)
	start := time.Now()
	waitRepeats := n.runRepeats(ctx)
	err := n.consumer.Run(ctx)
	waitRepeats()
	n.logger.Info("notifier stopped", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// webhookClient is the HTTP client of every delivery: direct connections checked by the egress
// policy, timeouts, no redirects.
func webhookClient(policy *egress.Policy, timeout time.Duration) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = timeout
	// Connect directly, never through HTTP(S)_PROXY: the egress check must see the address
	// really connected to. Every attempt's address is checked, after name resolution.
	transport.Proxy = nil
	transport.DialContext = policy.DialContext(&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second})
	return &http.Client{
		Transport: transport,
		// A redirect is an answer, not a delivery: following it would turn the POST into a
		// GET (301-303), send the signed body to a host the operator never configured, and
		// let a receiver point us at an address the egress policy refuses.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
