package alert

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// KindPipeline watches the pipeline itself rather than an agent: consumer groups, dead letters,
// the stores and alerting's own liveness (Rule.Pipeline says which). Its alerts have no agent:
// Key.AgentID is "" and Key.Series names the subject (a group, a store, a dead-letter stream).
const KindPipeline Kind = "pipeline"

// Check is what a pipeline rule watches.
type Check string

// The pipeline checks.
const (
	// CheckGroupLag fires per group whose lag (entries not yet delivered to it, summed over the
	// streams it reads) has stayed above Pipeline.Bound for Rule.For.
	CheckGroupLag Check = "group_lag"
	// CheckDeadLetters fires per dead-letter stream that holds entries, and resolves once it is
	// empty again (replayed or aged out).
	CheckDeadLetters Check = "dead_letters"
	// CheckNoConsumer fires per group that has no live consumer for Rule.For: entries have
	// waited for it longer than Pipeline.Idle and none of its consumers read within Idle, or it
	// has no consumer at all, or no group exists yet. The value is the live consumers.
	CheckNoConsumer Check = "no_consumer"
	// CheckStoreDown fires per store the alerter could not reach for Rule.For.
	CheckStoreDown Check = "store_down"
	// CheckWatchdog always fires, so that a receiver notices when alerting stops (the dead
	// man's switch).
	CheckWatchdog Check = "watchdog"
)

// checks lists the pipeline checks in the order messages name them.
var checks = []Check{CheckGroupLag, CheckDeadLetters, CheckNoConsumer, CheckStoreDown, CheckWatchdog}

// The stores a store_down check can watch, named as GET /api/v1/pipeline names them.
const (
	StoreRedis      = "redis"
	StorePostgreSQL = "postgresql"
	StoreInfluxDB   = "influxdb"
)

// stores lists the store names.
var stores = []string{StoreRedis, StorePostgreSQL, StoreInfluxDB}

// Bounds of pipeline rules.
const (
	MaxGroups   = 32  // entries of Pipeline.Groups
	MaxGroupLen = 128 // bytes of a group name
	// MinIdle is the shortest Pipeline.Idle: a consumer blocks a second per read and pauses up
	// to its retry backoff between failing batches, so a shorter one mistakes work for absence.
	MinIdle = 10 * time.Second
	MaxIdle = 24 * time.Hour
)

// Pipeline is the part of a pipeline rule that says what it watches. Which members apply
// depends on Check: Groups and Bound for group_lag, Groups and Idle for no_consumer, Stores for
// store_down, none for dead_letters and watchdog.
type Pipeline struct {
	Check Check `json:"check"`
	// Groups are consumer-group names (influx-writer, pg-sync, alerter, rollup, notifier,
	// alert-history).
	Groups []string `json:"groups,omitempty"`
	// Bound is the lag, in entries, above which a group_lag alert's condition holds (a pointer,
	// so that a missing bound is told from 0).
	Bound *int64 `json:"bound,omitempty"`
	// Idle is how recently a consumer must have read for the group to count as consumed.
	Idle Duration `json:"idle,omitzero"`
	// Stores are among redis, postgresql and influxdb.
	Stores []string `json:"stores,omitempty"`
}

// Subjects returns what r watches, one alert each: its groups (group_lag, no_consumer), its
// stores (store_down), the single subject "" (watchdog), or nil for dead_letters, whose subjects
// are the dead-letter streams the caller knows.
func (r *Rule) Subjects() []string {
	if r.Kind != KindPipeline || r.Pipeline == nil {
		return nil
	}
	switch r.Pipeline.Check {
	case CheckGroupLag, CheckNoConsumer:
		return r.Pipeline.Groups
	case CheckStoreDown:
		return r.Pipeline.Stores
	case CheckWatchdog:
		return []string{""}
	}
	return nil
}

// PipelineMetric is what Event.Metric and Active.Metric carry for alerts of pipeline rules:
// "pipeline." and the check, so that an edit changing the check retires the alerts of the old
// one and notifications say what was checked.
func (r *Rule) PipelineMetric() string {
	if r.Kind != KindPipeline || r.Pipeline == nil {
		return ""
	}
	return "pipeline." + string(r.Pipeline.Check)
}

// conditionRule returns the threshold rule whose condition a pipeline rule's value is compared
// with: the value is the lag (group_lag, above Bound), the dead letters (dead_letters, above 0),
// the live consumers (no_consumer, below 1), 1 for an unreachable store else 0 (store_down, above
// 0) and 1 (watchdog, above 0).
func (r *Rule) conditionRule() Rule {
	c := Rule{ID: r.ID, Name: r.Name, Kind: KindThreshold, Aggregation: AggLast, Operator: OpGT, For: r.For}
	var level float64
	if r.Pipeline != nil {
		switch r.Pipeline.Check {
		case CheckGroupLag:
			if r.Pipeline.Bound != nil {
				level = float64(*r.Pipeline.Bound)
			}
		case CheckNoConsumer:
			c.Operator, level = OpLT, 1
		case CheckWatchdog:
			c.For = 0
		}
	}
	th := &Threshold{Value: &level}
	if r.Severity == SeverityWarning {
		c.Thresholds.Warning = th
	} else {
		c.Thresholds.Critical = th
	}
	return c
}

