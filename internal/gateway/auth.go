package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/user"
)

// Roles, from most to least privileged. A role may do everything the roles below it may.
var roleRank = map[string]int{
	user.RoleViewer:   1,
	user.RoleOperator: 2,
	user.RoleAdmin:    3,
}

// session is what a session token stands for; it is stored as JSON under the token's hash.
type session struct {
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// sessionTokenPrefix marks operator session tokens, so that one pasted where an agent key belongs
// (or the reverse) is recognisable in logs and support requests.
const sessionTokenPrefix = "ams_"

// sessions keeps operator sessions in Redis: prefix+"session:"+sha256(token) holds the session
// with a sliding TTL. The token itself is never stored. prefix+"user-sessions:"+username indexes
// a user's sessions so that deleting the user ends them.
//
// A session and its index live in different Redis Cluster slots (the token, which names the
// session, says nothing of its user), so no command or MULTI spans both; the writes are ordered
// instead. A login stores the session, then indexes it, and hands the token out only after both:
// a failure in between leaves a session nobody holds the token of, which expires. Ending sessions
// deletes them first and their index members after, so a failure leaves at most stale members,
// which the user's next login prunes. An index member therefore always has had its session stored
// (a concurrent login's pruning cannot drop a session about to be stored).
//
// Reading a session is not a write: its TTL is renewed (GETEX) at most once every refreshEvery
// per token and gateway copy, and read with a plain GET otherwise, so a dashboard polling several
// routes a second costs Redis one write every few seconds (issue 13). A session therefore
// expires SESSION_TTL after its last use, give or take refreshEvery (at most 5 s, a tenth of the
// TTL).
//
// A session read from Redis is then kept in this process for cacheFor (at most a second), so
// that a dashboard's polling costs Redis one session read a second per token, not one per
// request: the latest-values read answers from one round trip. Ending a session through this
// gateway copy drops it here at once; one ended through another copy (or expired) is refused here
// within cacheFor.
type sessions struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
	now    func() time.Time

	mu sync.Mutex
	// renewed holds, per token hash, when this process last renewed that session's TTL; at most
	// maxRenewedSessions entries (beyond that every read renews, as before issue 13).
	renewed map[string]time.Time
	// cached holds, per token hash, the session read from Redis and when that was; at most
	// maxRenewedSessions entries (beyond that, sessions are not cached).
	cached map[string]cachedSession
}

type cachedSession struct {
	sess session
	at   time.Time
}

// maxSessionCache bounds how long a session read from Redis is trusted without reading it again.
const maxSessionCache = time.Second

// maxSessionRefresh bounds how stale a session's TTL may get before a read renews it.
const maxSessionRefresh = 5 * time.Second

// maxRenewedSessions bounds the memory of when sessions were renewed: about 100 bytes each.
const maxRenewedSessions = 10_000

func newSessions(rdb redis.UniversalClient, prefix string, ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{rdb: rdb, prefix: prefix, ttl: ttl, now: now, renewed: make(map[string]time.Time), cached: make(map[string]cachedSession)}
}

// cacheFor is how long a session read from Redis is used without reading it again: never longer
// than the interval between renewals, so that caching delays no renewal.
func (s *sessions) cacheFor() time.Duration { return min(maxSessionCache, s.refreshEvery()) }

// fromCache returns the session h as read from Redis within cacheFor of now.
func (s *sessions) fromCache(h string, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cached[h]
	if !ok {
		return session{}, false
	}
	if age := now.Sub(c.at); age < 0 || age >= s.cacheFor() {
		delete(s.cached, h)
		return session{}, false
	}
	return c.sess, true
}

// remember caches sess, read from Redis at now, unless the cache is full of fresh entries.
func (s *sessions) remember(h string, sess session, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cached[h]; !ok && !makeRoom(s.cached, func(c cachedSession) time.Time { return c.at }, now, s.cacheFor()) {
		return
	}
	s.cached[h] = cachedSession{sess: sess, at: now}
}

// makeRoom reports whether m, which holds per token hash something recorded at(v), has room for
// one more entry (at most maxRenewedSessions): when it is full, it first drops the entries older
// than maxAge (or from the future: the clock went back).
func makeRoom[V any](m map[string]V, at func(V) time.Time, now time.Time, maxAge time.Duration) bool {
	if len(m) < maxRenewedSessions {
		return true
	}
	dropStale(m, at, now, maxAge, nil)
	return len(m) < maxRenewedSessions
}

