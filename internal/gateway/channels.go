package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/labstack/echo/v4"
)

// channelStore keeps notification channels (postgres.ChannelStore). Get and List return the
// secret; no answer of the API does.
type channelStore = configStore[alert.Channel]

// channelView is a channel as the API shows it: the secret is never sent back, only whether
// there is one.
type channelView struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers"`
	Enabled   bool              `json:"enabled"`
	HasSecret bool              `json:"has_secret"`
	// RepeatInterval is "0s" when the channel sends each firing once.
	RepeatInterval alert.Duration `json:"repeat_interval"`
	GroupBy        []string       `json:"group_by"`
	GroupWait      alert.Duration `json:"group_wait"`
	To             []string       `json:"to"`
	CreatedAt      time.Time      `json:"created_at"`
	UpdatedAt      time.Time      `json:"updated_at"`
}

func viewOfChannel(ch alert.Channel) channelView {
	headers := ch.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	groupBy := ch.GroupBy
	if groupBy == nil {
		groupBy = []string{}
	}
	to := ch.To
	if to == nil {
		to = []string{}
	}
	return channelView{
		ID: ch.ID, Name: ch.Name, Type: ch.Type, URL: ch.URL, Headers: headers, Enabled: ch.Enabled,
		HasSecret: ch.Secret != "", RepeatInterval: alert.Duration(ch.RepeatInterval),
		GroupBy: groupBy, GroupWait: alert.Duration(ch.GroupWait), To: to,
		CreatedAt: ch.CreatedAt, UpdatedAt: ch.UpdatedAt,
	}
}

type channelList struct {
	Channels []channelView `json:"channels"`
}

// channelRequest is the body of POST and PUT. Type defaults to "webhook" and Enabled to true.
// Secret left out (or null) keeps the stored secret on PUT; "" removes it. RepeatInterval left
// out is 0: each firing is sent once.
type channelRequest struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	URL     string            `json:"url"`
	Secret  *string           `json:"secret"`
	Headers map[string]string `json:"headers"`
	Enabled *bool             `json:"enabled"`
	// RepeatInterval is a Go duration ("4h"): a still-firing alert is sent again this often.
	RepeatInterval alert.Duration `json:"repeat_interval"`
	// GroupBy and GroupWait group the transitions sent to the channel (left out: none).
	GroupBy   []string       `json:"group_by"`
	GroupWait alert.Duration `json:"group_wait"`
	// To holds the recipients of an e-mail channel.
	To []string `json:"to"`
}

// channel returns the channel the request describes; keepSecret is the stored secret, used when
// the request has none.
func (r channelRequest) channel(id, keepSecret string) alert.Channel {
	ch := alert.Channel{
		ID: id, Name: r.Name, Type: r.Type, URL: r.URL, Secret: keepSecret, Headers: r.Headers, Enabled: true,
		RepeatInterval: time.Duration(r.RepeatInterval),
		GroupBy:        r.GroupBy, GroupWait: time.Duration(r.GroupWait), To: r.To,
	}
	if ch.Type == "" {
		ch.Type = alert.ChannelTypeWebhook
	}
	if r.Secret != nil {
		ch.Secret = *r.Secret
	}
	if r.Enabled != nil {
		ch.Enabled = *r.Enabled
	}
	if ch.Headers == nil {
		ch.Headers = map[string]string{}
	}
	return ch
}

// listChannels answers GET /api/v1/notification-channels (operator), ordered by name.
// Channels are for operators only: webhook URLs and headers often carry credentials.
func (g *Gateway) listChannels(c echo.Context) error {
	channels, err := g.channels.List(c.Request().Context())
	if err != nil {
		return err
	}
	out := channelList{Channels: make([]channelView, len(channels))}
	for i, ch := range channels {
		out.Channels[i] = viewOfChannel(ch)
	}
	return c.JSON(http.StatusOK, out)
}

// getChannel answers GET /api/v1/notification-channels/{id} (operator).
func (g *Gateway) getChannel(c echo.Context) error {
	ch, err := g.channels.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOfChannel(ch))
}

// createChannel answers POST /api/v1/notification-channels (operator).
func (g *Gateway) createChannel(c echo.Context) error {
	var req channelRequest
	if err := decodeInto(c, &req); err != nil {
		return err
	}
	ch := req.channel("", "")
	if err := ch.Validate(); err != nil {
		return fieldProblem(err)
	}
	if err := g.checkEgress(c.Request().Context(), ch.URL); err != nil {
		return err
	}
	created, err := g.channels.Create(c.Request().Context(), ch, sessionOf(c).Username)
	if err != nil {
		return fieldProblem(err)
	}
	g.logger.Info("notification channel created", "channel", created.ID, "name", created.Name, "actor", sessionOf(c).Username)
	return c.JSON(http.StatusCreated, viewOfChannel(created))
}

// updateChannel answers PUT /api/v1/notification-channels/{id} (operator): the body replaces
// the channel, except that a body without "secret" keeps the stored one.
func (g *Gateway) updateChannel(c echo.Context) error {
	var req channelRequest
	if err := decodeInto(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	old, err := g.channels.Get(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	ch := req.channel(old.ID, old.Secret)
	if err := ch.Validate(); err != nil {
		return fieldProblem(err)
	}
	if err := g.checkEgress(c.Request().Context(), ch.URL); err != nil {
		return err
	}
	updated, err := g.channels.Update(ctx, ch, sessionOf(c).Username)
	if err != nil {
		return fieldProblem(err)
	}
	g.logger.Info("notification channel updated", "channel", updated.ID, "name", updated.Name, "actor", sessionOf(c).Username)
	return c.JSON(http.StatusOK, viewOfChannel(updated))
}

// deleteChannel answers DELETE /api/v1/notification-channels/{id} (operator); 409 while a
// rule names the channel.
func (g *Gateway) deleteChannel(c echo.Context) error {
	id := c.Param("id")
	if err := g.channels.Delete(c.Request().Context(), id, sessionOf(c).Username); err != nil {
		return err
	}
	g.logger.Info("notification channel deleted", "channel", id, "actor", sessionOf(c).Username)
	return c.NoContent(http.StatusNoContent)
}

// checkEgress answers 400 naming the url when it points where webhooks may not go (loopback,
// private, link-local, metadata addresses, or a name resolving there) and
// WEBHOOK_ALLOWED_NETWORKS does not allow it. The notifier checks again at every connection.
func (g *Gateway) checkEgress(ctx context.Context, rawURL string) error {
	if rawURL == "" {
		return nil // an e-mail channel, whose validation requires an empty url
	}
	if err := g.egress.CheckURL(ctx, rawURL); err != nil {
		return fieldErrorf("url", "%v", err)
	}
	return nil
}
