package gateway

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
)

// The alert history and acknowledgements (postgres.AlertEventStore, postgres.AckStore).
type (
	alertEventStore interface {
		History(ctx context.Context, f postgres.HistoryFilter) ([]postgres.AlertEvent, int, error)
	}
	ackStore interface {
		Record(ctx context.Context, alertID, by, comment string, at time.Time) error
	}
)

// alertIDPattern is the form of alert.ID; anything else names no alert.
var alertIDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

type activeList struct {
	Alerts []alert.Active `json:"alerts"`
}

// listAlerts answers GET /api/v1/alerts (viewer): the pending and firing alerts from Redis
// (every shard's), most severe and then oldest first, with their acknowledgements.
func (g *Gateway) listAlerts(c echo.Context) error {
	active, err := alertredis.ListActive(c.Request().Context(), g.rdb, g.cfg.Redis.Prefix, g.cfg.Publish.Shards)
	if err != nil {
		return unavailable("alert state", err)
	}
	if active == nil {
		active = []alert.Active{}
	}
	return c.JSON(http.StatusOK, activeList{Alerts: active})
}

type alertHistory struct {
	Events []postgres.AlertEvent `json:"events"`
	Total  int                   `json:"total"`
	Limit  int                   `json:"limit"`
	Offset int                   `json:"offset"`
}

// alertHistory answers GET /api/v1/alerts/history (viewer): transitions from PostgreSQL, newest
// first, filtered by ?agent=, ?rule=, ?severity= and the time range ?from= (inclusive) and ?to=
// (exclusive, RFC 3339), paged by ?limit= and ?offset=.
func (g *Gateway) alertHistory(c echo.Context) error {
	limit, offset, err := paging(c)
	if err != nil {
		return err
	}
	f := postgres.HistoryFilter{Limit: limit, Offset: offset}
	if f.AgentID, err = idParam(c, "agent"); err != nil {
		return err
	}
	if f.RuleID, err = idParam(c, "rule"); err != nil {
		return err
	}
	switch s := c.QueryParam("severity"); s {
	case "", string(alert.SeverityWarning), string(alert.SeverityCritical):
		f.Severity = s
	default:
		return newError(http.StatusBadRequest, "severity must be warning or critical, got %q", truncate(s, 32))
	}
	if f.From, err = timeParam(c, "from"); err != nil {
		return err
	}
	if f.To, err = timeParam(c, "to"); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return newError(http.StatusBadRequest, "from must be before to")
	}
	events, total, err := g.alertEvents.History(c.Request().Context(), f)
	if err != nil {
		return err
	}
	if events == nil {
		events = []postgres.AlertEvent{}
	}
	return c.JSON(http.StatusOK, alertHistory{Events: events, Total: total, Limit: limit, Offset: offset})
}

// idParam returns the query parameter name, an agent or rule id: at most 128 bytes of printable
// text (the history keeps the ids of deleted agents and rules, so it is not looked up).
func idParam(c echo.Context, name string) (string, error) {
	v := c.QueryParam(name)
	if len(v) > 128 || !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return "", newError(http.StatusBadRequest, "%s must be an id of at most 128 printable characters", name)
	}
	return v, nil
}

// timeParam returns the RFC 3339 time of query parameter name, or the zero time when it is absent.
func timeParam(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, newError(http.StatusBadRequest, "%s must be an RFC 3339 time such as 2025-06-01T12:00:00Z, got %q", name, truncate(v, 64))
	}
	return t.UTC(), nil
}

type ackRequest struct {
	Comment string `json:"comment"`
}

type ackAnswer struct {
	AlertID string    `json:"alert_id"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment"`
}

// ackAlert answers POST /api/v1/alerts/{id}/ack (operator): the acknowledgement is shown on the
// active alert until it resolves, and recorded in PostgreSQL for good. 404 when the alert is not
// pending or firing. Acknowledging again replaces the shown acknowledgement and records another.
func (g *Gateway) ackAlert(c echo.Context) error {
	var req ackRequest
	if err := decodeInto(c, &req); err != nil {
		return err
	}
	switch {
	case len(req.Comment) > postgres.MaxAckCommentLen:
		return fieldErrorf("comment", "must be at most %d bytes, got %d", postgres.MaxAckCommentLen, len(req.Comment))
	case strings.ContainsFunc(req.Comment, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return fieldErrorf("comment", "must not contain control characters other than newlines and tabs")
	}
	id := c.Param("id")
	if !alertIDPattern.MatchString(id) {
		return newError(http.StatusNotFound, "alert %q is not active", truncate(id, 64))
	}
	ctx := c.Request().Context()
	ack := alert.Ack{By: sessionOf(c).Username, At: g.now().UTC(), Comment: req.Comment}
	err := alertredis.SetAck(ctx, g.rdb, g.cfg.Redis.Prefix, g.cfg.Publish.Shards, id, ack)
	if errors.Is(err, alertredis.ErrNotFound) {
		return newError(http.StatusNotFound, "alert %s is not active", id)
	}
	if err != nil {
		return unavailable("alert state", err)
	}
	if err := g.acks.Record(ctx, id, ack.By, ack.Comment, ack.At); err != nil {
		return err
	}
	g.logger.Info("alert acknowledged", "alert", id, "actor", ack.By)
	return c.JSON(http.StatusOK, ackAnswer{AlertID: id, By: ack.By, At: ack.At, Comment: ack.Comment})
}
