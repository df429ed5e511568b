package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Grouping (a channel's GroupBy and GroupWait), as Alertmanager's group_by and group_wait: the
// transitions of alerts with the same values of the group labels that reach a channel within
// GroupWait of the first go out as one notification. The group is collected in Redis, so any
// copy may add to it and any copy may flush it, and a crash loses nothing:
//
//   - notify:group:<channel id>:<group hash>, a hash of event id → the transition (JSON): the
//     entry of the alerts stream is acknowledged once its transition is stored here.
//   - notify:groups, a sorted set of "<channel id>:<group hash>" scored with the Unix
//     milliseconds when the group is due: added (NX) by its first transition at
//     now+GroupWait.
//
// Each copy's loop (every RepeatCheck, with the repeats) claims a due group the way it claims
// a repeat (a lease in the score, one script), sends the newest transition of each of its
// alerts in one body, writes their delivery markers, and removes what it sent. Transitions
// that arrived meanwhile stay and are due again after GroupWait. A transition whose marker
// exists is not sent again (a redelivered entry). A group the channel refuses for good (a 4xx,
// a 5xx from the SMTP server) goes to the dead-letter stream. A crash mid-flush leaves the claim to end
// with its lease; the group is then sent again (at least once).

func groupsKey(prefix string) string { return prefix + "notify:groups" }

func groupItemsKey(prefix, member string) string { return prefix + "notify:group:" + member }

// groupOf returns the group labels of a notification for ch (a missing label is ""), and the
// member naming the group in groupsKey.
func groupOf(ch alert.Channel, labels map[string]string) (map[string]string, string) {
	group := make(map[string]string, len(ch.GroupBy))
	var b strings.Builder
	for _, name := range ch.GroupBy {
		group[name] = labels[name]
		b.WriteString(name)
		b.WriteByte(0)
		b.WriteString(labels[name])
		b.WriteByte(0)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return group, ch.ID + ":" + hex.EncodeToString(sum[:12])
}

// enqueue is the per-channel stage of a grouping channel: it adds the transition to its group
// (idempotent: keyed by event id) and makes the group due after GroupWait unless it is
// already scheduled. Failures are our store's: the entry stays pending.
func (n *Notifier) enqueue(ctx context.Context, log *slog.Logger, nt *Notification) (context.Context, *Notification, error) {
	p, ev := n.cfg.Prefix, nt.Event
	exists, err := n.rdb.Exists(ctx, MarkerKey(p, ev.ID, nt.Channel.ID)).Result()
	if err != nil {
		return ctx, nil, storeFailure(fmt.Errorf("reading delivery marker: %w", err))
	}
	if exists == 1 {
		n.metrics.deliveries.WithLabelValues(outcomeDuplicate).Inc()
		return ctx, nil, nil
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return ctx, nil, permanent(fmt.Errorf("encoding transition for its group: %w", err))
	}
	_, member := groupOf(nt.Channel, nt.Labels)
	due := time.Now().Add(nt.Channel.GroupWait).UnixMilli()
	pipe := n.rdb.Pipeline()
	pipe.HSet(ctx, groupItemsKey(p, member), ev.ID, payload)
	pipe.Expire(ctx, groupItemsKey(p, member), markerTTL)
	pipe.ZAddNX(ctx, groupsKey(p), redis.Z{Score: float64(due), Member: member})
	if _, err := pipe.Exec(ctx); err != nil {
		return ctx, nil, storeFailure(fmt.Errorf("adding transition to its group: %w", err))
	}
	log.Debug("transition added to its group", "channel", nt.Channel.ID, "group", member)
	return ctx, nil, nil
}

// flushOne sends the claimed group member and settles the claim.
func (n *Notifier) flushOne(ctx context.Context, member, lease string) {
	p := n.cfg.Prefix
	log := n.logger.With("group", member)
	items := groupItemsKey(p, member)
	settle := func(next string) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
		defer cancel()
		if err := settleScript.Run(sctx, n.rdb, []string{groupsKey(p)}, member, lease, next).Err(); err != nil {
			log.Warn("settling group failed; it is claimed again when its lease ends", "err", err)
		}
	}
	raw, err := n.rdb.HGetAll(ctx, items).Result()
	if err != nil {
		log.Warn("reading group failed", "err", err)
		return
	}
	chID, _, _ := strings.Cut(member, ":")
	channels, err := n.lookupChannels(ctx, []string{chID})
	if err != nil {
		log.Warn("reading notification channels failed", "err", err)
		return
	}
	ch, found := channels[chID]
	fields := slices.Collect(maps.Keys(raw))
	events, err := n.groupEvents(ctx, raw, ch.ID)
	if err != nil {
		log.Warn("reading delivery markers failed", "err", err)
		return
	}
	switch {
	case !found || !ch.Enabled:
		log.Warn("notification channel gone or disabled, group dropped", "channel", chID, "transitions", len(events))
	case len(events) > 0:
		err := n.sendGroup(ctx, log, ch, events)
		switch {
		case errors.Is(err, errStopping):
			settle(strconv.FormatInt(time.Now().UnixMilli(), 10))
			return
		case err != nil && !isPermanent(err):
			log.Warn("group notification failed; tried again", "err", err)
			settle(strconv.FormatInt(time.Now().Add(n.cfg.RetryMax).UnixMilli(), 10))
			return
		case err != nil:
			n.deadLetterGroup(ctx, log, member, events, err)
		}
	}
	// Remove what was handled, then the schedule; a transition added meanwhile makes the group
	// due again (checked after the removal, so none is left without a schedule).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	if len(fields) > 0 {
		if err := n.rdb.HDel(sctx, items, fields...).Err(); err != nil {
			log.Warn("removing sent transitions from the group failed; their markers keep them from being resent", "err", err)
		}
	}
	settle("-")
	if left, err := n.rdb.HLen(sctx, items).Result(); err == nil && left > 0 && found {
		n.rdb.ZAddNX(sctx, groupsKey(p), redis.Z{Score: float64(time.Now().Add(ch.GroupWait).UnixMilli()), Member: member})
	}
}

