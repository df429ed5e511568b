package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

// Eventually polls cond until it returns "" and fails the test with cond's last word when
// timeout passes first. It polls every 10ms at first, backing off to 200ms, so that cheap
// conditions are seen at once and expensive ones (a query) do not load the server.
func Eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 10 * time.Millisecond
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// DrainTimeout is how long WaitDrained waits.
const DrainTimeout = 30 * time.Second

// WaitDrained waits until the consumer group ("" for every group) has read and acknowledged every
// entry of the streams (XINFO GROUPS: lag 0 and pending 0), and fails the test when that does
// not happen within DrainTimeout. Call it before asserting that something did NOT happen: once
// the consumer has handled everything, an effect that is missing will stay missing.
func WaitDrained(t testing.TB, rdb redis.UniversalClient, group string, streams ...string) {
	t.Helper()
	Eventually(t, DrainTimeout, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ok, why, err := stack.Drained(ctx, rdb, group, streams...)
		switch {
		case err != nil:
			return "checking the consumer group: " + err.Error()
		case !ok:
			return "not drained: " + why
		}
		return ""
	})
}
