package alert

import (
	"errors"
	"maps"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentmonitor/agentmonitor/internal/egress"
	"golang.org/x/net/http/httpguts"
)

// ChannelTypeWebhook is the only channel type: an HTTP POST of an Alertmanager v4 webhook body.
const ChannelTypeWebhook = "webhook"

// ChannelTypeSlack is a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat and
// many chat tools): the same POST, with a {"text", "attachments"} body instead of
// Alertmanager's.
const ChannelTypeSlack = "slack"

// ChannelTypeEmail is e-mail over SMTP to the addresses in To, through the notifier's SMTP
// server (SMTP_ADDR and friends): a plain-text message per notification. It has no URL, secret
// or headers.
const ChannelTypeEmail = "email"

// MaxChannelTo bounds the addresses of an e-mail channel.
const MaxChannelTo = 20

// Bounds Channel.Validate enforces.
const (
	MaxChannelNameLen   = 200  // bytes of Name
	MaxChannelURLLen    = 2048 // bytes of URL
	MaxChannelSecretLen = 1024 // bytes of Secret
	MaxChannelHeaders   = 32   // entries of Headers
	MaxHeaderValueLen   = 1024 // bytes of a header value
	// MinRepeatInterval and MaxRepeatInterval bound a RepeatInterval other than 0: more often
	// than once a minute is a storm, not a reminder; the notifier keeps its delivery records
	// for 30 days.
	MinRepeatInterval = time.Minute
	MaxRepeatInterval = 30 * 24 * time.Hour
	// MaxGroupBy bounds the entries of GroupBy; GroupWait, when grouping, is 1s to 1h.
	MaxGroupBy   = 16
	MinGroupWait = time.Second
	MaxGroupWait = time.Hour
)

// reservedHeaders are set by the notifier on every delivery; a channel cannot override them.
var reservedHeaders = []string{
	"Connection", "Content-Encoding", "Content-Length", "Content-Type", "Host", "Transfer-Encoding",
	"X-Agentmonitor-Signature",
}

