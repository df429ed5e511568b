package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq/pqerror"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// ChannelStore keeps notification channels. Every change writes its audit row (without the
// secret or header values, which may hold credentials) in the same transaction.
type ChannelStore struct {
	db *sqlx.DB
}

// NewChannelStore returns a ChannelStore on db.
func NewChannelStore(db *sqlx.DB) *ChannelStore {
	return &ChannelStore{db: db}
}

const channelColumns = `id, name, type, url, secret, headers, enabled, repeat_interval_seconds, group_by, group_wait_seconds, email_to, created_at, updated_at`

type channelRow struct {
	ID        string    `db:"id"`
	Name      string    `db:"name"`
	Type      string    `db:"type"`
	URL       string    `db:"url"`
	Secret    string    `db:"secret"`
	Headers   []byte    `db:"headers"`
	Enabled   bool      `db:"enabled"`
	Repeat    int64     `db:"repeat_interval_seconds"`
	GroupBy   []byte    `db:"group_by"`
	GroupWait int64     `db:"group_wait_seconds"`
	EmailTo   []byte    `db:"email_to"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

func (r channelRow) channel() (alert.Channel, error) {
	c := alert.Channel{
		ID: r.ID, Name: r.Name, Type: r.Type, URL: r.URL, Secret: r.Secret, Enabled: r.Enabled,
		RepeatInterval: time.Duration(r.Repeat) * time.Second,
		GroupWait:      time.Duration(r.GroupWait) * time.Second,
		CreatedAt:      r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if err := json.Unmarshal(r.Headers, &c.Headers); err != nil {
		return alert.Channel{}, fmt.Errorf("decoding headers of notification channel %s: %w", r.ID, err)
	}
	if c.Headers == nil {
		c.Headers = map[string]string{}
	}
	if err := json.Unmarshal(r.GroupBy, &c.GroupBy); err != nil {
		return alert.Channel{}, fmt.Errorf("decoding group_by of notification channel %s: %w", r.ID, err)
	}
	if c.GroupBy == nil {
		c.GroupBy = []string{}
	}
	if err := json.Unmarshal(r.EmailTo, &c.To); err != nil {
		return alert.Channel{}, fmt.Errorf("decoding email_to of notification channel %s: %w", r.ID, err)
	}
	if c.To == nil {
		c.To = []string{}
	}
	return c, nil
}

// prepareChannel validates c and returns its headers and group_by as JSON.
func prepareChannel(c alert.Channel) (headersJSON, groupByJSON, toJSON []byte, err error) {
	if err := c.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	headers := c.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	if headersJSON, err = json.Marshal(headers); err != nil {
		return nil, nil, nil, fmt.Errorf("encoding channel headers: %w", err)
	}
	groupBy := c.GroupBy
	if groupBy == nil {
		groupBy = []string{}
	}
	if groupByJSON, err = json.Marshal(groupBy); err != nil {
		return nil, nil, nil, fmt.Errorf("encoding channel group_by: %w", err)
	}
	to := c.To
	if to == nil {
		to = []string{}
	}
	if toJSON, err = json.Marshal(to); err != nil {
		return nil, nil, nil, fmt.Errorf("encoding channel to: %w", err)
	}
	return headersJSON, groupByJSON, toJSON, nil
}

// channelAudit returns the details of a channel's audit row: what it is and where it sends,
// never its secret or header values.
func channelAudit(c alert.Channel) map[string]any {
	return map[string]any{
		"name": c.Name, "type": c.Type, "url": c.URL, "enabled": c.Enabled,
		"signed": c.Secret != "", "headers": slices.Sorted(maps.Keys(c.Headers)),
		"repeat_interval": c.RepeatInterval.String(), "group_by": c.GroupBy, "group_wait": c.GroupWait.String(),
		"to": c.To,
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
func (s *ChannelStore) Create(ctx context.Context, c alert.Channel, actor string) (alert.Channel, error) {
	if err := checkActor(actor); err != nil {
		return alert.Channel{}, err
	}
	headers, groupBy, to, err := prepareChannel(c)
	if err != nil {
		return alert.Channel{}, err
	}
	return writeAudited(ctx, s.db, func(tx *sqlx.Tx, row *channelRow) error {
		if err := tx.GetContext(ctx, row, `
			INSERT INTO notification_channels (name, type, url, secret, headers, enabled, repeat_interval_seconds, group_by, group_wait_seconds, email_to)
			VALUES ($1, $2, $3, $4, CAST($5 AS jsonb), $6, $7, CAST($8 AS jsonb), $9, CAST($10 AS jsonb))
			RETURNING `+channelColumns, c.Name, c.Type, c.URL, c.Secret, string(headers), c.Enabled,
			int64(c.RepeatInterval/time.Second), string(groupBy), int64(c.GroupWait/time.Second), string(to)); err != nil {
			return fmt.Errorf("creating notification channel: %w", channelWriteError(err, c.Name))
		}
		return nil
	}, channelRow.channel, func(tx *sqlx.Tx, out alert.Channel) error {
		return writeAudit(ctx, tx, actor, ActionChannelCreate, out.ID, channelAudit(out))
	})
}

// Get returns the channel with id, secret included, or ErrNotFound (also for an id that is not a
// UUID).
func (s *ChannelStore) Get(ctx context.Context, id string) (alert.Channel, error) {
	row, err := getByID[channelRow](ctx, s.db, "notification channel", "notification_channels", channelColumns, id)
	if err != nil {
		return alert.Channel{}, err
	}
	return row.channel()
}

// List returns every channel, secrets included, ordered by name.
func (s *ChannelStore) List(ctx context.Context) ([]alert.Channel, error) {
	var rows []channelRow
	if err := s.db.SelectContext(ctx, &rows,
		`SELECT `+channelColumns+` FROM notification_channels ORDER BY name, id`); err != nil {
		return nil, fmt.Errorf("listing notification channels: %w", err)
	}
	return fromRows(rows, channelRow.channel)
}

// Update validates c and replaces every member of the channel with id c.ID by c's, the secret
// included (a caller that keeps the secret passes the stored one, which Get returns), and audits
// it as actor's channel.update. An unknown id is ErrNotFound; an invalid channel ErrInvalid; a
// name taken by another channel ErrConflict.
func (s *ChannelStore) Update(ctx context.Context, c alert.Channel, actor string) (alert.Channel, error) {
	if err := checkChange(actor, "notification channel", c.ID); err != nil {
		return alert.Channel{}, err
	}
	headers, groupBy, to, err := prepareChannel(c)
	if err != nil {
		return alert.Channel{}, err
	}
	return writeAudited(ctx, s.db, func(tx *sqlx.Tx, row *channelRow) error {
		err := tx.GetContext(ctx, row, `
			UPDATE notification_channels
			SET name = $2, type = $3, url = $4, secret = $5, headers = CAST($6 AS jsonb), enabled = $7,
			    repeat_interval_seconds = $8, group_by = CAST($9 AS jsonb), group_wait_seconds = $10, email_to = CAST($11 AS jsonb), updated_at = now()
			WHERE id = $1
			RETURNING `+channelColumns, c.ID, c.Name, c.Type, c.URL, c.Secret, string(headers), c.Enabled,
			int64(c.RepeatInterval/time.Second), string(groupBy), int64(c.GroupWait/time.Second), string(to))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("notification channel %s: %w", c.ID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("updating notification channel %s: %w", c.ID, channelWriteError(err, c.Name))
		}
		return nil
	}, channelRow.channel, func(tx *sqlx.Tx, out alert.Channel) error {
		return writeAudit(ctx, tx, actor, ActionChannelUpdate, out.ID, channelAudit(out))
	})
}

// Delete removes channel id and audits it as actor's channel.delete. An unknown id is
// ErrNotFound; a channel that rules still name is ErrConflict naming those rules (remove it from
// them first), so that no rule silently loses its notifications.
func (s *ChannelStore) Delete(ctx context.Context, id, actor string) error {
	if err := checkChange(actor, "notification channel", id); err != nil {
		return err
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		name, err := deleteByID(ctx, tx, "notification channel", "notification_channels", "name", id)
		if _, ok := violation(err, pqerror.ForeignKeyViolation); ok {
			return s.inUse(ctx, id)
		}
		if err != nil {
			return err
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
