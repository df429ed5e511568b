package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// AlertEvent is one alert transition as the history keeps it (table alert_events) and as
// GET /api/v1/alerts/history returns it. From and To are statuses (ok, pending, firing,
// resolved). Threshold and RecoveryValue are nil when the transition has none. Labels is never
// nil when read from the store. CreatedAt is when the row was written.
type AlertEvent struct {
	ID              string            `json:"id"`
	AlertID         string            `json:"alert_id"`
	RuleID          string            `json:"rule_id"`
	RuleName        string            `json:"rule_name"`
	Kind            string            `json:"kind"`
	AgentID         string            `json:"agent_id"`
	Series          string            `json:"series"`
	Metric          string            `json:"metric"`
	From            string            `json:"from"`
	To              string            `json:"to"`
	Severity        string            `json:"severity"`
	Value           float64           `json:"value"`
	Threshold       *float64          `json:"threshold"`
	RecoveryValue   *float64          `json:"recovery_value"`
	DurationSeconds float64           `json:"duration_seconds"`
	At              time.Time         `json:"at"`
	Labels          map[string]string `json:"labels"`
	Summary         string            `json:"summary"`
	CreatedAt       time.Time         `json:"created_at"`
}

// AlertEventFrom returns the history row of the transition ev (its channels and notify flag are
// not kept).
func AlertEventFrom(ev alert.Event) AlertEvent {
	return AlertEvent{
		ID: ev.ID, AlertID: ev.AlertID, RuleID: ev.RuleID, RuleName: ev.RuleName, Kind: ev.Kind,
		AgentID: ev.AgentID, Series: ev.Series, Metric: ev.Metric, From: string(ev.From), To: string(ev.To),
		Severity: ev.Severity, Value: ev.Value, Threshold: ev.Threshold, RecoveryValue: ev.RecoveryValue,
		DurationSeconds: ev.DurationSeconds, At: ev.At, Labels: ev.Labels, Summary: ev.Summary,
	}
}

// Validate reports why PostgreSQL would refuse the event, or nil: ID, AlertID, RuleID, AgentID
// (except for pipeline rules, whose alerts have no agent), From and To are required, At must be
// set, and every text must be valid UTF-8 without NUL bytes. A consumer checks this per event, so that one bad event is dead-lettered instead of
// failing the whole batch's Insert again and again.
func (e AlertEvent) Validate() error {
	required := []struct{ name, v string }{
		{"id", e.ID}, {"alert_id", e.AlertID}, {"rule_id", e.RuleID}, {"agent_id", e.AgentID},
		{"from", e.From}, {"to", e.To},
	}
	for _, r := range required {
		if r.v == "" && (r.name != "agent_id" || e.Kind != string(alert.KindPipeline)) {
			return fmt.Errorf("alert event %q: %s is required", e.ID, r.name)
		}
	}
	if e.At.IsZero() {
		return fmt.Errorf("alert event %q: at is required", e.ID)
	}
	texts := []struct{ name, v string }{
		{"id", e.ID}, {"alert_id", e.AlertID}, {"rule_id", e.RuleID}, {"rule_name", e.RuleName},
		{"kind", e.Kind}, {"agent_id", e.AgentID}, {"series", e.Series}, {"metric", e.Metric},
		{"from", e.From}, {"to", e.To}, {"severity", e.Severity}, {"summary", e.Summary},
	}
	for _, t := range texts {
		if !storableText(t.v) {
			return fmt.Errorf("alert event %q: %s must be valid UTF-8 without NUL bytes", e.ID, t.name)
		}
	}
	for k, v := range e.Labels {
		if !storableText(k) || !storableText(v) {
			return fmt.Errorf("alert event %q: labels must be valid UTF-8 without NUL bytes", e.ID)
		}
	}
	return nil
}

// storableText reports whether PostgreSQL's text (and jsonb) can hold s.
func storableText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// AlertEventStore keeps the alert history. Events are immutable and written only by Insert,
// which deduplicates them by id; they are not audited (they are not operator changes).
type AlertEventStore struct {
	db *sqlx.DB
}