// groupEvents decodes a group's transitions and keeps the newest of each alert not delivered
// yet, oldest alert first.
func (n *Notifier) groupEvents(ctx context.Context, raw map[string]string, channelID string) ([]alert.Event, error) {
	newest := map[string]alert.Event{}
	for _, v := range raw {
		var ev alert.Event
		if json.Unmarshal([]byte(v), &ev) != nil {
			continue
		}
		if old, ok := newest[ev.AlertID]; !ok || ev.At.After(old.At) {
			newest[ev.AlertID] = ev
		}
	}
	events := slices.SortedFunc(maps.Values(newest), func(a, b alert.Event) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.AlertID, b.AlertID)
	})
	if len(events) == 0 {
		return nil, nil
	}
	pipe := n.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(events))
	for i, ev := range events {
		exists[i] = pipe.Exists(ctx, MarkerKey(n.cfg.Prefix, ev.ID, channelID))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := events[:0]
	for i, ev := range events {
		if exists[i].Val() == 0 {
			out = append(out, ev)
		}
	}
	return out, nil
}

// sendGroup posts one notification of events to ch and records each delivery.
func (n *Notifier) sendGroup(ctx context.Context, log *slog.Logger, ch alert.Channel, events []alert.Event) error {
	if ctx.Err() != nil {
		return errStopping
	}
	labels := make([]map[string]string, len(events))
	for i, ev := range events {
		labels[i] = alertLabels(ev)
	}
	group, _ := groupOf(ch, labels[0])
	var payload any
	switch {
	case ch.Type == alert.ChannelTypeEmail:
	case ch.Type == alert.ChannelTypeSlack:
		payload = n.slackGroupBody(events, labels, group)
	default:
		starts := make([]time.Time, len(events))
		for i, ev := range events {
			starts[i] = n.startsAt(ctx, ev)
		}
		payload = n.webhookGroupBody(events, labels, starts, group, ch.Name)
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return permanent(fmt.Errorf("encoding group body: %w", err))
	}
	postCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.WebhookTimeout)
	defer cancel()
	start := time.Now()
	// The event header names the group's first transition: the same on a resend of this group.
	if ch.Type == alert.ChannelTypeEmail {
		err = n.sendMail(postCtx, ch, events[0].ID, events, labels, group)
	} else {
		err = n.post(postCtx, ch, events[0].ID, body)
	}
	n.metrics.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		n.metrics.deliveries.WithLabelValues(outcomeFailed).Inc()
		return err
	}
	for _, ev := range events {
		nt := &Notification{Event: ev, Labels: alertLabels(ev), Channel: ch}
		if err := n.markDelivered(nt); err != nil {
			log.Error("group delivered but a marker could not be written; it may be resent", "err", err)
		}
	}
	n.metrics.deliveries.WithLabelValues(outcomeSent).Add(float64(len(events)))
	log.Info("group notification delivered", "channel", ch.ID, "alerts", len(events), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// webhookGroupBody is the Alertmanager v4 body of several alerts: status firing while any
// is, the group labels, the labels and annotations all alerts share. Value, RecoveryValue and
// Duration are the first alert's; each alert carries its own value.
func (n *Notifier) webhookGroupBody(events []alert.Event, labels []map[string]string, starts []time.Time, group map[string]string, receiver string) WebhookBody {
	body := n.webhookBody(events[0], labels[0], receiver, starts[0])
	body.GroupLabels = group
	body.GroupKey = groupKey(group)
	body.Alerts = body.Alerts[:0]
	body.CommonLabels = maps.Clone(labels[0])
	body.CommonAnnotations = maps.Clone(body.CommonAnnotations)
	body.Status = "resolved"
	for i, ev := range events {
		one := n.webhookBody(ev, labels[i], receiver, starts[i])
		a := one.Alerts[0]
		v := ev.Value
		a.Value = &v
		body.Alerts = append(body.Alerts, a)
		if one.Status == "firing" {
			body.Status = "firing"
		}
		maps.DeleteFunc(body.CommonLabels, func(k, v string) bool { return labels[i][k] != v })
		maps.DeleteFunc(body.CommonAnnotations, func(k, v string) bool { return a.Annotations[k] != v })
	}
	return body
}

// slackGroupBody is the Slack body of several alerts: one line naming how many fire and
// resolve, then one attachment per alert.
func (n *Notifier) slackGroupBody(events []alert.Event, labels []map[string]string, group map[string]string) SlackBody {
	firing, resolved := 0, 0
	var out SlackBody
	for i, ev := range events {
		one := n.slackBody(ev, labels[i])
		out.Attachments = append(out.Attachments, one.Attachments...)
		if ev.To == alert.StatusResolved {
			resolved++
		} else {
			firing++
		}
	}
	parts := make([]string, 0, len(group))
	for _, k := range slices.Sorted(maps.Keys(group)) {
		parts = append(parts, k+"="+group[k])
	}
	out.Text = fmt.Sprintf("[FIRING:%d] [RESOLVED:%d] %s", firing, resolved, strings.Join(parts, " "))
	return out
}

// deadLetterGroup writes the transitions of a group the channel refused for good to the
// dead-letter stream PoisonKey, each in the consumer's dead-letter format with the reason, as
// the entries of a refused single notification go there (their stream entries are acknowledged
// already).
func (n *Notifier) deadLetterGroup(ctx context.Context, log *slog.Logger, member string, events []alert.Event, reason error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	for _, ev := range events {
		values, err := alertredis.StreamValues(ev)
		if err == nil {
			values[stream.FieldReason] = "group " + member + ": " + reason.Error()
			values[stream.FieldGroup] = Group
			values[stream.FieldConsumer] = n.cfg.Consumer
			err = n.rdb.XAdd(dctx, &redis.XAddArgs{Stream: PoisonKey(n.cfg.Prefix), Values: values}).Err()
		}
		if err != nil {
			log.Error("writing a refused group transition to the dead-letter stream failed", "event", ev.ID, "err", err)
		}
	}
	n.metrics.poisoned.Add(float64(len(events)))
	log.Error("group notification refused for good, sent to the dead-letter stream", "err", reason,
		"transitions", len(events), "dead_letter_stream", PoisonKey(n.cfg.Prefix))
}
