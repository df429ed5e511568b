package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/worker"
)

func TestEveryTicksUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	err := worker.Every(ctx, time.Millisecond, func(tctx context.Context) {
		if tctx != ctx {
			t.Errorf("tick got another context than Every's")
		}
		calls++
		if calls == 3 {
			cancel()
		}
	})
	// Returning at all shows that Every stopped; a tick already due when ctx ended may still run.
	if err != nil || calls < 3 {
		t.Errorf("Every = %v after %d ticks, want nil after at least 3", err, calls)
	}
}

func TestEveryWaitsOneIntervalFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := 0
	if err := worker.Every(ctx, time.Hour, func(context.Context) { calls++ }); err != nil || calls != 0 {
		t.Errorf("Every(cancelled ctx) = %v after %d ticks, want nil after none", err, calls)
	}
}