// NewAlertEventStore returns an AlertEventStore on db.
func NewAlertEventStore(db *sqlx.DB) *AlertEventStore {
	return &AlertEventStore{db: db}
}

// Insert stores events in one statement. An event whose id is already stored (a redelivery, or
// the same id twice in events) is skipped, so inserting the same events again changes nothing.
// Any event failing Validate makes the whole call ErrInvalid, naming its index, and stores
// nothing. An empty slice does nothing.
func (s *AlertEventStore) Insert(ctx context.Context, events []AlertEvent) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	var (
		ids, alertIDs, ruleIDs, ruleNames, kinds = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		agentIDs, series, metrics, froms, tos    = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		severities, summaries, labels            = make([]string, n), make([]string, n), make([]string, n)
		values, durations                        = make([]float64, n), make([]float64, n)
		thresholds, recoveries                   = make([]sql.NullFloat64, n), make([]sql.NullFloat64, n)
		ats                                      = make([]time.Time, n)
	)
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("%w: event %d: %w", ErrInvalid, i, err)
		}
		l := e.Labels
		if l == nil {
			l = map[string]string{}
		}
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("encoding labels of alert event %s: %w", e.ID, err)
		}
		ids[i], alertIDs[i], ruleIDs[i], ruleNames[i], kinds[i] = e.ID, e.AlertID, e.RuleID, e.RuleName, e.Kind
		agentIDs[i], series[i], metrics[i], froms[i], tos[i] = e.AgentID, e.Series, e.Metric, e.From, e.To
		severities[i], summaries[i], labels[i] = e.Severity, e.Summary, string(b)
		values[i], durations[i], ats[i] = e.Value, e.DurationSeconds, e.At
		if e.Threshold != nil {
			thresholds[i] = sql.NullFloat64{Float64: *e.Threshold, Valid: true}
		}
		if e.RecoveryValue != nil {
			recoveries[i] = sql.NullFloat64{Float64: *e.RecoveryValue, Valid: true}
		}
	}
	// unnest over one array per column: one statement and one round trip whatever the batch
	// size, with no limit on the number of bind parameters.
	if _, err := s.db.ExecContext(ctx, `
		INSERT INTO alert_events (id, alert_id, rule_id, rule_name, kind, agent_id, series, metric,
			from_status, to_status, severity, value, threshold, recovery_value, duration_seconds, at,
			labels, summary)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::float8[], $13::float8[],
			$14::float8[], $15::float8[], $16::timestamptz[], $17::jsonb[], $18::text[])
		ON CONFLICT (id) DO NOTHING`,
		pq.Array(ids), pq.Array(alertIDs), pq.Array(ruleIDs), pq.Array(ruleNames), pq.Array(kinds),
		pq.Array(agentIDs), pq.Array(series), pq.Array(metrics), pq.Array(froms), pq.Array(tos),
		pq.Array(severities), pq.Array(values), pq.Array(thresholds), pq.Array(recoveries),
		pq.Array(durations), pq.Array(ats), pq.Array(labels), pq.Array(summaries)); err != nil {
		return fmt.Errorf("inserting %d alert events: %w", n, err)
	}
	return nil
}

// HistoryFilter selects alert events: those of agent AgentID, rule RuleID, severity Severity
// (each when not empty) at or after From and before To (each when not zero), Limit of them
// (at least 1) after skipping Offset (not negative).
type HistoryFilter struct {
	AgentID  string
	RuleID   string
	Severity string
	From, To time.Time
	Limit    int
	Offset   int
}

const alertEventColumns = `id, alert_id, rule_id, rule_name, kind, agent_id, series, metric, from_status,
	to_status, severity, value, threshold, recovery_value, duration_seconds, at, labels, summary, created_at`

