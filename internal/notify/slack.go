package notify

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// SlackBody is the JSON body POSTed to a slack channel: Slack's incoming-webhook message
// (https://api.slack.com/messaging/webhooks), which Mattermost, Rocket.Chat and many chat tools
// accept too. Text is the whole notification on one line, for tools that read only that; the
// attachment adds the severity colour, the summary and the labels as fields.
type SlackBody struct {
	Text        string            `json:"text"`
	Attachments []SlackAttachment `json:"attachments"`
}

// SlackAttachment is the one attachment of a SlackBody (Slack's legacy attachment fields).
type SlackAttachment struct {
	Fallback  string       `json:"fallback"`
	Color     string       `json:"color"` // red critical, orange warning, green resolved
	Title     string       `json:"title"`
	TitleLink string       `json:"title_link,omitempty"` // the rule, with EXTERNAL_URL
	Text      string       `json:"text"`                 // the summary
	Fields    []SlackField `json:"fields"`
	Footer    string       `json:"footer"`
	Ts        int64        `json:"ts"` // the transition's time, Unix seconds
}

// SlackField is one label or value of a SlackAttachment.
type SlackField struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// Slack colours.
const (
	slackRed    = "#d00000"
	slackOrange = "#f2a000"
	slackGreen  = "#2eb886"
)

// slackBody builds the body of ev for a slack channel.
func (n *Notifier) slackBody(ev alert.Event, labels map[string]string) SlackBody {
	status, color := "FIRING", slackRed
	switch {
	case ev.To == alert.StatusResolved:
		status, color = "RESOLVED", slackGreen
	case ev.Severity == string(alert.SeverityWarning):
		color = slackOrange
	}
	who := ev.AgentID
	title := fmt.Sprintf("[%s] %s", status, ev.RuleName)
	if ev.Severity != "" && ev.To != alert.StatusResolved {
		title = fmt.Sprintf("[%s:%s] %s", status, strings.ToUpper(ev.Severity), ev.RuleName)
	}
	if who != "" {
		title += " on " + who
	}
	text := title
	if ev.Summary != "" {
		text += ": " + ev.Summary
	}
	fields := []SlackField{{Title: "value", Value: strconv.FormatFloat(ev.Value, 'g', -1, 64), Short: true}}
	if ev.To == alert.StatusResolved && ev.DurationSeconds > 0 {
		d := time.Duration(ev.DurationSeconds * float64(time.Second)).Round(time.Second)
		fields = append(fields, SlackField{Title: "fired for", Value: d.String(), Short: true})
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if k == "alertname" {
			continue // the title
		}
		fields = append(fields, SlackField{Title: k, Value: labels[k], Short: true})
	}
	return SlackBody{
		Text: text,
		Attachments: []SlackAttachment{{
			Fallback:  text,
			Color:     color,
			Title:     title,
			TitleLink: n.generatorURL(ev.RuleID),
			Text:      ev.Summary,
			Fields:    fields,
			Footer:    "Agent Monitor",
			Ts:        ev.At.Unix(),
		}},
	}
}
