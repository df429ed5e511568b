package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/egress"
	"github.com/agentmonitor/agentmonitor/internal/silence"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the exact body, keyed with the
// channel's secret, when the channel has one.
const SignatureHeader = "X-AgentMonitor-Signature"

// EventHeader carries the transition's id, the same on every delivery of one transition: a
// receiver that deduplicates on it closes the last window of a duplicate (a crash between its
// 2xx and our marker).
const EventHeader = "X-AgentMonitor-Event-ID"

// Sign returns the value of SignatureHeader for body under secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// permanentError is a failure that retrying cannot fix: the entry is given up at once.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// isPermanent reports whether err, or every error joined in it, is permanent.
func isPermanent(err error) bool {
	if err == nil {
		return false
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs := joined.Unwrap()
		for _, e := range errs {
			if !isPermanent(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	var pe permanentError
	return errors.As(err, &pe)
}

// storeError is a failure of our own stores (Redis, PostgreSQL): never the entry's fault, so
// the entry is not given up for it; the batch is retried until the stores answer.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

func storeFailure(err error) error { return storeError{err} }

// markerError is a delivery whose marker could not be written: the lock stage keeps the lock.
type markerError struct{ storeError }

// errStopping ends the work in hand at shutdown; the entry stays pending.
var errStopping = errors.New("notifier stopping")

// transient reports whether err (or any error joined in it) means the entry must stay pending
// and be tried again rather than given up.
func transient(err error) bool {
	var se storeError
	var me markerError
	return errors.Is(err, errStopping) || errors.As(err, &se) || errors.As(err, &me)
}

// silence drops a transition a silence holds back.
func (n *Notifier) silence(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	silences, err := n.silences.get(ctx, n.cfg.CacheTTL)
	if err != nil {
		return ctx, nil, storeFailure(fmt.Errorf("reading silences: %w", err))
	}
	ev := nt.Event
	if silence.Silenced(silences, ev.RuleID, ev.AgentID, nt.Labels, time.Now()) {
		channels := len(slices.Compact(slices.Sorted(slices.Values(ev.Channels))))
		n.metrics.deliveries.WithLabelValues(outcomeSilenced).Add(float64(channels))
		log.Info("notification silenced", "channels", channels)
		return ctx, nil, nil
	}
	return ctx, nt, nil
}

// routeStage sends the transition to each of its channels that exists and is enabled, through
// perChannel, all channels at once.
type routeStage struct {
	n          *Notifier
	perChannel Stage
	// grouped replaces perChannel for a channel with group_by (group.go).
	grouped Stage
}

// Exec looks the channels up and fans out.
func (r routeStage) Exec(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	ids := slices.Compact(slices.Sorted(slices.Values(nt.Event.Channels)))
	channels, err := r.n.lookupChannels(ctx, ids)
	if err != nil {
		return ctx, nil, storeFailure(fmt.Errorf("reading notification channels: %w", err))
	}
	var fan FanoutStage
	for _, id := range ids {
		ch, ok := channels[id]
		switch {
		case !ok:
			r.n.metrics.deliveries.WithLabelValues(outcomeNoChannel).Inc()
			log.Warn("notification channel not found, skipped", "channel", id)
			continue
		case !ch.Enabled:
			r.n.metrics.deliveries.WithLabelValues(outcomeNoChannel).Inc()
			log.Debug("notification channel disabled, skipped", "channel", id)
			continue
		}
		one := *nt
		one.Channel = ch
		if len(ch.GroupBy) > 0 {
			fan.Stages = append(fan.Stages, r.grouped)
			fan.Notifications = append(fan.Notifications, &one)
			continue
		}
		fan.Stages = append(fan.Stages, r.perChannel)
		fan.Notifications = append(fan.Notifications, &one)
	}
	return fan.Exec(ctx, log, nt)
}

// lookupChannels returns the channels of ids from the cache, rereading it once when one is
// missing (a channel created moments ago), unless it is younger than a second.
func (n *Notifier) lookupChannels(ctx context.Context, ids []string) (map[string]alert.Channel, error) {
	byID, err := n.channels.get(ctx, n.cfg.CacheTTL)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, ok := byID[id]; !ok {
			return n.channels.get(ctx, min(time.Second, n.cfg.CacheTTL))
		}
	}
	return byID, nil
}

// retryStage runs next until it succeeds, at most 1+MaxRetries times, waiting with
// exponential backoff and jitter in between; a permanent error ends it at once, shutdown ends
// its waits. The error names the channel.
type retryStage struct {
	n    *Notifier
	next Stage
}

// Exec runs the tries.
func (r retryStage) Exec(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	log = log.With("channel", nt.Channel.ID)
	fail := func(err error) (context.Context, *Notification, error) {
		if ctx.Err() != nil && !errors.Is(err, errStopping) {
			err = fmt.Errorf("%w: %w", errStopping, err)
		}
		return ctx, nil, fmt.Errorf("channel %s (%s): %w", nt.Channel.ID, nt.Channel.Name, err)
	}
	wait := r.n.cfg.RetryInitial
	for attempt := 0; ; attempt++ {
		_, _, err := r.next.Exec(ctx, log, nt)
		if err == nil {
			return ctx, nil, nil
		}
		if isPermanent(err) || attempt >= r.n.cfg.MaxRetries || ctx.Err() != nil {
			return fail(err)
		}
		d := min(wait, r.n.cfg.RetryMax)
		d += time.Duration(mrand.Float64() * retryJitter * float64(d))
		wait *= 2
		select {
		case <-ctx.Done():
			return fail(err)
		case <-time.After(d):
		}
	}
}

// rerecord finishes a delivery this process made whose marker write failed: it writes the
// marker now instead of sending again (the lock is still held for it).
func (n *Notifier) rerecord(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	marker := MarkerKey(n.cfg.Prefix, nt.Event.ID, nt.Channel.ID)
	if !n.recent.has(marker) {
		return ctx, nt, nil
	}
	if err := n.markDelivered(nt); err != nil {
		return ctx, nil, err
	}
	n.recent.remove(marker)
	n.metrics.deliveries.WithLabelValues(outcomeDuplicate).Inc()
	return ctx, nil, nil
}

// lockStage runs next under the lock of the alert and channel, taken with SET NX (waiting
// while another delivery holds it) and released after, unless next could not record its
// delivery: then the lock is kept until it expires, so that no other copy resends meanwhile.
type lockStage struct {
	n    *Notifier
	next Stage
}

// Exec takes the lock, runs next, releases the lock.
func (l lockStage) Exec(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	lock := lockKey(l.n.cfg.Prefix, nt.Event.AlertID, nt.Channel.ID)
	token, err := l.n.acquire(ctx, lock)
	if err != nil {
		return ctx, nil, err
	}
	keep := false
	defer func() { // also when next panics
		if keep {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
		defer cancel()
		if err := releaseScript.Run(rctx, l.n.rdb, []string{lock}, token).Err(); err != nil {
			log.Warn("releasing notification lock failed; it expires by itself", "err", err)
		}
	}()
	_, out, err := l.next.Exec(ctx, log, nt)
	var me markerError
	keep = errors.As(err, &me)
	return ctx, out, err
}

// dedupe, under the lock, drops a transition that reached the channel already (a redelivery,
// another copy) or that is older than one delivered (a firing overtaken by its resolve).
func (n *Notifier) dedupe(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	p, ev := n.cfg.Prefix, nt.Event
	pipe := n.rdb.Pipeline()
	exists := pipe.Exists(ctx, MarkerKey(p, ev.ID, nt.Channel.ID))
	lastAt := pipe.Get(ctx, lastKey(p, ev.AlertID, nt.Channel.ID))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return ctx, nil, storeFailure(fmt.Errorf("reading delivery markers: %w", err))
	}
	if exists.Val() == 1 {
		n.metrics.deliveries.WithLabelValues(outcomeDuplicate).Inc()
		log.Debug("already delivered, skipped")
		return ctx, nil, nil
	}
	if prev, err := strconv.ParseInt(lastAt.Val(), 10, 64); err == nil && prev > ev.At.UnixMicro() {
		n.metrics.deliveries.WithLabelValues(outcomeStale).Inc()
		log.Info("a newer transition of this alert was delivered already, skipped")
		return ctx, nil, nil
	}
	return ctx, nt, nil
}

// postedKey carries the start of a successful POST from deliver to record.
type postedKey struct{}

// deliver POSTs the webhook body to the channel. The POST runs on a context shutdown does not
// cancel: cutting it short would leave the receiver with a notification and us without the
// marker. No POST starts once shutdown has begun.
func (n *Notifier) deliver(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	if ctx.Err() != nil {
		return ctx, nil, errStopping
	}
	ev := nt.Event
	var payload any
	switch nt.Channel.Type {
	case alert.ChannelTypeEmail:
	case alert.ChannelTypeSlack:
		payload = n.slackBody(ev, nt.Labels)
	default:
		payload = n.webhookBody(ev, nt.Labels, nt.Channel.Name, n.startsAt(ctx, ev))
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return ctx, nil, permanent(fmt.Errorf("encoding webhook body: %w", err))
	}
	postCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.WebhookTimeout)
	defer cancel()
	start := time.Now()
	if nt.Channel.Type == alert.ChannelTypeEmail {
		err = n.sendMail(postCtx, nt.Channel, ev.ID, []alert.Event{ev}, []map[string]string{nt.Labels}, nil)
	} else {
		err = n.post(postCtx, nt.Channel, ev.ID, body)
	}
	n.metrics.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		n.metrics.deliveries.WithLabelValues(outcomeFailed).Inc()
		log.Warn("webhook delivery failed", "err", err)
		return ctx, nil, err
	}
	return context.WithValue(ctx, postedKey{}, start), nt, nil
}