type alertEventRow struct {
	ID              string          `db:"id"`
	AlertID         string          `db:"alert_id"`
	RuleID          string          `db:"rule_id"`
	RuleName        string          `db:"rule_name"`
	Kind            string          `db:"kind"`
	AgentID         string          `db:"agent_id"`
	Series          string          `db:"series"`
	Metric          string          `db:"metric"`
	From            string          `db:"from_status"`
	To              string          `db:"to_status"`
	Severity        string          `db:"severity"`
	Value           float64         `db:"value"`
	Threshold       sql.NullFloat64 `db:"threshold"`
	RecoveryValue   sql.NullFloat64 `db:"recovery_value"`
	DurationSeconds float64         `db:"duration_seconds"`
	At              time.Time       `db:"at"`
	Labels          []byte          `db:"labels"`
	Summary         string          `db:"summary"`
	CreatedAt       time.Time       `db:"created_at"`
}

func (r alertEventRow) event() (AlertEvent, error) {
	e := AlertEvent{
		ID: r.ID, AlertID: r.AlertID, RuleID: r.RuleID, RuleName: r.RuleName, Kind: r.Kind,
		AgentID: r.AgentID, Series: r.Series, Metric: r.Metric, From: r.From, To: r.To,
		Severity: r.Severity, Value: r.Value, DurationSeconds: r.DurationSeconds, At: r.At.UTC(),
		Summary: r.Summary, CreatedAt: r.CreatedAt.UTC(),
	}
	if r.Threshold.Valid {
		e.Threshold = &r.Threshold.Float64
	}
	if r.RecoveryValue.Valid {
		e.RecoveryValue = &r.RecoveryValue.Float64
	}
	if err := json.Unmarshal(r.Labels, &e.Labels); err != nil {
		return AlertEvent{}, fmt.Errorf("decoding labels of alert event %s: %w", r.ID, err)
	}
	if e.Labels == nil {
		e.Labels = map[string]string{}
	}
	return e, nil
}

// History returns a page of the events f selects, newest first (by At, then id), and how many
// events f selects in all, both from one snapshot. A limit below 1, a negative offset, a
// severity other than warning or critical, or From not before To is ErrInvalid.
func (s *AlertEventStore) History(ctx context.Context, f HistoryFilter) ([]AlertEvent, int, error) {
	if err := checkPaging(f.Limit, f.Offset); err != nil {
		return nil, 0, err
	}
	switch f.Severity {
	case "", "warning", "critical":
	default:
		return nil, 0, fmt.Errorf("%w: severity must be warning or critical, got %q", ErrInvalid, f.Severity)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return nil, 0, fmt.Errorf("%w: the start of the time range (%s) must be before its end (%s)",
			ErrInvalid, f.From.Format(time.RFC3339Nano), f.To.Format(time.RFC3339Nano))
	}
	var (
		conds []string
		args  []any
	)
	where := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.AgentID != "" {
		where("agent_id = ?", f.AgentID)
	}
	if f.RuleID != "" {
		where("rule_id = ?", f.RuleID)
	}
	if f.Severity != "" {
		where("severity = ?", f.Severity)
	}
	if !f.From.IsZero() {
		where("at >= ?", f.From)
	}
	if !f.To.IsZero() {
		where("at < ?", f.To)
	}
	clause := ""
	if len(conds) > 0 {
		clause = " WHERE " + strings.Join(conds, " AND ")
	}
	var (
		rows  []alertEventRow
		total int
	)
	err := inTx(ctx, s.db, readSnapshot, func(tx *sqlx.Tx) error {
		if err := tx.GetContext(ctx, &total, `SELECT count(*) FROM alert_events`+clause, args...); err != nil {
			return fmt.Errorf("counting alert events: %w", err)
		}
		n := len(args)
		q := `SELECT ` + alertEventColumns + ` FROM alert_events` + clause +
			` ORDER BY at DESC, id DESC LIMIT $` + strconv.Itoa(n+1) + ` OFFSET $` + strconv.Itoa(n+2)
		if err := tx.SelectContext(ctx, &rows, q, append(args, f.Limit, f.Offset)...); err != nil {
			return fmt.Errorf("listing alert events: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	events, err := fromRows(rows, alertEventRow.event)
	if err != nil {
		return nil, 0, err
	}
	return events, total, nil
}
