package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// handle is the stream.Handler of the notifier group. Each entry goes through the pipeline;
// the entries of one alert one after the other in stream order, different alerts at once (at
// most parallel). An entry that fails for good is Rejected (dead-lettered with the reason); one
// that failed transiently (stores, shutdown) fails the batch, which the consumer retries;
// entries settled meanwhile are not run again.
func (n *Notifier) handle(ctx context.Context, batch []*stream.Message) error {
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.stopping, cancel)()

	nts := make([]*Notification, len(batch))
	var alerts []string
	byAlert := map[string][]int{}
	for i, m := range batch {
		if reason, ok := n.decidedFor(m); ok {
			if reason != nil {
				m.Reject(reason)
			}
			continue
		}
		nt, err := notificationOf(m)
		switch {
		case err != nil:
			n.giveUp(m, err)
		case nt == nil:
			n.decide(m, nil)
		default:
			nts[i] = nt
			if _, ok := byAlert[nt.Event.AlertID]; !ok {
				alerts = append(alerts, nt.Event.AlertID)
			}
			byAlert[nt.Event.AlertID] = append(byAlert[nt.Event.AlertID], i)
		}
	}

	errs := make([]error, len(batch))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, alert := range alerts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, i := range byAlert[alert] {
				ev := nts[i].Event
				log := n.logger.With("event", ev.ID, "alert", ev.AlertID, "rule", ev.RuleID, "agent", ev.AgentID, "to", ev.To)
				err := safeExec(ectx, log, n.pipeline, nts[i])
				switch {
				case err == nil:
					n.decide(batch[i], nil)
				case transient(err):
					errs[i] = err
					return // the alert's later transitions wait for this one
				default:
					n.giveUp(batch[i], err)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delivering notifications: %w", err)
	}
	n.mu.Lock()
	clear(n.decided)
	n.mu.Unlock()
	return nil
}

// notificationOf decodes an entry: nil without error for a transition that notifies no one.
func notificationOf(m *stream.Message) (*Notification, error) {
	if m.Msg == nil {
		return nil, errors.New("entry has no message")
	}
	ev, err := alert.DecodeEvent(m.Msg.Payload)
	if err != nil {
		return nil, err
	}
	if !ev.Notify || len(ev.Channels) == 0 {
		return nil, nil
	}
	if ev.To != alert.StatusFiring && ev.To != alert.StatusResolved {
		return nil, fmt.Errorf("event %s notifies a transition to %q: only firing and resolved are sent", ev.ID, ev.To)
	}
	return &Notification{Event: ev, Labels: alertLabels(ev)}, nil
}

// giveUp rejects m with reason: the consumer dead-letters it and acks it.
func (n *Notifier) giveUp(m *stream.Message, reason error) {
	m.Reject(reason)
	n.decide(m, reason)
	n.metrics.poisoned.Inc()
	uuid := ""
	if m.Msg != nil {
		uuid = m.Msg.UUID
	}
	n.logger.Error("notification given up, sent to the dead-letter stream",
		"event", uuid, "id", m.ID, "dead_letter_stream", PoisonKey(n.cfg.Prefix), "reason", reason)
}

func (n *Notifier) decide(m *stream.Message, reason error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.decided[m.Stream+" "+m.ID] = reason
}

func (n *Notifier) decidedFor(m *stream.Message) (error, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	reason, ok := n.decided[m.Stream+" "+m.ID]
	return reason, ok
}
