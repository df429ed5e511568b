package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/egress"
)

// E-mail channels (alert.ChannelTypeEmail) are sent through one SMTP server for the whole
// deployment (SMTP_ADDR, SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM, SMTP_STARTTLS): the relay and
// its credential are the operator's, not each channel's, and stay out of the database and the
// API. Connections go through the egress policy like webhooks. The client is the standard
// library's net/smtp: it does STARTTLS and AUTH PLAIN, which is all a relay needs.

// sendMail sends one plain-text message about events (one, or a group) to ch's recipients.
// eventID names the message (Message-ID and EventHeader). A refusal for good (a 5xx, an address
// the egress policy refuses, no SMTP server configured, no STARTTLS offered) is permanent.
func (n *Notifier) sendMail(ctx context.Context, ch alert.Channel, eventID string, events []alert.Event, labels []map[string]string, group map[string]string) error {
	cfg := n.cfg
	if cfg.SMTPAddr == "" {
		return permanent(errors.New("e-mail channel, but the notifier has no SMTP server (SMTP_ADDR)"))
	}
	host, _, err := net.SplitHostPort(cfg.SMTPAddr)
	if err != nil {
		return permanent(fmt.Errorf("SMTP_ADDR %q: %w", cfg.SMTPAddr, err))
	}
	dial := n.dialer
	if dial == nil {
		return permanent(errors.New("no SMTP dialer"))
	}
	conn, err := dial(ctx, "tcp", cfg.SMTPAddr)
	if err != nil {
		err = fmt.Errorf("connecting to the SMTP server: %w", err)
		if errors.Is(err, egress.ErrBlocked) {
			return permanent(err)
		}
		return err
	}
	deadline := time.Now().Add(cfg.WebhookTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return smtpError("greeting", err)
	}
	defer c.Close()
	if cfg.SMTPStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return permanent(errors.New("the SMTP server does not offer STARTTLS (set SMTP_STARTTLS=false only for a server on a trusted network)"))
		}
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if n.smtpTLS != nil {
			tc = n.smtpTLS.Clone()
			tc.ServerName = host
		}
		if err := c.StartTLS(tc); err != nil {
			return smtpError("STARTTLS", err)
		}
	}
	if cfg.SMTPUsername != "" {
		if err := c.Auth(smtp.PlainAuth("", cfg.SMTPUsername, cfg.SMTPPassword, host)); err != nil {
			return smtpError("AUTH", err)
		}
	}
	if err := c.Mail(cfg.SMTPFrom); err != nil {
		return smtpError("MAIL FROM", err)
	}
	for _, to := range ch.To {
		if err := c.Rcpt(to); err != nil {
			return smtpError("RCPT TO", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpError("DATA", err)
	}
	if _, err := w.Write(n.mailMessage(ch, eventID, events, labels, group)); err != nil {
		return smtpError("DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpError("DATA", err)
	}
	if err := c.Quit(); err != nil {
		// The message was accepted at the end of DATA; a failed QUIT does not undo it.
		return nil
	}
	return nil
}

// smtpError wraps an SMTP failure: a 5xx answer is permanent, anything else may pass.
func smtpError(step string, err error) error {
	err = fmt.Errorf("SMTP %s: %w", step, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent(err)
	}
	return err
}

// mailSubject is the subject line: the alert's title, or for a group how many fire and what
// they share.
func mailSubject(events []alert.Event, group map[string]string) string {
	if len(events) == 1 {
		return eventTitle(events[0])
	}
	firing := 0
	for _, ev := range events {
		if ev.To != alert.StatusResolved {
			firing++
		}
	}
	parts := make([]string, 0, len(group))
	for _, k := range slices.Sorted(maps.Keys(group)) {
		parts = append(parts, k+"="+group[k])
	}
	return fmt.Sprintf("[FIRING:%d RESOLVED:%d] %s", firing, len(events)-firing, strings.Join(parts, " "))
}

// eventTitle is "[FIRING:CRITICAL] CPU busy on agent-1" or "[RESOLVED] CPU busy on agent-1".
func eventTitle(ev alert.Event) string {
	title := "[FIRING] " + ev.RuleName
	switch {
	case ev.To == alert.StatusResolved:
		title = "[RESOLVED] " + ev.RuleName
	case ev.Severity != "":
		title = "[FIRING:" + strings.ToUpper(ev.Severity) + "] " + ev.RuleName
	}
	if ev.AgentID != "" {
		title += " on " + ev.AgentID
	}
	return title
}

// mailMessage is the whole message: headers and a quoted-printable plain-text body with, per
// alert, its title, summary, value (and on a resolve the recovery value and how long it fired),
// when, labels and the link to the rule (with EXTERNAL_URL).
func (n *Notifier) mailMessage(ch alert.Channel, eventID string, events []alert.Event, labels []map[string]string, group map[string]string) []byte {
	var text strings.Builder
	for i, ev := range events {
		if i > 0 {
			text.WriteString("\n----\n\n")
		}
		text.WriteString(eventTitle(ev) + "\n")
		if ev.Summary != "" {
			text.WriteString(ev.Summary + "\n")
		}
		text.WriteString("\n")
		row := func(k, v string) { fmt.Fprintf(&text, "%-15s %s\n", k+":", v) }
		row("Status", string(ev.To))
		row("Value", strconv.FormatFloat(ev.Value, 'g', -1, 64))
		if ev.To == alert.StatusResolved {
			if ev.RecoveryValue != nil {
				row("Recovery value", strconv.FormatFloat(*ev.RecoveryValue, 'g', -1, 64))
			}
			row("Fired for", time.Duration(ev.DurationSeconds*float64(time.Second)).Round(time.Second).String())
			row("Resolved at", ev.At.UTC().Format(time.RFC3339))
		} else {
			row("At", ev.At.UTC().Format(time.RFC3339))
		}
		for _, k := range slices.Sorted(maps.Keys(labels[i])) {
			row(k, labels[i][k])
		}
		if link := n.generatorURL(ev.RuleID); link != "" {
			row("Rule", link)
		}
	}
	var body bytes.Buffer
	qp := quotedprintable.NewWriter(&body)
	_, _ = qp.Write([]byte(text.String()))
	_ = qp.Close()

	var msg bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&msg, "%s: %s\r\n", k, v) }
	header("From", n.cfg.SMTPFrom)
	header("To", strings.Join(ch.To, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", mailSubject(events, group)))
	header("Date", time.Now().UTC().Format(time.RFC1123Z))
	header("Message-ID", "<"+eventID+"@agentmonitor>")
	header(EventHeader, eventID)
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	msg.WriteString("\r\n")
	msg.Write(body.Bytes())
	return msg.Bytes()
}
