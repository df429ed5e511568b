package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// RuleStore keeps alert rules. A rule is stored as its JSON (alert.Rule, the API's shape) with
// its name, kind and enabled flag alongside; the channels it names are also kept in
// alert_rule_channels, whose foreign keys keep rules and channels consistent. Every change writes
// its audit row in the same transaction.
type RuleStore struct {
	db *sqlx.DB
}

// NewRuleStore returns a RuleStore on db.
func NewRuleStore(db *sqlx.DB) *RuleStore {
	return &RuleStore{db: db}
}

const ruleColumns = `id, name, kind, spec, enabled, created_at, updated_at`

type ruleRow struct {
	ID        string    `db:"id"`
	Name      string    `db:"name"`
	Kind      string    `db:"kind"`
	Spec      []byte    `db:"spec"`
	Enabled   bool      `db:"enabled"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

func (r ruleRow) rule() (alert.Rule, error) {
	var rule alert.Rule
	if err := json.Unmarshal(r.Spec, &rule); err != nil {
		return alert.Rule{}, fmt.Errorf("decoding alert rule %s: %w", r.ID, err)
	}
	rule.ID = r.ID
	return rule, nil
}

// prepareRule validates r and returns it in its stored form: channel ids lowercased (the form
// the store hands out, so that callers may compare them as strings), and its JSON without the
// id. A problem is ErrInvalid wrapping an *alert.ValidationError.
func prepareRule(r alert.Rule) (alert.Rule, []byte, error) {
	if err := r.Validate(); err != nil {
		return alert.Rule{}, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	channels := make([]string, 0, len(r.Channels))
	for _, id := range r.Channels {
		if !validID(id) {
			return alert.Rule{}, nil, invalidField("channels", "%q is not a channel id", id)
		}
		id = strings.ToLower(id)
		if slices.Contains(channels, id) {
			return alert.Rule{}, nil, invalidField("channels", "lists %q twice", id)
		}
		channels = append(channels, id)
	}
	if len(channels) > 0 {
		r.Channels = channels
	}
	stored := r
	stored.ID = ""
	spec, err := json.Marshal(stored)
	if err != nil {
		return alert.Rule{}, nil, fmt.Errorf("encoding alert rule: %w", err)
	}
	return r, spec, nil
}

// invalidField returns ErrInvalid wrapping an *alert.ValidationError, the form every alerting
// store reports a bad member in, so that the API names the field the same way for all of them.
func invalidField(field, format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrInvalid, &alert.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// ruleWriteError turns a constraint violation on alert_rules into ErrConflict or ErrInvalid.
func ruleWriteError(err error, name string) error {
	if _, ok := violation(err, pqerror.UniqueViolation); ok {
		return fmt.Errorf("%w: an alert rule named %q already exists", ErrConflict, name)
	}
	if _, ok := violation(err, pqerror.CheckViolation); ok {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}

// setRuleChannels makes alert_rule_channels list exactly channels for rule id. A channel that
// does not exist is ErrInvalid naming it; the foreign key catches one deleted meanwhile.
func setRuleChannels(ctx context.Context, tx *sqlx.Tx, id string, channels []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM alert_rule_channels WHERE rule_id = $1`, id); err != nil {
		return fmt.Errorf("clearing channels of alert rule %s: %w", id, err)
	}
	if len(channels) == 0 {
		return nil
	}
	var found []string
	if err := tx.SelectContext(ctx, &found,
		`SELECT id::text FROM notification_channels WHERE id = ANY($1::uuid[])`, pq.Array(channels)); err != nil {
		return fmt.Errorf("looking up channels of alert rule: %w", err)
	}
	for _, c := range channels {
		if !slices.Contains(found, c) {
			return invalidField("channels", "no notification channel has id %q", c)
		}
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO alert_rule_channels (rule_id, channel_id) SELECT $1, unnest($2::uuid[])`,
		id, pq.Array(channels)); err != nil {
		if _, ok := violation(err, pqerror.ForeignKeyViolation); ok {
			return invalidField("channels", "a notification channel it names was just deleted")
		}
		return fmt.Errorf("storing channels of alert rule %s: %w", id, err)
	}
	return nil
}

// ruleAudit returns the details of a rule's audit row: its name and its whole JSON.
func ruleAudit(r alert.Rule, spec []byte) map[string]any {
	return map[string]any{"name": r.Name, "rule": json.RawMessage(spec)}
}

// Create validates r, stores it under a new id (r.ID is ignored) and audits it as actor's
// rule.create. An invalid rule is ErrInvalid wrapping the *alert.ValidationError (errors.As
// finds it), as is a channel id that names no notification channel (Field "channels"); a taken
// name is ErrConflict. The rule returned is the one stored, with its id and with channel ids in
// lowercase.
func (s *RuleStore) Create(ctx context.Context, r alert.Rule, actor string) (alert.Rule, error) {
	if err := checkActor(actor); err != nil {
		return alert.Rule{}, err
	}
	r, spec, err := prepareRule(r)
	if err != nil {
		return alert.Rule{}, err
	}
	return writeAudited(ctx, s.db, func(tx *sqlx.Tx, row *ruleRow) error {
		if err := tx.GetContext(ctx, row, `
			INSERT INTO alert_rules (name, kind, spec, enabled) VALUES ($1, $2, CAST($3 AS jsonb), $4)
			RETURNING `+ruleColumns, r.Name, string(r.Kind), string(spec), r.Enabled); err != nil {
			return fmt.Errorf("creating alert rule: %w", ruleWriteError(err, r.Name))
		}
		return setRuleChannels(ctx, tx, row.ID, r.Channels)
	}, ruleRow.rule, func(tx *sqlx.Tx, out alert.Rule) error {
		return writeAudit(ctx, tx, actor, ActionRuleCreate, out.ID, ruleAudit(r, spec))
	})
}

// Get returns the rule with id, or ErrNotFound (also for an id that is not a UUID).
func (s *RuleStore) Get(ctx context.Context, id string) (alert.Rule, error) {
	row, err := getByID[ruleRow](ctx, s.db, "alert rule", "alert_rules", ruleColumns, id)
	if err != nil {
		return alert.Rule{}, err
	}
	return row.rule()
}

// List returns every rule, enabled or not, ordered by name.
func (s *RuleStore) List(ctx context.Context) ([]alert.Rule, error) {
	var rows []ruleRow
	if err := s.db.SelectContext(ctx, &rows,
		`SELECT `+ruleColumns+` FROM alert_rules ORDER BY name, id`); err != nil {
		return nil, fmt.Errorf("listing alert rules: %w", err)
	}
	return fromRows(rows, ruleRow.rule)
}

// Update validates r and replaces the rule with id r.ID by it, and audits it as actor's
// rule.update. An unknown id (or one that is not a UUID) is ErrNotFound; an invalid rule or an
// unknown channel is ErrInvalid as for Create; a name taken by another rule is ErrConflict.
func (s *RuleStore) Update(ctx context.Context, r alert.Rule, actor string) (alert.Rule, error) {
	if err := checkChange(actor, "alert rule", r.ID); err != nil {
		return alert.Rule{}, err
	}
	r, spec, err := prepareRule(r)
	if err != nil {
		return alert.Rule{}, err
	}
	return writeAudited(ctx, s.db, func(tx *sqlx.Tx, row *ruleRow) error {
		err := tx.GetContext(ctx, row, `
			UPDATE alert_rules SET name = $2, kind = $3, spec = CAST($4 AS jsonb), enabled = $5, updated_at = now()
			WHERE id = $1
			RETURNING `+ruleColumns, r.ID, r.Name, string(r.Kind), string(spec), r.Enabled)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("alert rule %s: %w", r.ID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("updating alert rule %s: %w", r.ID, ruleWriteError(err, r.Name))
		}
		return setRuleChannels(ctx, tx, row.ID, r.Channels)
	}, ruleRow.rule, func(tx *sqlx.Tx, out alert.Rule) error {
		return writeAudit(ctx, tx, actor, ActionRuleUpdate, out.ID, ruleAudit(r, spec))
	})
}

// Delete removes rule id and audits it as actor's rule.delete. Its alert events stay in the
// history. An unknown id is ErrNotFound.
func (s *RuleStore) Delete(ctx context.Context, id, actor string) error {
	if err := checkChange(actor, "alert rule", id); err != nil {
		return err
	}
	return inTx(ctx, s.db, nil, func(tx *sqlx.Tx) error {
		name, err := deleteByID(ctx, tx, "alert rule", "alert_rules", "name", id)
		if err != nil {
			return err
		}
		return writeAudit(ctx, tx, actor, ActionRuleDelete, id, map[string]any{"name": name})
	})
}