// Channel is a notification channel: where the alerts of the rules that name it are sent.
// Secret, when set, is the HMAC-SHA256 key of the signature header; it is never encoded to JSON
// (tag "-"), so that no API answer can leak it: a handler reads it from its own request type.
// Headers are sent with every delivery and are never nil when read from the store.
type Channel struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	URL     string            `json:"url"`
	Secret  string            `json:"-"`
	Headers map[string]string `json:"headers"`
	Enabled bool              `json:"enabled"`
	// RepeatInterval is how often an alert that stays firing is sent to this channel again
	// until it resolves (Alertmanager's repeat_interval); 0 sends it once.
	RepeatInterval time.Duration `json:"repeat_interval"`
	// GroupBy, when set, names the labels (of the notification: alertname, agent, rule_id,
	// severity, metric, series and the rule's labels) whose values make a group: the
	// transitions of one group that reach the channel within GroupWait of the first go out as
	// one notification (Alertmanager's group_by and group_wait). Empty: one notification each.
	GroupBy   []string      `json:"group_by"`
	GroupWait time.Duration `json:"group_wait"`
	// To holds the recipients of an e-mail channel (RFC 5322 addresses); empty for the others.
	To        []string  `json:"to"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate returns an *ValidationError naming the first invalid member, or nil: a name of
// 1-200 bytes without control characters, type "webhook" or "slack", an absolute http or https
// URL with a host and without user info (credentials in URLs end up in logs: use headers or the
// secret), a secret of at most 1024 bytes, and at most 32 headers with valid HTTP names (each
// once, in any case) and values, none of them one the notifier sets itself, and a repeat interval
// of 0 or whole seconds from 1 minute to 30 days. It ignores ID and the timestamps.
func (c Channel) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return nil // not a nil *ValidationError in a non-nil error
}

func (c *Channel) validate() *ValidationError {
	switch {
	case strings.TrimSpace(c.Name) == "":
		return invalid("name", "must not be blank")
	case len(c.Name) > MaxChannelNameLen:
		return invalid("name", "must be at most %d bytes, got %d", MaxChannelNameLen, len(c.Name))
	case !utf8.ValidString(c.Name):
		return invalid("name", "must be valid UTF-8")
	case strings.ContainsFunc(c.Name, unicode.IsControl):
		return invalid("name", "must not contain control characters")
	}
	switch c.Type {
	case ChannelTypeWebhook, ChannelTypeSlack:
		if len(c.To) > 0 {
			return invalid("to", "is for e-mail channels only")
		}
	case ChannelTypeEmail:
		if err := c.validateEmail(); err != nil {
			return err
		}
		return c.validateTiming()
	case "":
		return invalid("type", "is required: %q, %q or %q", ChannelTypeWebhook, ChannelTypeSlack, ChannelTypeEmail)
	default:
		return invalid("type", "must be %q, %q or %q, got %q", ChannelTypeWebhook, ChannelTypeSlack, ChannelTypeEmail, c.Type)
	}
	if err := checkWebhookURL(c.URL); err != nil {
		return err
	}
	switch {
	case len(c.Secret) > MaxChannelSecretLen:
		return invalid("secret", "must be at most %d bytes, got %d", MaxChannelSecretLen, len(c.Secret))
	case !utf8.ValidString(c.Secret) || strings.ContainsRune(c.Secret, 0):
		return invalid("secret", "must be valid UTF-8 without NUL bytes")
	}
	if err := checkHeaders(c.Headers); err != nil {
		return err
	}
	return c.validateTiming()
}

func (c *Channel) validateTiming() *ValidationError {
	if err := checkRepeatInterval(c.RepeatInterval); err != nil {
		return err
	}
	return checkGrouping(c.GroupBy, c.GroupWait)
}

// validateEmail checks the members of an e-mail channel: recipients, and no webhook members.
func (c *Channel) validateEmail() *ValidationError {
	switch {
	case c.URL != "":
		return invalid("url", "must be empty for an e-mail channel: the SMTP server is the notifier's (SMTP_ADDR)")
	case c.Secret != "":
		return invalid("secret", "must be empty for an e-mail channel")
	case len(c.Headers) > 0:
		return invalid("headers", "must be empty for an e-mail channel")
	case len(c.To) == 0:
		return invalid("to", "is required for an e-mail channel: at least one address")
	case len(c.To) > MaxChannelTo:
		return invalid("to", "must have at most %d addresses, got %d", MaxChannelTo, len(c.To))
	}
	for _, to := range c.To {
		if len(to) > 254 || strings.ContainsAny(to, "\r\n") {
			return invalid("to", "%q is not an e-mail address", to)
		}
		a, err := mail.ParseAddress(to)
		if err != nil || a.Name != "" || a.Address != to {
			return invalid("to", "%q is not a bare e-mail address such as ops@example.com", to)
		}
	}
	return nil
}

func checkGrouping(by []string, wait time.Duration) *ValidationError {
	if len(by) == 0 {
		if wait != 0 {
			return invalid("group_wait", "needs group_by: the labels that make a group")
		}
		return nil
	}
	if len(by) > MaxGroupBy {
		return invalid("group_by", "must have at most %d entries, got %d", MaxGroupBy, len(by))
	}
	for i, name := range by {
		if !isLabelName(name) || len(name) > MaxMapKeyLen {
			return invalid("group_by", "%q is not a label name (letters, digits and _, not starting with a digit)", name)
		}
		if slices.Contains(by[:i], name) {
			return invalid("group_by", "names %q twice", name)
		}
	}
	if wait < MinGroupWait || wait > MaxGroupWait || wait%time.Second != 0 {
		return invalid("group_wait", "must be whole seconds from %s to %s when group_by is set, got %s", MinGroupWait, MaxGroupWait, wait)
	}
	return nil
}

func checkRepeatInterval(d time.Duration) *ValidationError {
	switch {
	case d == 0:
		return nil
	case d < MinRepeatInterval || d > MaxRepeatInterval:
		return invalid("repeat_interval", "must be 0 (never repeat) or from %s to %s, got %s", MinRepeatInterval, MaxRepeatInterval, d)
	case d%time.Second != 0:
		return invalid("repeat_interval", "must be whole seconds, got %s", d)
	}
	return nil
}

func checkWebhookURL(raw string) *ValidationError {
	if raw == "" {
		return invalid("url", "is required: an absolute http or https URL")
	}
	if len(raw) > MaxChannelURLLen {
		return invalid("url", "must be at most %d bytes, got %d", MaxChannelURLLen, len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("url", "does not parse: %v", errors.Unwrap(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return invalid("url", "must be an absolute http or https URL, got scheme %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return invalid("url", "must name a host")
	case u.User != nil:
		return invalid("url", "must not contain a user or password: send credentials in headers or sign with the secret")
	}
	// Which addresses may be reached depends on the operator's allow-list: the gateway and the
	// notifier check that (egress.Policy); a host that spells an address oddly is never valid.
	if err := egress.CheckHostSpelling(u.Hostname()); err != nil {
		return invalid("url", "%v", err)
	}
	return nil
}

func checkHeaders(h map[string]string) *ValidationError {
	if len(h) > MaxChannelHeaders {
		return invalid("headers", "must have at most %d entries, got %d", MaxChannelHeaders, len(h))
	}
	seen := make(map[string]string, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		if !httpguts.ValidHeaderFieldName(name) {
			return invalid("headers", "%q is not a valid HTTP header name", name)
		}
		canonical := http.CanonicalHeaderKey(name)
		if prev, ok := seen[canonical]; ok {
			return invalid("headers", "%q and %q are the same header", prev, name)
		}
		seen[canonical] = name
		if slices.Contains(reservedHeaders, canonical) {
			return invalid("headers", "%q is set by the notifier and cannot be overridden", name)
		}
		v := h[name]
		if len(v) > MaxHeaderValueLen {
			return invalid("headers", "value of %q must be at most %d bytes, got %d", name, MaxHeaderValueLen, len(v))
		}
		if !httpguts.ValidHeaderFieldValue(v) || !utf8.ValidString(v) {
			return invalid("headers", "value of %q is not a valid HTTP header value", name)
		}
	}
	return nil
}
