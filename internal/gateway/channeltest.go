package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/egress"
	"github.com/agentmonitor/agentmonitor/internal/notify"
)

// channelTestTimeout bounds one test send (connection and answer).
const channelTestTimeout = 10 * time.Second

type channelTestResult struct {
	Delivered bool `json:"delivered"`
}

// testChannel answers POST /api/v1/notification-channels/{id}/test (operator): one test
// notification sent the way the notifier sends alerts (internal/notify.TestSender: the egress
// policy at every connection, no redirects, the signature when the channel has a secret). 200
// when the receiver answered 2xx; 400 when the egress policy refuses its address; 502 with the
// reason otherwise (the URL, which may hold a credential, is never echoed).
func (g *Gateway) testChannel(c echo.Context) error {
	ctx := c.Request().Context()
	ch, err := g.channels.Get(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	if ch.Type == alert.ChannelTypeEmail {
		// The SMTP server and its credential are the notifier's (SMTP_ADDR), not the gateway's.
		return newError(http.StatusBadRequest, "test notifications are sent to webhook and slack channels; e-mail channels are sent by the notifier through its SMTP server")
	}
	if err := g.checkEgress(ctx, ch.URL); err != nil {
		return err
	}
	sender := notify.NewTestSender(g.egress, channelTestTimeout)
	if err := sender.Send(ctx, ch, sessionOf(c).Username, g.now()); err != nil {
		if errors.Is(err, egress.ErrBlocked) {
			return fieldErrorf("url", "%v", err)
		}
		return newError(http.StatusBadGateway, "the channel did not accept the test notification: %v", err)
	}
	g.logger.Info("test notification sent", "channel", ch.ID, "by", sessionOf(c).Username)
	return c.JSON(http.StatusOK, channelTestResult{Delivered: true})
}
