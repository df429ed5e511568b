package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/notify"
)

func TestNotificationChannelTestSend(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		bodies []string
		sigs   []string
		status = http.StatusOK
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(b))
		sigs = append(sigs, r.Header.Get(notify.SignatureHeader))
		w.WriteHeader(status)
	}))
	t.Cleanup(receiver.Close)

	e := newEnv(t, func(c *Config) { c.WebhookAllowedNetworks = []string{"127.0.0.0/8"} })
	admin := e.adminToken()
	viewer := e.userToken(admin, "vivi", "viewer")
	r := e.do(req{method: "POST", path: "/api/v1/notification-channels", auth: bearer(admin),
		body: map[string]any{"name": "ops", "type": "webhook", "url": receiver.URL + "/hook", "secret": "s3cret", "enabled": true}})
	if r.status != http.StatusCreated {
		t.Fatalf("creating a channel = %s", r)
	}
	id := decode[struct {
		ID string `json:"id"`
	}](t, r).ID
	path := "/api/v1/notification-channels/" + id + "/test"

	if r := e.do(req{method: "POST", path: path, auth: bearer(viewer)}); r.status != http.StatusForbidden {
		t.Errorf("test send as a viewer = %s, want 403", r)
	}
	if r := e.do(req{method: "POST", path: "/api/v1/notification-channels/00000000-0000-0000-0000-000000000000/test", auth: bearer(admin)}); r.status != http.StatusNotFound {
		t.Errorf("test send to an unknown channel = %s, want 404", r)
	}
	if r := e.do(req{method: "POST", path: path, auth: bearer(admin)}); r.status != http.StatusOK || !strings.Contains(string(r.body), `"delivered":true`) {
		t.Fatalf("test send = %s, want 200 delivered", r)
	}
	mu.Lock()
	if len(bodies) != 1 || !strings.Contains(bodies[0], "AgentMonitorTest") || sigs[0] != notify.Sign("s3cret", []byte(bodies[0])) {
		t.Errorf("the receiver got %q with signature %q, want one signed test notification", bodies, sigs)
	}
	var body notify.WebhookBody
	if err := json.Unmarshal([]byte(bodies[0]), &body); err != nil || body.Receiver != "ops" || len(body.Alerts) != 1 {
		t.Errorf("test notification body = %+v (%v), want the webhook shape for receiver ops", body, err)
	}
	status = http.StatusInternalServerError
	mu.Unlock()
	r = e.do(req{method: "POST", path: path, auth: bearer(admin)})
	if r.status != http.StatusBadGateway || !strings.Contains(r.errorMessage(t), "500") || strings.Contains(string(r.body), receiver.URL) {
		t.Errorf("test send to a failing receiver = %s, want 502 naming its 500 and not the URL", r)
	}
}
