package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/egress"
)

// TestSender sends test notifications to a channel the way the notifier delivers alerts: the same
// body shape, headers and signature, through the same egress policy (checked at every
// connection), timeouts and refusal of redirects. The gateway uses it for
// POST /api/v1/notification-channels/{id}/test.
type TestSender struct {
	n *Notifier
}

// NewTestSender returns a TestSender whose connections policy checks, each attempt bounded by
// timeout.
func NewTestSender(policy *egress.Policy, timeout time.Duration) *TestSender {
	return &TestSender{n: &Notifier{http: webhookClient(policy, timeout)}}
}

// Send posts one test notification to ch, naming who asked for it, and returns nil when the
// receiver answered 2xx; otherwise the error says why (never with the URL, which may hold a
// credential).
func (s *TestSender) Send(ctx context.Context, ch alert.Channel, by string, now time.Time) error {
	id := fmt.Sprintf("test-%d", now.UnixNano())
	labels := map[string]string{"alertname": "AgentMonitorTest", "severity": "info"}
	summary := fmt.Sprintf("Test notification from Agent Monitor, sent by %s to channel %s", by, ch.Name)
	body := WebhookBody{
		Version: "4", GroupKey: "test", Status: "firing", Receiver: ch.Name,
		GroupLabels: map[string]string{}, CommonLabels: labels,
		CommonAnnotations: map[string]string{"summary": summary},
		Alerts: []WebhookAlert{{
			Status: "firing", Labels: labels, Annotations: map[string]string{"summary": summary},
			StartsAt: now.UTC(), Fingerprint: id,
		}},
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding the test notification: %w", err)
	}
	if err := s.n.post(ctx, ch, id, b); err != nil {
		return fmt.Errorf("sending the test notification: %w", err)
	}
	return nil
}
