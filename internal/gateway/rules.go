package gateway

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/silence"
)

// configStore keeps one kind of alerting configuration by id (rules, channels): every change
// is made by an actor, whom the store audits.
type configStore[T any] interface {
	Create(ctx context.Context, v T, actor string) (T, error)
	Get(ctx context.Context, id string) (T, error)
	List(ctx context.Context) ([]T, error)
	Update(ctx context.Context, v T, actor string) (T, error)
	Delete(ctx context.Context, id, actor string) error
}

// ruleStore keeps alert rules (postgres.RuleStore).
type ruleStore = configStore[alert.Rule]

type ruleList struct {
	Rules []alert.Rule `json:"rules"`
}

// listRules answers GET /api/v1/alert-rules: every rule, ordered by name.
func (g *Gateway) listRules(c echo.Context) error {
	rules, err := g.rules.List(c.Request().Context())
	if err != nil {
		return err
	}
	if rules == nil {
		rules = []alert.Rule{}
	}
	return c.JSON(http.StatusOK, ruleList{Rules: rules})
}

// getRule answers GET /api/v1/alert-rules/{id}.
func (g *Gateway) getRule(c echo.Context) error {
	r, err := g.rules.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

// createRule answers POST /api/v1/alert-rules. "enabled" defaults to true; "id" is ignored.
func (g *Gateway) createRule(c echo.Context) error {
	r, err := g.decodeRule(c)
	if err != nil {
		return err
	}
	r.ID = ""
	ctx := c.Request().Context()
	if err := g.checkRuleChannels(ctx, r); err != nil {
		return err
	}
	created, err := g.rules.Create(ctx, r, sessionOf(c).Username)
	if err != nil {
		return fieldProblem(err)
	}
	g.rulesChanged(ctx)
	g.logger.Info("alert rule created", "rule", created.ID, "name", created.Name, "actor", sessionOf(c).Username)
	return c.JSON(http.StatusCreated, created)
}

// updateRule answers PUT /api/v1/alert-rules/{id}: the body replaces the whole rule, with the
// same defaults as on create. An "id" in the body must be the one in the path.
func (g *Gateway) updateRule(c echo.Context) error {
	r, err := g.decodeRule(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if r.ID != "" && r.ID != id {
		return fieldErrorf("id", "must be the id in the path (%s) or be left out", truncate(id, 64))
	}
	r.ID = id
	ctx := c.Request().Context()
	if err := g.checkRuleChannels(ctx, r); err != nil {
		return err
	}
	updated, err := g.rules.Update(ctx, r, sessionOf(c).Username)
	if err != nil {
		return fieldProblem(err)
	}
	g.rulesChanged(ctx)
	g.logger.Info("alert rule updated", "rule", updated.ID, "name", updated.Name, "actor", sessionOf(c).Username)
	return c.JSON(http.StatusOK, updated)
}

// deleteRule answers DELETE /api/v1/alert-rules/{id}. The rule's alert history stays.
func (g *Gateway) deleteRule(c echo.Context) error {
	id := c.Param("id")
	ctx := c.Request().Context()
	if err := g.rules.Delete(ctx, id, sessionOf(c).Username); err != nil {
		return err
	}
	g.rulesChanged(ctx)
	g.logger.Info("alert rule deleted", "rule", id, "actor", sessionOf(c).Username)
	return c.NoContent(http.StatusNoContent)
}

// decodeRule reads a rule body strictly and validates it.
func (g *Gateway) decodeRule(c echo.Context) (alert.Rule, error) {
	r := alert.Rule{Enabled: true}
	if err := decodeInto(c, &r); err != nil {
		return alert.Rule{}, err
	}
	if err := r.Validate(); err != nil {
		return alert.Rule{}, fieldProblem(err)
	}
	return r, nil
}

// checkRuleChannels answers 400 naming channels[i] for a channel id of r that names no
// notification channel. The store checks again inside its transaction (a channel deleted
// meanwhile); this check is here to name the entry.
func (g *Gateway) checkRuleChannels(ctx context.Context, r alert.Rule) error {
	if len(r.Channels) == 0 {
		return nil
	}
	channels, err := g.channels.List(ctx)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(channels))
	for _, ch := range channels {
		known[strings.ToLower(ch.ID)] = true
	}
	for i, id := range r.Channels {
		if !known[strings.ToLower(id)] {
			return fieldErrorf(fmt.Sprintf("channels[%d]", i), "no notification channel has id %q", truncate(id, 64))
		}
	}
	return nil
}

// rulesChanged tells every alerter copy to reload its rules. The change is committed already, so
// a failure is only logged: the alerters' periodic reload (at least every 30s) catches up.
func (g *Gateway) rulesChanged(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := alertredis.BumpRulesVersion(ctx, g.rdb, g.cfg.Redis.Prefix); err != nil {
		g.logger.Warn("announcing a rule change failed; alerters pick it up at their next periodic reload", "err", err)
	}
}

// fieldErrorf answers 400 for the member field of the body, with field as the one detail.
func fieldErrorf(field, format string, args ...any) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Message: field + ": " + fmt.Sprintf(format, args...),
		Details: []string{field},
	}
}