// StepPipeline evaluates a pipeline rule for one subject (prev.Key: the rule, no agent, the
// subject as series) with value measured at now (see conditionRule for what value is), through
// Step: the condition must hold for rule.For before the alert fires (pending meanwhile), and it
// resolves when the condition stops holding. A now not after prev.LastEval (a copy whose clock
// lags behind the one that committed the state last) changes nothing. Unlike samples, now is the
// evaluator's clock: copies evaluating at once derive transitions with different ids, and it is
// the state transaction, not the id, that makes each transition happen once.
func StepPipeline(prev State, rule Rule, value float64, now time.Time) (State, []Transition) {
	return Step(prev, rule.conditionRule(), value, now)
}

func (r *Rule) validatePipeline() *ValidationError {
	err := r.checkNotThreshold(func() *ValidationError {
		if len(r.Agents.IDs) > 0 || len(r.Agents.Labels) > 0 {
			return invalid("agents", "applies only to threshold and agent_silent rules: pipeline rules watch no agent")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if r.After != 0 {
		return invalid("after", "applies only to agent_silent rules")
	}
	p := r.Pipeline
	if p == nil {
		return invalid("pipeline", "is required for pipeline rules: {\"check\": %s}", checkList())
	}
	switch p.Check {
	case CheckGroupLag, CheckDeadLetters, CheckNoConsumer, CheckStoreDown, CheckWatchdog:
	case "":
		return invalid("pipeline.check", "is required: %s", checkList())
	default:
		return invalid("pipeline.check", "must be %s, got %q", checkList(), p.Check)
	}
	usesGroups := p.Check == CheckGroupLag || p.Check == CheckNoConsumer
	switch {
	case usesGroups:
		if err := checkGroups(p.Groups); err != nil {
			return err
		}
	case len(p.Groups) > 0:
		return invalid("pipeline.groups", "applies only to checks group_lag and no_consumer")
	}
	switch {
	case p.Check == CheckGroupLag && p.Bound == nil:
		return invalid("pipeline.bound", "is required for check group_lag: the lag in entries above which it fires")
	case p.Check == CheckGroupLag && *p.Bound < 0:
		return invalid("pipeline.bound", "must not be negative, got %d", *p.Bound)
	case p.Check != CheckGroupLag && p.Bound != nil:
		return invalid("pipeline.bound", "applies only to check group_lag")
	}
	switch idle := time.Duration(p.Idle); {
	case p.Check != CheckNoConsumer && idle != 0:
		return invalid("pipeline.idle", "applies only to check no_consumer")
	case p.Check == CheckNoConsumer && idle == 0:
		return invalid("pipeline.idle", "is required for check no_consumer: at least %s (got none or 0s)", Duration(MinIdle))
	case p.Check == CheckNoConsumer && idle < MinIdle:
		return invalid("pipeline.idle", "must be at least %s, got %s", Duration(MinIdle), Duration(idle))
	case idle > MaxIdle:
		return invalid("pipeline.idle", "must be at most %s, got %s", Duration(MaxIdle), Duration(idle))
	}
	if p.Check == CheckStoreDown {
		if err := checkStores(p.Stores); err != nil {
			return err
		}
	} else if len(p.Stores) > 0 {
		return invalid("pipeline.stores", "applies only to check store_down")
	}
	if r.For != 0 && p.Check == CheckWatchdog {
		return invalid("for", "does not apply to check watchdog: it fires at once and stays firing")
	}
	if err := checkFor(r.For, "fire at the first check"); err != nil {
		return err
	}
	return checkSeverity(r.Severity, r.Kind)
}

func checkList() string {
	s := make([]string, len(checks))
	for i, c := range checks {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

func checkGroups(groups []string) *ValidationError {
	switch {
	case len(groups) == 0:
		return invalid("pipeline.groups", "is required: the consumer groups to watch, such as [\"influx-writer\", \"pg-sync\"]")
	case len(groups) > MaxGroups:
		return invalid("pipeline.groups", "must list at most %d groups, got %d", MaxGroups, len(groups))
	}
	for i, g := range groups {
		if strings.TrimSpace(g) == "" {
			return invalid("pipeline.groups", "entry %d must not be blank", i)
		}
		if err := checkText("pipeline.groups", g, MaxGroupLen); err != nil {
			return err
		}
		if slices.Contains(groups[:i], g) {
			return invalid("pipeline.groups", "lists %q twice", g)
		}
	}
	return nil
}

func checkStores(list []string) *ValidationError {
	if len(list) == 0 {
		return invalid("pipeline.stores", "is required for check store_down: any of %s", strings.Join(stores, ", "))
	}
	for i, s := range list {
		if !slices.Contains(stores, s) {
			return invalid("pipeline.stores", "must be among %s, got %q", strings.Join(stores, ", "), truncateText(s, 64))
		}
		if slices.Contains(list[:i], s) {
			return invalid("pipeline.stores", "lists %q twice", s)
		}
	}
	return nil
}

// truncateText shortens s to at most n bytes for a message, on a rune boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s...", s[:n])
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
