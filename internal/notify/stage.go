package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/agentmonitor/agentmonitor/internal/alert"
)

// Notification is one alert transition on its way through the stages. Channel is set by the
// route stage for the stages that work on one channel.
type Notification struct {
	Event   alert.Event
	Labels  map[string]string // the alert's labels in the body, and what silences match
	Channel alert.Channel
}

// Stage is one step of the notification pipeline, as in Alertmanager's notify package. Exec
// returns the context for the next stage (a stage may attach values to it) and the
// notification to pass on; a nil notification ends the chain without error (silenced, already
// sent). An error ends the chain; errors that retrying cannot fix are permanent (see
// permanent).
type Stage interface {
	Exec(ctx context.Context, logger *slog.Logger, n *Notification) (context.Context, *Notification, error)
}

// StageFunc is a function that is a Stage.
type StageFunc func(ctx context.Context, logger *slog.Logger, n *Notification) (context.Context, *Notification, error)

// Exec calls f.
func (f StageFunc) Exec(ctx context.Context, logger *slog.Logger, n *Notification) (context.Context, *Notification, error) {
	return f(ctx, logger, n)
}

// MultiStage runs its stages in order, each with what the previous one passed on.
type MultiStage []Stage

// Exec runs the stages until one returns an error or no notification.
func (ms MultiStage) Exec(ctx context.Context, logger *slog.Logger, n *Notification) (context.Context, *Notification, error) {
	var err error
	for _, s := range ms {
		if n == nil {
			return ctx, nil, nil
		}
		if ctx, n, err = s.Exec(ctx, logger, n); err != nil {
			return ctx, nil, err
		}
	}
	return ctx, n, nil
}

// FanoutStage runs its stages concurrently, each with its own notification: one per channel.
type FanoutStage struct {
	Stages        []Stage
	Notifications []*Notification
}

// Exec runs Stages[i] with Notifications[i], all at once, and joins their errors. A stage that
// panics fails with a permanent error instead of ending the process.
func (fs FanoutStage) Exec(ctx context.Context, logger *slog.Logger, n *Notification) (context.Context, *Notification, error) {
	errs := make([]error, len(fs.Stages))
	var wg sync.WaitGroup
	for i, s := range fs.Stages {
		wg.Go(func() { errs[i] = safeExec(ctx, logger, s, fs.Notifications[i]) })
	}
	wg.Wait()
	return ctx, n, errors.Join(errs...)
}

// panicError is a recovered panic: permanent, as the same input would panic again.
type panicError struct {
	value any
	stack []byte
}

func (e panicError) Error() string {
	return fmt.Sprintf("panic in the notification pipeline: %v", e.value)
}

// safeExec runs s, turning a panic into a permanent error.
func safeExec(ctx context.Context, logger *slog.Logger, s Stage, n *Notification) (err error) {
	defer func() {
		if r := recover(); r != nil {
			pe := panicError{value: r, stack: debug.Stack()}
			logger.Error("notification stage panicked", "panic", r, "stack", string(pe.stack))
			err = permanent(pe)
		}
	}()
	_, _, err = s.Exec(ctx, logger, n)
	return err
}

// newPipeline builds the chain: silence, route; then per channel a bounded retry around
// (remembered marker, then under the channel's lock: dedupe, deliver, record).
func (n *Notifier) newPipeline() Stage {
	perChannel := retryStage{n: n, next: MultiStage{
		StageFunc(n.rerecord),
		lockStage{n: n, next: MultiStage{
			StageFunc(n.dedupe),
			StageFunc(n.deliver),
			StageFunc(n.record),
		}},
	}}
	// A repeat (repeat.go) has its channel already: silence, then the same per-channel stages.
	n.repeatPipeline = MultiStage{StageFunc(n.silence), perChannel}
	return MultiStage{
		StageFunc(n.silence),
		routeStage{n: n, perChannel: perChannel, grouped: StageFunc(n.enqueue)},
	}
}