// dropStale deletes from m the entries recorded at(v) maxAge or more before now, or after now
// (the clock went back), and passes each to dropped unless it is nil.
func dropStale[V any](m map[string]V, at func(V) time.Time, now time.Time, maxAge time.Duration, dropped func(V)) {
	for k, v := range m {
		if age := now.Sub(at(v)); age < 0 || age >= maxAge {
			delete(m, k)
			if dropped != nil {
				dropped(v)
			}
		}
	}
}

// refreshEvery is how often a session in use has its TTL renewed.
func (s *sessions) refreshEvery() time.Duration { return min(maxSessionRefresh, s.ttl/10) }

// claimRenewal reports whether a read of the session h at now must renew its TTL, and records
// the renewal when it must.
func (s *sessions) claimRenewal(h string, now time.Time) bool {
	every := s.refreshEvery()
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.renewed[h]; ok {
		if age := now.Sub(last); age >= 0 && age < every {
			return false
		}
	} else if !makeRoom(s.renewed, func(t time.Time) time.Time { return t }, now, every) {
		return true // too many sessions in use at once to track: renew on every read
	}
	s.renewed[h] = now
	return true
}

// forget drops what claimRenewal recorded and what the cache holds for h (the session ended, or
// its read failed).
func (s *sessions) forget(hashes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hashes {
		delete(s.renewed, h)
		delete(s.cached, h)
	}
}

func (s *sessions) key(tokenHash string) string { return s.prefix + "session:" + tokenHash }

func (s *sessions) indexKey(username string) string { return s.prefix + "user-sessions:" + username }

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// create starts a session for u and returns its token and when it expires unless used.
func (s *sessions) create(ctx context.Context, username, role string, now time.Time) (string, time.Time, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", time.Time{}, fmt.Errorf("generating session token: %w", err)
	}
	token := sessionTokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	val, err := json.Marshal(session{Username: username, Role: role, CreatedAt: now.UTC()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encoding session: %w", err)
	}
	h := hashToken(token)
	idx := s.indexKey(username)
	// Drop index members whose sessions have expired, so that the index stays as small as the
	// user's live sessions (it has no TTL of its own: a sliding session may live for ever).
	members, err := s.rdb.SMembers(ctx, idx).Result()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading sessions of %s: %w", username, err)
	}
	// The session, then its index member (see sessions). The EXISTS checks ride along.
	pipe := s.rdb.Pipeline()
	pipe.Set(ctx, s.key(h), val, s.ttl)
	existsCmds := make([]*redis.IntCmd, len(members))
	for i, m := range members {
		existsCmds[i] = pipe.Exists(ctx, s.key(m))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return "", time.Time{}, fmt.Errorf("storing session: %w", err)
	}
	if err := s.rdb.SAdd(ctx, idx, h).Err(); err != nil {
		return "", time.Time{}, fmt.Errorf("indexing session: %w", err)
	}
	var stale []any
	for i, c := range existsCmds {
		if c.Val() == 0 {
			stale = append(stale, members[i])
		}
	}
	if len(stale) > 0 {
		if err := s.rdb.SRem(ctx, idx, stale...).Err(); err != nil {
			return "", time.Time{}, fmt.Errorf("pruning sessions of %s: %w", username, err)
		}
	}
	return token, now.Add(s.ttl), nil
}

// errNoSession is returned by lookup for a token that names no live session.
var errNoSession = errors.New("no such session")

// lookup returns the session of token from the cache (see sessions) or in one round trip: GETEX
// renewing its TTL when claimRenewal says it is due, GET otherwise.
func (s *sessions) lookup(ctx context.Context, token string) (session, string, error) {
	h := hashToken(token)
	now := s.now()
	if sess, ok := s.fromCache(h, now); ok {
		return sess, h, nil
	}
	var cmd *redis.StringCmd
	if s.claimRenewal(h, now) {
		cmd = s.rdb.GetEx(ctx, s.key(h), s.ttl)
	} else {
		cmd = s.rdb.Get(ctx, s.key(h))
	}
	val, err := cmd.Bytes()
	if err != nil {
		s.forget(h) // the next read renews again
	}
	if errors.Is(err, redis.Nil) {
		return session{}, "", errNoSession
	}
	if err != nil {
		return session{}, "", fmt.Errorf("reading session: %w", err)
	}
	var sess session
	if err := json.Unmarshal(val, &sess); err != nil {
		return session{}, "", fmt.Errorf("decoding session: %w", err)
	}
	s.remember(h, sess, now)
	return sess, h, nil
}

