package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/snapshot"
)

type serverKeyKey struct{}

// serverKey authenticates a game server's key (Bearer or X-API-Key) and
// checks the environment in the path: 401 for a missing, unknown or revoked
// key, 404 for an unknown environment, 403 for a key of another environment
// or an admin token.
func (s *Server) serverKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		t, err := s.serverCredential(c)
		if err != nil {
			return err
		}
		ctx := c.Request().Context()
		env := c.Param("env")
		if t.Environment != env {
			if _, err := s.flags.Store().GetEnvironment(ctx, env); err != nil {
				return err
			}
			if t.Kind != auth.KindServer {
				return solstice.Errorf(solstice.KindForbidden, "game-server endpoints take a server key, not an admin token")
			}
			return solstice.Errorf(solstice.KindForbidden, "server key %s is for environment %q, not %q", t.ID, t.Environment, env)
		}
		actAsServer(c, t)
		return next(c)
	}
}

// serverCredential authenticates the credential a game server sent, in
// Authorization: Bearer or X-API-Key: 401 (KindUnauthorized) when it is
// missing, unknown or revoked. Its kind and environment are the caller's to
// check.
func (s *Server) serverCredential(c echo.Context) (auth.Token, error) {
	secret, ok := bearer(c.Request())
	if !ok {
		secret = strings.TrimSpace(c.Request().Header.Get("X-API-Key"))
	}
	if secret == "" {
		return auth.Token{}, solstice.Errorf(solstice.KindUnauthorized, "missing credentials: send Authorization: Bearer <server key> (create one with `solstice tokens create --server --env ENV`)")
	}
	return s.auth.Authenticate(c.Request().Context(), secret)
}

// actAsServer puts server key t and its actor into the request's context.
func actAsServer(c echo.Context, t auth.Token) {
	actor := solstice.Actor{Name: "server-key:" + t.Name, Kind: "token", TokenID: t.ID, Address: c.RealIP()}
	ctx := context.WithValue(solstice.WithActor(c.Request().Context(), actor), serverKeyKey{}, t)
	c.SetRequest(c.Request().WithContext(ctx))
}

// getSnapshot serves the signed snapshot of an environment: the prebuilt
// envelope (gzip-compressed when accepted), its ETag, 304 for a matching
// If-None-Match, and with ?wait= a long poll that answers as soon as a newer
// version is published, or with 304 when none was by the deadline.
func (s *Server) getSnapshot(c echo.Context) error {
	req := c.Request()
	env := c.Param("env")
	wait, err := parseWait(c.QueryParam("wait"))
	if err != nil {
		return err
	}
	b, ok := s.publisher.Current(env)
	if !ok {
		if b, err = s.publisher.Publish(req.Context(), env); err != nil {
			return err
		}
	}
	held, _ := strconv.ParseInt(req.Header.Get(snapshot.HeaderVersion), 10, 64)
	if s.fleet != nil {
		s.fleet.Seen(env, req.Header.Get(snapshot.HeaderServerID), c.RealIP(), held)
	}
	if etagMatches(req.Header.Get("If-None-Match"), b.ETag()) {
		if wait <= 0 {
			return notModified(c, b)
		}
		ctx, cancel := context.WithTimeout(req.Context(), wait)
		stop := context.AfterFunc(s.drain, cancel)
		newer, err := s.publisher.Wait(ctx, env, b.Version())
		stop()
		cancel()
		switch {
		case err == nil:
			b = newer
		case errors.Is(err, context.DeadlineExceeded) || s.drain.Err() != nil:
			return notModified(c, b)
		default:
			return nil // the client went away
		}
	}
	h := c.Response().Header()
	snapshotHeaders(h, b)
	h.Set(echo.HeaderContentType, snapshot.EnvelopeContentType)
	body := b.Envelope()
	if acceptsGzip(req.Header.Get(echo.HeaderAcceptEncoding)) {
		h.Set(echo.HeaderContentEncoding, "gzip")
		body = b.Gzip()
	}
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	c.Response().WriteHeader(http.StatusOK)
	if req.Method == http.MethodHead {
		return nil
	}
	_, err = c.Response().Write(body)
	return err
}

func snapshotHeaders(h http.Header, b *snapshot.Built) {
	h.Set("ETag", b.ETag())
	h.Set(snapshot.HeaderVersion, strconv.FormatInt(b.Version(), 10))
	// Any cache may keep a snapshot (trust comes from the signature) but must
	// revalidate it, so a rollback is never hidden behind a cached copy.
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Accept-Encoding")
}

func notModified(c echo.Context, b *snapshot.Built) error {
	snapshotHeaders(c.Response().Header(), b)
	return c.NoContent(http.StatusNotModified)
}

// parseWait reads ?wait= as a Go duration ("30s") or whole seconds ("30"),
// capped at snapshot.MaxLongPoll.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, badRequestf("wait must be a duration such as 30s, got " + strconv.Quote(v))
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, badRequestf("wait must not be negative")
	}
	return min(d, snapshot.MaxLongPoll), nil
}

// etagMatches implements If-None-Match's weak comparison for one current
// tag: a list of tags, or "*". NOTE: an unquoted tag is accepted too, since
// some game-engine HTTP clients strip the quotes.
func etagMatches(header, tag string) bool {
	if header == "" {
		return false
	}
	bare := strings.Trim(tag, `"`)
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == tag || t == bare {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header accepts gzip (with
// a non-zero q value).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.TrimSpace(coding) != "*" {
			continue
		}
		q := strings.TrimSpace(params)
		if v, ok := strings.CutPrefix(q, "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// getFleet reports which snapshot versions the environment's game servers
// hold.
func (s *Server) getFleet(c echo.Context) error {
	env := c.Param("env")
	if _, err := s.flags.Store().GetEnvironment(c.Request().Context(), env); err != nil {
		return err
	}
	stale := 2 * time.Minute
	if v := c.QueryParam("stale_after"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return badRequestf("stale_after must be a positive duration such as 2m, got " + strconv.Quote(v))
		}
		stale = d
	}
	var newest int64
	if s.publisher != nil {
		if b, ok := s.publisher.Current(env); ok {
			newest = b.Version()
		}
	}
	return c.JSON(http.StatusOK, s.fleet.Report(env, newest, stale))
}
