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
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
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

// permanentError is a failure that retrying cannot fix: it goes to the poison queue at once.
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

// permanentPanics makes a panic that middleware.Recoverer turned into an error final: the
// retries would only panic again.
func permanentPanics(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		var panicked middleware.RecoveredPanicError
		if errors.As(err, &panicked) {
			return out, backoff.Permanent(err)
		}
		return out, err
	}
}

// handle delivers one alerts-stream entry to its channels. nil acks it; an error is retried,
// and past the retries (or at once, when permanent) the entry goes to the poison queue.
func (n *Notifier) handle(msg *message.Message) error {
	err := n.process(msg)
	if isPermanent(err) {
		return backoff.Permanent(err) // the Retry middleware stops and unwraps it
	}
	return err
}

func (n *Notifier) process(msg *message.Message) error {
	if reason := msg.Metadata.Get(undecodableKey); reason != "" {
		return permanent(fmt.Errorf("undecodable stream entry: %s", reason))
	}
	ev, err := alert.DecodeEvent(msg.Payload)
	if err != nil {
		return permanent(err)
	}
	if !ev.Notify || len(ev.Channels) == 0 {
		return nil
	}
	if ev.To != alert.StatusFiring && ev.To != alert.StatusResolved {
		return permanent(fmt.Errorf("event %s notifies a transition to %q: only firing and resolved are sent", ev.ID, ev.To))
	}
	ctx := msg.Context()
	log := n.logger.With("event", ev.ID, "alert", ev.AlertID, "rule", ev.RuleID, "agent", ev.AgentID, "to", ev.To)
	channelIDs := slices.Compact(slices.Sorted(slices.Values(ev.Channels)))

	labels := alertLabels(ev)
	silences, err := n.silences.get(ctx, n.cfg.CacheTTL)
	if err != nil {
		return fmt.Errorf("reading silences: %w", err)
	}
	if silence.Silenced(silences, ev.RuleID, ev.AgentID, labels, time.Now()) {
		n.metrics.deliveries.WithLabelValues(outcomeSilenced).Add(float64(len(channelIDs)))
		log.Info("notification silenced", "channels", len(channelIDs))
		return nil
	}

	channels, err := n.lookupChannels(ctx, channelIDs)
	if err != nil {
		return fmt.Errorf("reading notification channels: %w", err)
	}
	errs := make([]error, len(channelIDs))
	var wg sync.WaitGroup
	for i, id := range channelIDs {
		ch, ok := channels[id]
		switch {
		case !ok:
			n.metrics.deliveries.WithLabelValues(outcomeNoChannel).Inc()
			log.Warn("notification channel not found, skipped", "channel", id)
			continue
		case !ch.Enabled:
			n.metrics.deliveries.WithLabelValues(outcomeNoChannel).Inc()
			log.Debug("notification channel disabled, skipped", "channel", id)
			continue
		}
		wg.Go(func() {
			if err := n.deliver(ctx, ev, labels, ch); err != nil {
				errs[i] = fmt.Errorf("channel %s (%s): %w", ch.ID, ch.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
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

// deliver sends ev to ch once: see the package comment for the keys involved.
func (n *Notifier) deliver(ctx context.Context, ev alert.Event, labels map[string]string, ch alert.Channel) error {
	p := n.cfg.Prefix
	marker := MarkerKey(p, ev.ID, ch.ID)
	lock := lockKey(p, ev.AlertID, ch.ID)
	last := lastKey(p, ev.AlertID, ch.ID)
	at := strconv.FormatInt(ev.At.UnixMicro(), 10)
	log := n.logger.With("event", ev.ID, "alert", ev.AlertID, "channel", ch.ID)

	if n.recent.has(marker) {
		// Delivered by this process, and the marker write failed: write it now, do not resend.
		if err := n.markDelivered(marker, last, at); err != nil {
			return err
		}
		n.recent.remove(marker)
		n.metrics.deliveries.WithLabelValues(outcomeDuplicate).Inc()
		return nil
	}

	token, err := n.acquire(ctx, lock)
	if err != nil {
		return err
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
		defer cancel()
		if err := releaseScript.Run(rctx, n.rdb, []string{lock}, token).Err(); err != nil {
			log.Warn("releasing notification lock failed; it expires by itself", "err", err)
		}
	}

	// Under the lock: has another delivery of this transition, or a newer one, got through?
	pipe := n.rdb.Pipeline()
	exists := pipe.Exists(ctx, marker)
	lastAt := pipe.Get(ctx, last)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		release()
		return fmt.Errorf("reading delivery markers: %w", err)
	}
	if exists.Val() == 1 {
		release()
		n.metrics.deliveries.WithLabelValues(outcomeDuplicate).Inc()
		log.Debug("already delivered, skipped")
		return nil
	}
	if prev, err := strconv.ParseInt(lastAt.Val(), 10, 64); err == nil && prev > ev.At.UnixMicro() {
		release()
		n.metrics.deliveries.WithLabelValues(outcomeStale).Inc()
		log.Info("a newer transition of this alert was delivered already, skipped")
		return nil
	}

	startsAt := n.startsAt(ctx, ev)
	body, err := json.Marshal(n.webhookBody(ev, labels, ch.Name, startsAt))
	if err != nil {
		release()
		return permanent(fmt.Errorf("encoding webhook body: %w", err))
	}
	// The POST runs on a context shutdown does not cancel: cutting it short would leave the
	// receiver with a notification and us without the marker.
	postCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.WebhookTimeout)
	defer cancel()
	start := time.Now()
	err = n.post(postCtx, ch, ev.ID, body)
	n.metrics.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		release()
		n.metrics.deliveries.WithLabelValues(outcomeFailed).Inc()
		log.Warn("webhook delivery failed", "err", err)
		return err
	}
	if err := n.markDelivered(marker, last, at); err != nil {
		// The lock is kept until it expires, so that no other copy resends meanwhile; this
		// process remembers the delivery for its retries.
		n.recent.add(marker)
		log.Error("webhook delivered but the marker could not be written; a redelivery elsewhere may resend it", "err", err)
		return err
	}
	release()
	n.metrics.deliveries.WithLabelValues(outcomeSent).Inc()
	log.Info("webhook delivered", "status", ev.To, "took", time.Since(start).Round(time.Millisecond))
	return nil
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
			return "", fmt.Errorf("taking notification lock: %w", err)
		}
		if ok {
			return token, nil
		}
		if time.Now().After(deadline) {
			return "", errors.New("another delivery to this channel for this alert is still in progress")
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

// markDelivered writes the delivery marker and the newest delivered sample time. The caller
// holds the lock, so last cannot move meanwhile. Separate keys in a pipeline, not a script:
// they may live in different Redis Cluster slots.
func (n *Notifier) markDelivered(marker, last, at string) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	pipe := n.rdb.Pipeline()
	pipe.Set(ctx, marker, at, markerTTL)
	pipe.Set(ctx, last, at, markerTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("writing delivery marker: %w", err)
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
	raw, err := n.rdb.HGet(ctx, alertredis.ActiveKey(n.cfg.Prefix), ev.AlertID).Bytes()
	if err != nil {
		return ev.At
	}
	var a alert.Active
	if json.Unmarshal(raw, &a) != nil || a.FiringSince == nil || a.FiringSince.After(ev.At) {
		return ev.At
	}
	return *a.FiringSince
}

// post sends body to ch and returns nil on a 2xx. Errors never contain the URL, which may
// carry a credential (chat webhooks put their token in the path).
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
			err = uerr.Err
		}
		return fmt.Errorf("POST: %w", err)
	}
	defer resp.Body.Close()
	// Read (a bounded amount of) the answer so the connection can be reused.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST answered %s: %s", resp.Status, snippet(answer))
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