// end deletes one session, then its index member.
func (s *sessions) end(ctx context.Context, username, tokenHash string) error {
	s.forget(tokenHash)
	err := s.rdb.Del(ctx, s.key(tokenHash)).Err()
	s.forget(tokenHash) // a read racing the DEL may have cached it again
	if err != nil {
		return fmt.Errorf("ending session: %w", err)
	}
	if err := s.rdb.SRem(ctx, s.indexKey(username), tokenHash).Err(); err != nil {
		return fmt.Errorf("ending session (index): %w", err)
	}
	return nil
}

// endAll deletes every session of username, then the user's index.
func (s *sessions) endAll(ctx context.Context, username string) error {
	return s.endOthers(ctx, username, "")
}

// Context keys for what the auth middleware learns.
const (
	ctxSession   = "gateway.session"
	ctxTokenHash = "gateway.token_hash"
)

// requireRole authenticates the operator session of the request and admits it when its role is at
// least role: 401 for a missing, unknown or expired token, 403 for too small a role.
func (g *Gateway) requireRole(role string) echo.MiddlewareFunc {
	need := roleRank[role]
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token := bearerToken(c.Request(), "Bearer")
			if token == "" {
				return credentialError(c.Request(), "session token", "Authorization: Bearer <token> from POST /api/v1/auth/login", "Bearer")
			}
			if !strings.HasPrefix(token, sessionTokenPrefix) || len(token) > 128 {
				return newError(http.StatusUnauthorized, "invalid or expired session token")
			}
			sess, h, err := g.sessions.lookup(c.Request().Context(), token)
			if errors.Is(err, errNoSession) {
				return newError(http.StatusUnauthorized, "invalid or expired session token")
			}
			if err != nil {
				return unavailable("session store", err)
			}
			if roleRank[sess.Role] < need {
				return newError(http.StatusForbidden, "this action needs role %s; you are %s", role, sess.Role)
			}
			c.Set(ctxSession, sess)
			c.Set(ctxTokenHash, h)
			setAuditClientAddr(c)
			return next(c)
		}
	}
}

// sessionOf returns the session requireRole admitted.
func sessionOf(c echo.Context) session {
	s, _ := c.Get(ctxSession).(session)
	return s
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Role      string    `json:"role"`
	Username  string    `json:"username"`
}

// login answers POST /api/v1/auth/login.
func (g *Gateway) login(c echo.Context) error {
	var req loginRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return newError(http.StatusBadRequest, "username and password are required")
	}
	ctx := c.Request().Context()
	badCredentials := newError(http.StatusUnauthorized, "invalid username or password")
	if len(req.Username) > maxUsernameLen || len(req.Password) > maxPasswordLen {
		return badCredentials
	}
	// Attempts are limited per source address and per username (loginlimit.go).
	attempt, err := g.admitLogin(ctx, req.Username, c.RealIP())
	if err != nil {
		return err
	}
	user, hash, err := g.users.Credentials(ctx, req.Username)
	if errors.Is(err, postgres.ErrNotFound) {
		// Compare anyway, so that a login for an unknown user takes as long as one with a wrong
		// password and does not reveal which usernames exist.
		_ = bcrypt.CompareHashAndPassword(g.dummyHash, []byte(req.Password))
		return cmp.Or[error](attempt.failed(ctx), badCredentials)
	}
	if err != nil {
		return unavailable("user store", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(req.Password)); err != nil {
		return cmp.Or[error](attempt.failed(ctx), badCredentials)
	}
	if err := attempt.succeeded(ctx); err != nil {
		return err
	}
	token, expires, err := g.sessions.create(ctx, user.Username, user.Role, g.now())
	if err != nil {
		return unavailable("session store", err)
	}
	g.logger.Info("operator logged in", "username", user.Username, "role", user.Role)
	return c.JSON(http.StatusOK, loginResponse{Token: token, ExpiresAt: expires.UTC(), Role: user.Role, Username: user.Username})
}

// logout answers POST /api/v1/auth/logout: the session of the request ends.
func (g *Gateway) logout(c echo.Context) error {
	h, _ := c.Get(ctxTokenHash).(string)
	if err := g.sessions.end(c.Request().Context(), sessionOf(c).Username, h); err != nil {
		return unavailable("session store", err)
	}
	return c.NoContent(http.StatusNoContent)
}

// loginLimitOf is the rate of failed logins per username from one address (loginlimit.go):
// perMinute a minute, bursting to as many.
func loginLimitOf(perMinute int) redis_rate.Limit {
	return redis_rate.Limit{Rate: perMinute, Burst: perMinute, Period: time.Minute}
}
