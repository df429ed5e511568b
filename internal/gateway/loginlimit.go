package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// Login limits, after OWASP's authentication and credential-stuffing guidance: a per-address
// bucket and per-username buckets that count failures only and decay (GCRA), so that guessing is
// slow from one address and from many, while the real user with the right password is not locked
// out by someone else's failures.
//
//   - login-ip:<addr>: every attempt from one address (LOGIN_ATTEMPTS_PER_IP_PER_MINUTE), so one
//     address cannot try many usernames.
//   - login-fail:<user>:<addr>: attempts on one username from one address
//     (LOGIN_ATTEMPTS_PER_MINUTE). Taken before the password is checked (so parallel guesses
//     cannot overrun it) and cleared by a success, so only failures count.
//   - login:<user>: failures of one username from all addresses together
//     (LOGIN_FAILURES_PER_USER_PER_MINUTE), taken after a failed check. While it is exhausted
//     only an address with no recent failure for that user may still try: a distributed
//     attacker is slowed, and the user, from an address of their own, still gets in.
//
// Keys are hashed usernames, so they never hold client text; Redis prefixes them with "rate:".
type loginAttempt struct {
	limiter  *redis_rate.Limiter
	userKey  string
	userRate redis_rate.Limit
	pairKey  string
}

// tooManyLogins is the 429 of every login limit.
func tooManyLogins(why string, retry time.Duration) error {
	return &apiError{Status: http.StatusTooManyRequests, Message: "too many login attempts " + why + ", retry later", RetryAfter: max(retry, time.Second)}
}

// admitLogin applies the login limits to an attempt on username from addr before its password
// is checked: a 429 with Retry-After when a limit is exceeded, a 503 when Redis fails. The
// caller reports the outcome with failed or succeeded.
func (g *Gateway) admitLogin(ctx context.Context, username, addr string) (*loginAttempt, error) {
	edge := g.cfg.Edge
	prefix := g.cfg.Redis.Prefix
	user := hashToken(username)
	a := &loginAttempt{
		limiter:  g.limiter,
		userKey:  prefix + "login:" + user,
		userRate: redis_rate.PerMinute(edge.LoginFailuresPerUserPerMinute),
		pairKey:  prefix + "login-fail:" + user + ":" + addr,
	}
	res, err := g.limiter.Allow(ctx, prefix+"login-ip:"+addr, redis_rate.PerMinute(edge.LoginAttemptsPerIPPerMinute))
	if err != nil {
		return nil, unavailable("rate limiter", err)
	}
	if res.Allowed == 0 {
		return nil, tooManyLogins("from your address", res.RetryAfter)
	}
	pair, err := g.limiter.Allow(ctx, a.pairKey, g.loginLimit)
	if err != nil {
		return nil, unavailable("rate limiter", err)
	}
	if pair.Allowed == 0 {
		return nil, tooManyLogins("for this user from your address", pair.RetryAfter)
	}
	// Peek at the user's failures without taking one (cost 0).
	all, err := g.limiter.AllowN(ctx, a.userKey, a.userRate, 0)
	if err != nil {
		return nil, unavailable("rate limiter", err)
	}
	cleanAddress := pair.Remaining == g.loginLimit.Burst-1 // this attempt is its first in the window
	if all.Remaining < 1 && !cleanAddress {
		// A failure is free again once one emission interval has passed beyond the full burst.
		interval := a.userRate.Period / time.Duration(a.userRate.Rate)
		retry := all.ResetAfter - time.Duration(a.userRate.Burst-1)*interval
		return nil, tooManyLogins("for this user", retry)
	}
	return a, nil
}

// failed counts a wrong password (or unknown user) against the username.
func (a *loginAttempt) failed(ctx context.Context) error {
	if _, err := a.limiter.Allow(ctx, a.userKey, a.userRate); err != nil {
		return unavailable("rate limiter", err)
	}
	return nil
}

// succeeded clears the failures of this username from this address.
func (a *loginAttempt) succeeded(ctx context.Context) error {
	if err := a.limiter.Reset(ctx, a.pairKey); err != nil {
		return unavailable("rate limiter", err)
	}
	return nil
}
