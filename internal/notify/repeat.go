package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
)

// Repeats (a channel's RepeatInterval): transitions reach the notifier only when an alert's
// state changes, so a still-firing alert is re-sent by a loop that every copy runs. Two keys:
//
//   - notify:repeats, a sorted set of "<alert id>:<channel id>" scored with the Unix
//     milliseconds when the next repeat is due. Recording a firing delivery to a channel with a
//     repeat interval (re)schedules it at now+interval; recording a resolve removes it.
//   - notify:repeat:<alert id>:<channel id>, the firing event last delivered there, which a
//     repeat sends again (with the alert's current value and severity).
//
// A copy claims a due repeat by moving its score to now+lease in one script (only while it is
// still due), so exactly one copy sends it; a copy that dies holding the claim leaves it to be
// claimed again when the lease ends (at least once). The repeat then goes through the same
// stages as a transition: silence, retry, lock, dedupe (a repeat of a firing overtaken by its
// resolve is stale and dropped), deliver, record (which schedules the next one). An alert that
// is no longer firing, or a channel deleted, disabled or without a repeat interval, ends the
// repeats; an acknowledged alert is not repeated while acknowledged (someone is on it).

func repeatsKey(prefix string) string { return prefix + "notify:repeats" }

func repeatKey(prefix, member string) string { return prefix + "notify:repeat:" + member }

func repeatMember(alertID, channelID string) string { return alertID + ":" + channelID }

// repeatBatch bounds the repeats one pass claims.
const repeatBatch = 100

// claimScript moves member's score from due (at most ARGV[2]) to ARGV[3]; 1 when this caller
// claimed it.
var claimScript = redis.NewScript(`
local s = redis.call("ZSCORE", KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then
  redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0`)

// settleScript, while member still has the claim's score ARGV[2], reschedules it at ARGV[3],
// or removes it when ARGV[3] is "-"; anything else means a delivery or a resolve has settled it
// meanwhile, which wins.
var settleScript = redis.NewScript(`
local s = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == "-" then return redis.call("ZREM", KEYS[1], ARGV[1]) end
redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
return 1`)

// scheduleRepeat adds to pipe the repeat bookkeeping of a delivery recorded: a firing to a
// channel with a repeat interval is due again after it; a resolve ends the repeats.
func (n *Notifier) scheduleRepeat(ctx context.Context, pipe redis.Pipeliner, nt *Notification) error {
	p, ev := n.cfg.Prefix, nt.Event
	member := repeatMember(ev.AlertID, nt.Channel.ID)
	switch {
	case ev.To == alert.StatusResolved || nt.Channel.RepeatInterval <= 0:
		pipe.ZRem(ctx, repeatsKey(p), member)
		pipe.Del(ctx, repeatKey(p, member))
	case ev.To == alert.StatusFiring:
		payload, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encoding repeat of alert %s: %w", ev.AlertID, err)
		}
		due := time.Now().Add(nt.Channel.RepeatInterval).UnixMilli()
		pipe.Set(ctx, repeatKey(p, member), payload, nt.Channel.RepeatInterval+markerTTL)
		pipe.ZAdd(ctx, repeatsKey(p), redis.Z{Score: float64(due), Member: member})
	}
	return nil
}

// repeatLease is how long a claimed repeat stays with its copy: longer than every try of its
// delivery with the waits between them.
func (n *Notifier) repeatLease() time.Duration {
	tries := time.Duration(n.cfg.MaxRetries + 1)
	return tries*(n.cfg.WebhookTimeout+lockMargin) + time.Duration(n.cfg.MaxRetries)*n.cfg.RetryMax + time.Minute
}