// record writes the delivery marker after a 2xx. When that fails, this process remembers the
// delivery (rerecord) and the lock is kept.
func (n *Notifier) record(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	if err := n.markDelivered(nt); err != nil {
		n.recent.add(MarkerKey(n.cfg.Prefix, nt.Event.ID, nt.Channel.ID))
		log.Error("webhook delivered but the marker could not be written; a redelivery elsewhere may resend it", "err", err)
		return ctx, nil, markerError{storeError{err}}
	}
	n.metrics.deliveries.WithLabelValues(outcomeSent).Inc()
	start, _ := ctx.Value(postedKey{}).(time.Time)
	log.Info("webhook delivered", "status", nt.Event.To, "took", time.Since(start).Round(time.Millisecond))
	return ctx, nt, nil
}

// acquire takes the lock, waiting while another delivery holds it (at most the lock's TTL,
// which bounds any holder), and returns the token that releases it.
func (n *Notifier) acquire(ctx context.Context, lock string) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	token := n.cfg.Consumer + ":" + hex.EncodeToString(b[:])
	ttl := n.cfg.WebhookTimeout + lockMargin
	deadline := time.Now().Add(ttl)
	wait := 20 * time.Millisecond
	for {
		ok, err := n.rdb.SetNX(ctx, lock, token, ttl).Result()
		if err != nil {
			return "", storeFailure(fmt.Errorf("taking notification lock: %w", err))
		}
		if ok {
			return token, nil
		}
		if time.Now().After(deadline) {
			return "", storeFailure(errors.New("another delivery to this channel for this alert is still in progress"))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for notification lock: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// releaseScript deletes the lock only while it is still ours.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`)

// markDelivered writes the delivery marker, the newest delivered sample time and the repeat
// schedule (scheduleRepeat). The caller
// holds the lock, so last cannot move meanwhile. Separate keys in a pipeline, not a script:
// they may live in different Redis Cluster slots. It runs on its own context: shutdown must not
// cut it short after a POST.
func (n *Notifier) markDelivered(nt *Notification) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	p, ev := n.cfg.Prefix, nt.Event
	at := strconv.FormatInt(ev.At.UnixMicro(), 10)
	pipe := n.rdb.Pipeline()
	pipe.Set(ctx, MarkerKey(p, ev.ID, nt.Channel.ID), at, markerTTL)
	pipe.Set(ctx, lastKey(p, ev.AlertID, nt.Channel.ID), at, markerTTL)
	if err := n.scheduleRepeat(ctx, pipe, nt); err != nil {
		return err
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return storeFailure(fmt.Errorf("writing delivery marker: %w", err))
	}
	return nil
}

// startsAt is when the alert began firing: for a resolve, At minus how long it fired; for a
// severity change while firing, FiringSince of the active alert when Redis still has it; else At.
func (n *Notifier) startsAt(ctx context.Context, ev alert.Event) time.Time {
	switch {
	case ev.To == alert.StatusResolved:
		return ev.At.Add(-time.Duration(ev.DurationSeconds * float64(time.Second)))
	case ev.From != alert.StatusFiring:
		return ev.At
	}
	a, err := alertredis.GetActive(ctx, n.rdb, n.cfg.Prefix, n.shards, ev.AgentID, ev.AlertID)
	if err != nil || a.FiringSince == nil || a.FiringSince.After(ev.At) {
		return ev.At
	}
	return *a.FiringSince
}

// post sends body to ch and returns nil on a 2xx. A redirect is a failure (not followed); an
// address the egress policy refuses, like a 4xx, is a permanent one. Errors never contain the
// URL, which may carry a credential (chat webhooks put their token in the path).
func (n *Notifier) post(ctx context.Context, ch alert.Channel, eventID string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ch.URL, bytes.NewReader(body))
	if err != nil {
		return permanent(errors.New("invalid channel URL"))
	}
	for k, v := range ch.Headers {
		req.Header.Set(k, v)
	}
	// After the channel's headers: these are not theirs to change.
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(EventHeader, eventID)
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "agentmonitor-notifier")
	}
	if ch.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(ch.Secret, body))
	}
	resp, err := n.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL
		}
		err = fmt.Errorf("POST: %w", err)
		if errors.Is(err, egress.ErrBlocked) {
			return permanent(err)
		}
		return err
	}
	defer resp.Body.Close()
	// Read (a bounded amount of) the answer so the connection can be reused.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST answered %s: %s", resp.Status, snippet(answer))
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		err = fmt.Errorf("POST answered %s: redirects are not followed: configure the final URL", resp.Status)
	}
	if permanentStatus(resp.StatusCode) {
		return permanent(err)
	}
	return err
}

// permanentStatus reports whether an answer means that sending the same request again cannot
// succeed: a 4xx other than timeouts, too-early and rate limits.
func permanentStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return code >= 400 && code < 500
}

// snippet is the start of a receiver's answer, fit for a log line and the poison reason.
func snippet(b []byte) string {
	const limit = 200
	if len(b) > limit {
		b = b[:limit]
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), ""))
	if s = strings.TrimSpace(s); s == "" {
		return "(empty body)"
	}
	return strconv.Quote(s)
}
