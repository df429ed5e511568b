package alert_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

func TestChannelValidate(t *testing.T) {
	valid := alert.Channel{
		Name: "ops", Type: "webhook", URL: "https://hooks.example.com/alerts?x=1", Secret: "s3cret",
		Headers: map[string]string{"Authorization": "Bearer abc", "X-Team": "infra"},
	}
	manyHeaders := map[string]string{}
	for i := range 33 {
		manyHeaders[fmt.Sprintf("X-H%d", i)] = "v"
	}
	tests := []struct {
		name  string
		edit  func(c *alert.Channel)
		field string
	}{
		{"valid", func(c *alert.Channel) {}, ""},
		{"http and port", func(c *alert.Channel) { c.URL = "http://10.0.0.1:9000/hook" }, ""},
		{"no secret, no headers", func(c *alert.Channel) { c.Secret, c.Headers = "", nil }, ""},
		{"blank name", func(c *alert.Channel) { c.Name = "  " }, "name"},
		{"long name", func(c *alert.Channel) { c.Name = strings.Repeat("n", 201) }, "name"},
		{"control char in name", func(c *alert.Channel) { c.Name = "a\nb" }, "name"},
		{"no type", func(c *alert.Channel) { c.Type = "" }, "type"},
		{"other type", func(c *alert.Channel) { c.Type = "sms" }, "type"},
		{"to on a webhook", func(c *alert.Channel) { c.To = []string{"ops@example.com"} }, "to"},
		{"email", func(c *alert.Channel) {
			*c = alert.Channel{Name: "mail", Type: "email", To: []string{"ops@example.com", "b@example.org"}}
		}, ""},
		{"email without to", func(c *alert.Channel) { *c = alert.Channel{Name: "mail", Type: "email"} }, "to"},
		{"email bad to", func(c *alert.Channel) {
			*c = alert.Channel{Name: "mail", Type: "email", To: []string{"not an address"}}
		}, "to"},
		{"email header injection", func(c *alert.Channel) {
			*c = alert.Channel{Name: "mail", Type: "email", To: []string{"a@example.com\r\nBcc: x@evil.com"}}
		}, "to"},
		{"email with url", func(c *alert.Channel) {
			*c = alert.Channel{Name: "mail", Type: "email", URL: "https://x.example", To: []string{"a@example.com"}}
		}, "url"},
		{"no url", func(c *alert.Channel) { c.URL = "" }, "url"},
		{"relative url", func(c *alert.Channel) { c.URL = "/hook" }, "url"},
		{"ftp url", func(c *alert.Channel) { c.URL = "ftp://example.com/x" }, "url"},
		{"no host", func(c *alert.Channel) { c.URL = "https:///path" }, "url"},
		{"port only", func(c *alert.Channel) { c.URL = "http://:80/" }, "url"},
		{"user info", func(c *alert.Channel) { c.URL = "https://user:pw@example.com/" }, "url"},
		{"unparsable url", func(c *alert.Channel) { c.URL = "http://exa mple.com/\x7f" }, "url"},
		{"long url", func(c *alert.Channel) { c.URL = "https://example.com/" + strings.Repeat("a", 2048) }, "url"},
		{"decimal address", func(c *alert.Channel) { c.URL = "http://2130706433/" }, "url"},
		{"hex address", func(c *alert.Channel) { c.URL = "http://0x7f000001/" }, "url"},
		{"short address", func(c *alert.Channel) { c.URL = "http://127.1:8080/" }, "url"},
		{"long secret", func(c *alert.Channel) { c.Secret = strings.Repeat("s", 1025) }, "secret"},
		{"NUL in secret", func(c *alert.Channel) { c.Secret = "a\x00b" }, "secret"},
		{"bad header name", func(c *alert.Channel) { c.Headers = map[string]string{"X Team": "v"} }, "headers"},
		{"empty header name", func(c *alert.Channel) { c.Headers = map[string]string{"": "v"} }, "headers"},
		{"header value with newline", func(c *alert.Channel) { c.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }, "headers"},
		{"same header twice", func(c *alert.Channel) { c.Headers = map[string]string{"X-Team": "a", "x-team": "b"} }, "headers"},
		{"content-type", func(c *alert.Channel) { c.Headers = map[string]string{"content-type": "text/plain"} }, "headers"},
		{"signature header", func(c *alert.Channel) { c.Headers = map[string]string{"X-AgentMonitor-Signature": "x"} }, "headers"},
		{"host header", func(c *alert.Channel) { c.Headers = map[string]string{"Host": "evil"} }, "headers"},
		{"repeat every 4h", func(c *alert.Channel) { c.RepeatInterval = 4 * time.Hour }, ""},
		{"repeat every minute", func(c *alert.Channel) { c.RepeatInterval = time.Minute }, ""},
		{"repeat every 30 days", func(c *alert.Channel) { c.RepeatInterval = 30 * 24 * time.Hour }, ""},
		{"repeat too often", func(c *alert.Channel) { c.RepeatInterval = 59 * time.Second }, "repeat_interval"},
		{"repeat negative", func(c *alert.Channel) { c.RepeatInterval = -time.Hour }, "repeat_interval"},
		{"repeat too rare", func(c *alert.Channel) { c.RepeatInterval = 31 * 24 * time.Hour }, "repeat_interval"},
		{"group by rule and agent", func(c *alert.Channel) { c.GroupBy, c.GroupWait = []string{"rule_id", "agent"}, 10*time.Second }, ""},
		{"group without wait", func(c *alert.Channel) { c.GroupBy = []string{"alertname"} }, "group_wait"},
		{"group wait without group", func(c *alert.Channel) { c.GroupWait = 10 * time.Second }, "group_wait"},
		{"group wait too long", func(c *alert.Channel) { c.GroupBy, c.GroupWait = []string{"alertname"}, 2*time.Hour }, "group_wait"},
		{"group by bad label", func(c *alert.Channel) { c.GroupBy, c.GroupWait = []string{"rule id"}, time.Second }, "group_by"},
		{"group by twice", func(c *alert.Channel) { c.GroupBy, c.GroupWait = []string{"agent", "agent"}, time.Second }, "group_by"},
		{"repeat fraction of a second", func(c *alert.Channel) { c.RepeatInterval = time.Minute + time.Millisecond }, "repeat_interval"},
		{"too many headers", func(c *alert.Channel) { c.Headers = manyHeaders }, "headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var verr *alert.ValidationError
			if !errors.As(err, &verr) || verr.Field != tt.field {
				t.Errorf("Validate() = %v, want an *alert.ValidationError for field %q", err, tt.field)
			}
		})
	}
}

// The secret never appears in a channel's JSON.
func TestChannelJSONHasNoSecret(t *testing.T) {
	b, err := json.Marshal(alert.Channel{ID: "x", Name: "ops", Type: "webhook", URL: "https://e.com", Secret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cret") || strings.Contains(string(b), "secret") {
		t.Errorf("Marshal(channel) = %s, want no secret", b)
	}
}
