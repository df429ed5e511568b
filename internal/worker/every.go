package worker

import (
	"context"
	"time"
)

// Every calls tick every interval until ctx is done, then returns nil. The first call is one
// interval after the start. tick handles (logs) its own errors, so that one failed round only
// waits for the next; it is given ctx, and a tick under way when ctx ends finishes first.
func Every(ctx context.Context, interval time.Duration, tick func(context.Context)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		tick(ctx)
	}
}
