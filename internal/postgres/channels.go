package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq/pqerror"
	"golang.org/x/net/http/httpguts"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/egress"
)

// ChannelTypeWebhook is the only channel type: an HTTP POST of an Alertmanager v4 webhook body.
const ChannelTypeWebhook = "webhook"

// Bounds Channel.Validate enforces.
const (
	MaxChannelNameLen   = 200  // bytes of Name
	MaxChannelURLLen    = 2048 // bytes of URL
	MaxChannelSecretLen = 1024 // bytes of Secret
	MaxChannelHeaders   = 32   // entries of Headers
	MaxHeaderValueLen   = 1024 // bytes of a header value
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
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	URL       string            `json:"url"`
	Secret    string            `json:"-"`
	Headers   map[string]string `json:"headers"`
	Enabled   bool              `json:"enabled"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Validate returns an *alert.ValidationError naming the first invalid member, or nil: a name of
// 1-200 bytes without control characters, type "webhook", an absolute http or https URL with a
// host and without user info (credentials in URLs end up in logs: use headers or the secret), a
// secret of at most 1024 bytes, and at most 32 headers with valid HTTP names (each once, in any
// case) and values, none of them one the notifier sets itself. It ignores ID and the timestamps.
func (c Channel) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return nil // not a nil *alert.ValidationError in a non-nil error
}

func (c *Channel) validate() *alert.ValidationError {
	switch {
	case strings.TrimSpace(c.Name) == "":
		return fieldError("name", "must not be blank")
	case len(c.Name) > MaxChannelNameLen:
		return fieldError("name", "must be at most %d bytes, got %d", MaxChannelNameLen, len(c.Name))
	case !utf8.ValidString(c.Name):
		return fieldError("name", "must be valid UTF-8")
	case strings.ContainsFunc(c.Name, unicode.IsControl):
		return fieldError("name", "must not contain control characters")
	}
	switch c.Type {
	case ChannelTypeWebhook:
	case "":
		return fieldError("type", "is required: %q", ChannelTypeWebhook)
	default:
		return fieldError("type", "must be %q, got %q", ChannelTypeWebhook, c.Type)
	}
	if err := checkWebhookURL(c.URL); err != nil {
		return err
	}
	switch {
	case len(c.Secret) > MaxChannelSecretLen:
		return fieldError("secret", "must be at most %d bytes, got %d", MaxChannelSecretLen, len(c.Secret))
	case !utf8.ValidString(c.Secret) || strings.ContainsRune(c.Secret, 0):
		return fieldError("secret", "must be valid UTF-8 without NUL bytes")
	}
	return checkHeaders(c.Headers)
}

func fieldError(field, format string, args ...any) *alert.ValidationError {
	return &alert.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func checkWebhookURL(raw string) *alert.ValidationError {
	if raw == "" {
		return fieldError("url", "is required: an absolute http or https URL")
	}
	if len(raw) > MaxChannelURLLen {
		return fieldError("url", "must be at most %d bytes, got %d", MaxChannelURLLen, len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fieldError("url", "does not parse: %v", errors.Unwrap(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fieldError("url", "must be an absolute http or https URL, got scheme %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return fieldError("url", "must name a host")
	case u.User != nil:
		return fieldError("url", "must not contain a user or password: send credentials in headers or sign with the secret")
	}
	// Which addresses may be reached depends on the operator's allow-list: the gateway and the
	// notifier check that (egress.Policy); a host that spells an address oddly is never valid.
	if err := egress.CheckHostSpelling(u.Hostname()); err != nil {
		return fieldError("url", "%v", err)
	}
	return nil
}

func checkHeaders(h map[string]string) *alert.ValidationError {
	if len(h) > MaxChannelHeaders {
		return fieldError("headers", "must have at most %d entries, got %d", MaxChannelHeaders, len(h))
	}
	seen := make(map[string]string, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		if !httpguts.ValidHeaderFieldName(name) {
			return fieldError("headers", "%q is not a valid HTTP header name", name)
		}
		canonical := http.CanonicalHeaderKey(name)
		if prev, ok := seen[canonical]; ok {
			return fieldError("headers", "%q and %q are the same header", prev, name)
		}
		seen[canonical] = name
		if slices.Contains(reservedHeaders, canonical) {
			return fieldError("headers", "%q is set by the notifier and cannot be overridden", name)
		}
		v := h[name]
		if len(v) > MaxHeaderValueLen {
			return fieldError("headers", "value of %q must be at most %d bytes, got %d", name, MaxHeaderValueLen, len(v))
		}
		if !httpguts.ValidHeaderFieldValue(v) || !utf8.ValidString(v) {
			return fieldError("headers", "value of %q is not a valid HTTP header value", name)
		}
	}
	return nil
}

// ChannelStore keeps notification channels. Every change writes its audit row (without the
// secret or header values, which may hold credentials) in the same transaction.
type ChannelStore struct {
	db *sqlx.DB
}

// NewChannelStore returns a ChannelStore on db.
func NewChannelStore(db *sqlx.DB) *ChannelStore {
	return &ChannelStore{db: db}
}

const channelColumns = `id, name, type, url, secret, headers, enabled, created_at, updated_at`

type channelRow struct {
	ID        string    `db:"id"`
	Name      string    `db:"name"`
	Type      string    `db:"type"`
	URL       string    `db:"url"`
	Secret    string    `db:"secret"`
	Headers   []byte    `db:"headers"`
	Enabled   bool      `db:"enabled"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

func (r channelRow) channel() (Channel, error) {
	c := Channel{
		ID: r.ID, Name: r.Name, Type: r.Type, URL: r.URL, Secret: r.Secret, Enabled: r.Enabled,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if err := json.Unmarshal(r.Headers, &c.Headers); err != nil {
		return Channel{}, fmt.Errorf("decoding headers of notification channel %s: %w", r.ID, err)
	}
	if c.Headers == nil {
		c.Headers = map[string]string{}
	}
	return c, nil
}

// prepareChannel validates c and returns its headers as JSON.
func prepareChannel(c Channel) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	headers := c.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	b, err := json.Marshal(headers)
	if err != nil {
		return nil, fmt.Errorf("encoding channel headers: %w", err)
	}
	return b, nil
}

// channelAudit returns the details of a channel's audit row: what it is and where it sends,
// never its secret or header values.
func channelAudit(c Channel) map[string]any {
	return map[string]any{
		"name": c.Name, "type": c.Type, "url": c.URL, "enabled": c.Enabled,
		"signed": c.Secret != "", "headers": slices.Sorted(maps.Keys(c.Headers)),
	}
}

func channelWriteError(err error, name string) error {
	if _, ok := violation(err, pqerror.UniqueViolation); ok {
		return fmt.Errorf("%w: a notification channel named %q already exists", ErrConflict, name)
	}
	if _, ok := violation(err, pqerror.CheckViolation); ok {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// Create validates c, stores it under a new id (c.ID and the timestamps are ignored) and audits
// it as actor's channel.create. An invalid channel is ErrInvalid wrapping the
// *alert.ValidationError; a taken name is ErrConflict.
func (s *ChannelStore) Create(ctx context.Context, c Channel, actor string) (Channel, error) {
	if err := checkActor(actor); err != nil {
		return Channel{}, err
	}
	headers, err := prepareChannel(c)
	if err != nil {
		return Channel{}, err
	}
	var out Channel
	err = inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		var row channelRow
		if err := tx.GetContext(ctx, &row, `
			INSERT INTO notification_channels (name, type, url, secret, headers, enabled)
			VALUES ($1, $2, $3, $4, CAST($5 AS jsonb), $6)
			RETURNING `+channelColumns, c.Name, c.Type, c.URL, c.Secret, string(headers), c.Enabled); err != nil {
			return fmt.Errorf("creating notification channel: %w", channelWriteError(err, c.Name))
		}
		if out, err = row.channel(); err != nil {
			return err
		}
		return writeAudit(ctx, tx, actor, ActionChannelCreate, out.ID, channelAudit(out))
	})
	if err != nil {
		return Channel{}, err
	}
	return out, nil
}

// Get returns the channel with id, secret included, or ErrNotFound (also for an id that is not a
// UUID).
func (s *ChannelStore) Get(ctx context.Context, id string) (Channel, error) {
	if !validID(id) {
		return Channel{}, fmt.Errorf("notification channel %q: %w", id, ErrNotFound)
	}
	var row channelRow
	err := s.db.GetContext(ctx, &row, `SELECT `+channelColumns+` FROM notification_channels WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Channel{}, fmt.Errorf("notification channel %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Channel{}, fmt.Errorf("getting notification channel %s: %w", id, err)
	}
	return row.channel()
}

// List returns every channel, secrets included, ordered by name.
func (s *ChannelStore) List(ctx context.Context) ([]Channel, error) {
	var rows []channelRow
	if err := s.db.SelectContext(ctx, &rows,
		`SELECT `+channelColumns+` FROM notification_channels ORDER BY name, id`); err != nil {
		return nil, fmt.Errorf("listing notification channels: %w", err)
	}
	channels := make([]Channel, 0, len(rows))
	for _, row := range rows {
		c, err := row.channel()
		if err != nil {
			return nil, err
		}
		channels = append(channels, c)
	}
	return channels, nil
}

// Update validates c and replaces every member of the channel with id c.ID by c's, the secret
// included (a caller that keeps the secret passes the stored one, which Get returns), and audits
// it as actor's channel.update. An unknown id is ErrNotFound; an invalid channel ErrInvalid; a
// name taken by another channel ErrConflict.
func (s *ChannelStore) Update(ctx context.Context, c Channel, actor string) (Channel, error) {
	if err := checkActor(actor); err != nil {
		return Channel{}, err
	}
	if !validID(c.ID) {
		return Channel{}, fmt.Errorf("notification channel %q: %w", c.ID, ErrNotFound)
	}
	headers, err := prepareChannel(c)
	if err != nil {
		return Channel{}, err
	}
	var out Channel
	err = inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		var row channelRow
		err := tx.GetContext(ctx, &row, `
			UPDATE notification_channels
			SET name = $2, type = $3, url = $4, secret = $5, headers = CAST($6 AS jsonb), enabled = $7, updated_at = now()
			WHERE id = $1
			RETURNING `+channelColumns, c.ID, c.Name, c.Type, c.URL, c.Secret, string(headers), c.Enabled)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("notification channel %s: %w", c.ID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("updating notification channel %s: %w", c.ID, channelWriteError(err, c.Name))
		}
		if out, err = row.channel(); err != nil {
			return err
		}
		return writeAudit(ctx, tx, actor, ActionChannelUpdate, out.ID, channelAudit(out))
	})
	if err != nil {
		return Channel{}, err
	}
	return out, nil
}

// Delete removes channel id and audits it as actor's channel.delete. An unknown id is
// ErrNotFound; a channel that rules still name is ErrConflict naming those rules (remove it from
// them first), so that no rule silently loses its notifications.
func (s *ChannelStore) Delete(ctx context.Context, id, actor string) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if !validID(id) {
		return fmt.Errorf("notification channel %q: %w", id, ErrNotFound)
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		var name string
		err := tx.GetContext(ctx, &name, `DELETE FROM notification_channels WHERE id = $1 RETURNING name`, id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("notification channel %s: %w", id, ErrNotFound)
		}
		if _, ok := violation(err, pqerror.ForeignKeyViolation); ok {
			return s.inUse(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("deleting notification channel %s: %w", id, err)
		}
		return writeAudit(ctx, tx, actor, ActionChannelDelete, id, map[string]any{"name": name})
	})
}

// inUse returns the ErrConflict for deleting channel id, naming the rules that use it (read
// outside the failed transaction, which can run no more statements).
func (s *ChannelStore) inUse(ctx context.Context, id string) error {
	var names []string
	if err := s.db.SelectContext(ctx, &names, `
		SELECT r.name FROM alert_rules r JOIN alert_rule_channels rc ON rc.rule_id = r.id
		WHERE rc.channel_id = $1 ORDER BY r.name LIMIT 10`, id); err != nil {
		return fmt.Errorf("%w: notification channel %s is used by alert rules", ErrConflict, id)
	}
	return fmt.Errorf("%w: notification channel %s is used by alert rules %q: remove it from them first", ErrConflict, id, names)
}