// repeatLoop sends due groups (group.go) and repeats every RepeatCheck until ctx is done; a repeat in flight then
// finishes its POST (deliver's rule) and the loop returns.
func (n *Notifier) repeatLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.RepeatCheck)
	defer tick.Stop()
	for {
		if err := n.claimDue(ctx, groupsKey(n.cfg.Prefix), "group", n.flushOne); err != nil && ctx.Err() == nil {
			n.logger.Warn("sending due groups failed; trying again at the next check", "err", err)
		}
		if err := n.claimDue(ctx, repeatsKey(n.cfg.Prefix), "repeat", n.repeatOne); err != nil && ctx.Err() == nil {
			n.logger.Warn("sending due repeats failed; trying again at the next check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// claimDue claims the members of the sorted set key due now (at most repeatBatch, one pass), each
// by moving its score to a lease (claimScript), and hands each member it claimed to send with
// that lease; what names the members in errors (group, repeat).
func (n *Notifier) claimDue(ctx context.Context, key, what string, send func(ctx context.Context, member, lease string)) error {
	now := time.Now().UnixMilli()
	due, err := n.rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now, 10), Count: repeatBatch}).Result()
	if err != nil {
		return fmt.Errorf("reading due %ss: %w", what, err)
	}
	for _, member := range due {
		if ctx.Err() != nil {
			return nil
		}
		lease := strconv.FormatInt(time.Now().Add(n.repeatLease()).UnixMilli(), 10)
		ok, err := claimScript.Run(ctx, n.rdb, []string{key}, member, now, lease).Int()
		if err != nil {
			return fmt.Errorf("claiming %s %s: %w", what, member, err)
		}
		if ok == 1 {
			send(ctx, member, lease)
		}
	}
	return nil
}

// repeatOne sends the claimed repeat member (or ends it), then settles the claim: a delivery
// has rescheduled it already; otherwise it is rescheduled after the interval (silenced,
// acknowledged, refused for good) or left to be claimed again when the lease ends (our stores
// or the receiver failing for now).
func (n *Notifier) repeatOne(ctx context.Context, member, lease string) {
	p := n.cfg.Prefix
	log := n.logger.With("repeat", member)
	settle := func(next string) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
		defer cancel()
		if err := settleScript.Run(sctx, n.rdb, []string{repeatsKey(p)}, member, lease, next).Err(); err != nil {
			log.Warn("settling repeat failed; it is claimed again when its lease ends", "err", err)
		}
	}
	end := func(why string) {
		log.Debug("repeats ended", "why", why)
		settle("-")
	}
	raw, err := n.rdb.Get(ctx, repeatKey(p, member)).Bytes()
	if errors.Is(err, redis.Nil) {
		end("no firing notification recorded")
		return
	}
	if err != nil {
		log.Warn("reading repeat failed", "err", err)
		return
	}
	var ev alert.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		end("undecodable")
		return
	}
	chID := member[len(ev.AlertID)+1:]
	channels, err := n.lookupChannels(ctx, []string{chID})
	if err != nil {
		log.Warn("reading notification channels failed", "err", err)
		return
	}
	ch, found := channels[chID]
	if !found || !ch.Enabled || ch.RepeatInterval <= 0 {
		end("channel gone, disabled or without repeat interval")
		return
	}
	next := strconv.FormatInt(time.Now().Add(ch.RepeatInterval).UnixMilli(), 10)
	active, err := alertredis.GetActive(ctx, n.rdb, p, n.shards, ev.AgentID, ev.AlertID)
	if err != nil && !errors.Is(err, alertredis.ErrNotFound) {
		log.Warn("reading active alert failed", "err", err)
		return
	}
	if err != nil || active.Status != alert.StatusFiring {
		end("alert no longer firing")
		return
	}
	if active.Ack != nil {
		log.Debug("alert acknowledged, not repeated")
		settle(next)
		return
	}
	// The last firing notification again, under a new id (its own marker and event header),
	// with what the alert is now. At stays the transition's: dedupe drops the repeat when a
	// newer transition (the resolve) reached the channel.
	ev.ID = ev.ID + "-repeat-" + lease
	ev.From = alert.StatusFiring
	ev.Value, ev.Severity = active.Value, active.Severity
	ev.Channels = []string{chID}
	nt := &Notification{Event: ev, Labels: alertLabels(ev), Channel: ch}
	elog := log.With("event", ev.ID, "alert", ev.AlertID, "rule", ev.RuleID, "agent", ev.AgentID, "to", ev.To)
	err = safeExec(ctx, elog, n.repeatPipeline, nt)
	switch {
	case err == nil:
		settle(next) // a no-op when record rescheduled it
	case errors.Is(err, errStopping):
		// Shutting down: due again at once, for another copy or the next start.
		settle(strconv.FormatInt(time.Now().UnixMilli(), 10))
	case !isPermanent(err):
		elog.Warn("repeat not delivered; it is tried again when its lease ends", "err", err)
	default:
		elog.Error("repeat refused for good; the next one is due after the interval", "err", err)
		settle(next)
	}
}

// runRepeats starts repeatLoop and returns a function that waits for it.
func (n *Notifier) runRepeats(ctx context.Context) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.repeatLoop(ctx)
	}()
	return func() { <-done }
}
