package alert

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
)

// DefaultSummary is the summary template of a rule that sets none.
const DefaultSummary = "{{.Rule}} on {{.Agent}}: {{.Severity}}, value {{.Value}} (threshold {{.Threshold}})"

// SummaryData is what a summary template can show: {{.Rule}}, {{.Agent}}, {{.Value}},
// {{.Threshold}}, {{.Severity}} and {{.Labels.name}} (empty when the alert has no such label).
type SummaryData struct {
	// Rule is the rule's name, Agent the agent's name or id (the caller's choice).
	Rule, Agent string
	// Value and Threshold are the transition's (Transition.Value and Transition.Threshold).
	Value, Threshold float64
	Severity         Severity
	// Labels are the alert's labels; the caller decides which (typically the agent's labels
	// and the series tags, overlaid by the rule's labels).
	Labels map[string]string
}

// summaryFields are the one-name fields a summary may show; Labels is handled apart.
var summaryFields = map[string]bool{"Value": true, "Agent": true, "Rule": true, "Threshold": true, "Severity": true}

// number prints a float64 without exponent or trailing zeros: 1000000, not 1e+06.
type number float64

func (n number) String() string { return num(float64(n)) }

// summaryView is what the template executes against.
type summaryView struct {
	Rule, Agent      string
	Value, Threshold number
	Severity         Severity
	Labels           map[string]string
}

// RenderSummary renders r's summary (DefaultSummary when empty) with d. Summaries are the
// safe subset of text/template that checkSummary accepts: text and single-field actions, no
// functions, conditionals, loops or nested templates, so rendering cannot run away or reach
// anything but d. It fails only for a summary that Validate would refuse.
func (r *Rule) RenderSummary(d SummaryData) (string, error) {
	text := r.Summary
	if text == "" {
		text = DefaultSummary
	}
	t, err := parseSummary(text)
	if err != nil {
		return "", fmt.Errorf("rendering summary of rule %q: %w", r.ID, err)
	}
	if t.Tree == nil { // only comments
		return "", nil
	}
	var b strings.Builder
	v := summaryView{Rule: d.Rule, Agent: d.Agent, Value: number(d.Value), Threshold: number(d.Threshold),
		Severity: d.Severity, Labels: d.Labels}
	if err := t.Execute(&b, v); err != nil {
		return "", fmt.Errorf("rendering summary of rule %q: %w", r.ID, err)
	}
	return b.String(), nil
}

func checkSummary(text string) *ValidationError {
	// Newlines and tabs are fine in a summary; other control characters are not.
	if err := checkText("summary", strings.NewReplacer("\n", " ", "\t", " ").Replace(text), MaxSummaryLen); err != nil {
		return err
	}
	if _, err := parseSummary(text); err != nil {
		return invalid("summary", "%v", err)
	}
	return nil
}

// parseSummary parses text with text/template (a maintained parser, rather than a hand-written
// one) and then refuses every node outside the safe subset.
func parseSummary(text string) (*template.Template, error) {
	t, err := template.New("summary").Option("missingkey=zero").Parse(text)
	if err != nil {
		// "template: summary:1: unclosed action" becomes "line 1: unclosed action": the
		// client knows which member it is.
		msg := strings.TrimPrefix(err.Error(), "template: summary:")
		if msg != "" && msg[0] >= '0' && msg[0] <= '9' {
			msg = "line " + msg
		}
		return nil, errors.New(msg)
	}
	if len(t.Templates()) > 1 {
		return nil, fmt.Errorf("must not define templates")
	}
	if t.Tree == nil {
		return t, nil
	}
	if err := checkSummaryNode(t.Tree.Root); err != nil {
		return nil, err
	}
	return t, nil
}

func checkSummaryNode(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			if err := checkSummaryNode(c); err != nil {
				return err
			}
		}
		return nil
	case *parse.TextNode, *parse.CommentNode:
		return nil
	case *parse.ActionNode:
		if p := n.Pipe; len(p.Decl) == 0 && len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 {
			if f, ok := p.Cmds[0].Args[0].(*parse.FieldNode); ok {
				if len(f.Ident) == 1 && summaryFields[f.Ident[0]] || len(f.Ident) == 2 && f.Ident[0] == "Labels" {
					return nil
				}
			}
		}
	}
	s := n.String()
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "..."
	}
	return fmt.Errorf("%s is not allowed: use only {{.Rule}}, {{.Agent}}, {{.Value}}, {{.Threshold}}, {{.Severity}} and {{.Labels.name}}", s)
}