// fieldProblem turns a validation error that names a member (from alert.Rule.Validate,
// alert.Channel.Validate, silence.Silence.Validate, or a store wrapping one in
// postgres.ErrInvalid) into a 400 with the member as the one detail. Other errors pass through
// to the common mapping.
func fieldProblem(err error) error {
	var (
		re *alert.ValidationError
		se *silence.ValidationError
	)
	switch {
	case errors.As(err, &re):
		return fieldErrorf(re.Field, "%s", re.Reason)
	case errors.As(err, &se):
		return fieldErrorf(se.Field, "%s", se.Reason)
	case errors.Is(err, postgres.ErrInvalid):
		return &apiError{Status: http.StatusBadRequest, Message: strings.TrimPrefix(err.Error(), postgres.ErrInvalid.Error()+": ")}
	}
	return err
}

// decodeInto reads the body of a JSON route strictly (as decodeBody) into v, and words
// decoding errors for members with a text form (durations) and names the member in details,
// in the form validation errors use ("thresholds.warning.value", "channels[0]").
func decodeInto(c echo.Context, v any) error {
	var raw jsontext.Value
	if err := decodeBody(c, &raw); err != nil {
		return err
	}
	err := json.Unmarshal(raw, v, strictJSON)
	if err == nil {
		return nil
	}
	var se *json.SemanticError
	if !errors.As(err, &se) {
		return &apiError{Status: http.StatusBadRequest, Message: describeJSONError(err)}
	}
	field := fieldOfPointer(se.JSONPointer)
	if errors.Is(se.Err, json.ErrUnknownName) {
		return &apiError{Status: http.StatusBadRequest, Message: describeJSONError(err), Details: []string{field}}
	}
	if field == "" {
		return &apiError{Status: http.StatusBadRequest, Message: describeJSONError(err)}
	}
	textual := se.GoType != nil && reflect.PointerTo(se.GoType).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
	got := metric.JSONKindName(se.JSONKind)
	switch {
	case se.GoType == reflect.TypeFor[time.Time]():
		return fieldErrorf(field, "must be an RFC 3339 time such as 2025-06-01T22:00:00Z")
	case textual && se.JSONKind == '"' && se.Err != nil:
		// The value's own parser refused it, with a reason for the client ("invalid duration").
		return fieldErrorf(field, "%v", se.Err)
	case textual && got != "":
		return fieldErrorf(field, "%s is not allowed here, want a string", got)
	case se.JSONKind == '0' && se.GoType != nil && goKindName(se.GoType.Kind().String()) == "a number":
		// A number that does not fit the member ("1e400" for a float64), not a wrong type.
		return fieldErrorf(field, "%s", numberProblem(se.GoType.Kind()))
	case se.GoType != nil && got != "":
		return fieldErrorf(field, "%s is not allowed here, want %s", got, goKindName(se.GoType.Kind().String()))
	}
	return &apiError{Status: http.StatusBadRequest, Message: describeJSONError(err), Details: []string{field}}
}

// numberProblem says why a JSON number does not fit a member of kind k.
func numberProblem(k reflect.Kind) string {
	switch k {
	case reflect.Float64:
		return "is out of the range of a 64-bit float (magnitude at most about 1.8e308)"
	case reflect.Float32:
		return "is out of the range of a 32-bit float (magnitude at most about 3.4e38)"
	}
	return "must be a whole number within the range of " + k.String()
}

// fieldOfPointer turns a JSON pointer ("/thresholds/warning/value", "/channels/0") into the
// dotted form of validation errors ("thresholds.warning.value", "channels[0]").
func fieldOfPointer(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if tok != "" && strings.Trim(tok, "0123456789") == "" {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}
