// Package web is the HTTP adapter of Solstice and the only package that
// imports Echo: the admin JSON API under /api/v1, the game-server API
// (signed snapshots under /v1, OFREP under /ofrep/v1), health and metrics. Every
// route is registered in routes; handlers bind the request, call one domain
// method and render the result or return the error, which errorHandler turns
// into RFC 9457 problem+json.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/fleet"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/telemetry"
)

// DefaultBodyLimit caps request bodies.
const DefaultBodyLimit = 2 << 20

// Deps are what the server needs.
type Deps struct {
	Flags    *flags.Service
	Auth     *auth.Service
	Logger   *slog.Logger
	Registry *prometheus.Registry // metrics are registered here and served on /metrics
	// Publisher serves signed snapshots; Fleet records who polls them.
	Publisher *snapshot.Publisher
	Fleet     *fleet.Tracker
	// Telemetry ingests game servers' batches on POST /v1/telemetry (not
	// served when nil).
	Telemetry *telemetry.Service
	// Guardrails serves the guardrail and incident API (not served when
	// nil).
	Guardrails *guardrails.Service
	// Rollouts serves rollout plans, seasonal events, the calendar and
	// the preview (not served when nil).
	Rollouts *rollout.Service
	// Ready reports whether the server can take traffic (database reachable).
	Ready func(ctx context.Context) error
	// UI serves the web UI for people (not served when nil).
	UI *UIDeps
}

// Server is the HTTP server of the control plane.
type Server struct {
	e       *echo.Echo
	flags   *flags.Service
	auth    *auth.Service
	log     *slog.Logger
	reg     *prometheus.Registry
	ready   func(ctx context.Context) error
	metrics httpMetrics
	uiDeps  *UIDeps

	publisher *snapshot.Publisher
	// drain ends when the server begins shutting down: parked long polls
	// then answer at once instead of holding the shutdown.
	drain      context.Context
	stopDrain  context.CancelFunc
	fleet      *fleet.Tracker
	telemetry  *telemetry.Service
	guardrails *guardrails.Service
	rollouts   *rollout.Service
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New returns a server with every route registered.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.Ready == nil {
		d.Ready = func(context.Context) error { return nil }
	}
	if d.Fleet == nil {
		d.Fleet = fleet.New(nil)
	}
	s := &Server{e: echo.New(), flags: d.Flags, auth: d.Auth, log: d.Logger, reg: d.Registry, ready: d.Ready,
		publisher: d.Publisher, fleet: d.Fleet, telemetry: d.Telemetry, guardrails: d.Guardrails}
	s.rollouts = d.Rollouts
	s.metrics = httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "solstice_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "solstice_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
		}, []string{"route", "method"}),
	}
	s.reg.MustRegister(s.metrics.requests, s.metrics.duration)
	s.uiDeps = d.UI
	s.drain, s.stopDrain = context.WithCancel(context.Background())
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.HTTPErrorHandler = errorHandler(s.log)
	s.e.IPExtractor = echo.ExtractIPDirect()
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.e.ServeHTTP(w, r) }

// Drain answers every parked long poll with 304 now and every later one at
// once. Register it with http.Server.RegisterOnShutdown so that a graceful
// shutdown does not wait for long polls to time out; clients poll again,
// and reach another replica or the restarted process.
func (s *Server) Drain() { s.stopDrain() }

// Echo exposes the router, for tests and for adapters registering more
// routes (the UI).
func (s *Server) Echo() *echo.Echo { return s.e }

// routes is the route table: every route of the control plane.
func (s *Server) routes() {
	e := s.e
	e.Use(middleware.Recover(), s.observe, middleware.BodyLimit("2M"), securityHeaders)

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})))

	if s.publisher != nil {
		gs := e.Group("/v1", s.serverKey)
		gs.GET("/snapshots/:env", s.getSnapshot)
		gs.HEAD("/snapshots/:env", s.getSnapshot)
	}
	if s.telemetry != nil {
		// Not in the /v1 group: its serverKey checks an :env path parameter;
		// telemetry takes the environment from the key, as OFREP does.
		e.POST("/v1/telemetry", s.postTelemetry, s.keyEnvironment("telemetry"))
	}

	o := newOFREP(s)
	of := e.Group("/ofrep/v1", o.renderErrors, o.serverKey)
	of.POST("/evaluate/flags/:key", o.evaluateFlag)
	of.POST("/evaluate/flags", o.evaluateFlags)

	api := e.Group("/api/v1", s.authenticate)
	view, edit, admin := need(auth.RoleViewer), need(auth.RoleEditor), need(auth.RoleAdmin)

	api.GET("/flags", s.listFlags, view)
	api.POST("/flags", s.createFlag, edit)
	api.GET("/flags/:key", s.getFlag, view)
	api.PATCH("/flags/:key", s.updateFlag, edit)
	api.DELETE("/flags/:key", s.deleteFlag, edit)
	api.POST("/flags/:key/promote", s.promote, edit)

	api.GET("/environments", s.listEnvironments, view)
	api.POST("/environments", s.createEnvironment, admin)
	api.GET("/environments/:env", s.getEnvironment, view)
	api.PATCH("/environments/:env", s.updateEnvironment, admin)
	api.GET("/environments/:env/fleet", s.getFleet, view)
	api.GET("/environments/:env/flags", s.listConfigs, view)
	api.GET("/environments/:env/flags/:key", s.getConfig, view)
	api.PUT("/environments/:env/flags/:key", s.putConfig, edit, s.fourEyes)
	api.GET("/environments/:env/segments", s.listSegments, view)
	api.GET("/environments/:env/segments/:key", s.getSegment, view)
	api.PUT("/environments/:env/segments/:key", s.putSegment, edit, s.fourEyes)
	api.DELETE("/environments/:env/segments/:key", s.deleteSegment, edit, s.fourEyes)
	api.GET("/environments/:env/revisions", s.listRevisions, view)
	api.GET("/environments/:env/revisions/:n", s.getRevision, view)
	api.GET("/environments/:env/revisions/:n/diff", s.diffRevision, view)
	api.POST("/environments/:env/revisions/:n/revert", s.revert, edit, s.fourEyes)
	api.POST("/environments/:env/evaluate", s.evaluate, view)
	api.GET("/environments/:env/export", s.export, view)
	api.POST("/environments/:env/apply", s.apply, edit, s.fourEyes)
	if s.guardrails != nil {
		api.GET("/environments/:env/guardrails", s.listGuardrails, view)
		api.GET("/environments/:env/flags/:key/guardrails", s.listGuardrails, view)
		api.GET("/environments/:env/flags/:key/guardrails/:guardrail", s.getGuardrail, view)
		api.GET("/environments/:env/flags/:key/guardrails/:guardrail/series", s.guardrailSeries, view)
		api.PUT("/environments/:env/flags/:key/guardrails/:guardrail", s.putGuardrail, edit)
		api.DELETE("/environments/:env/flags/:key/guardrails/:guardrail", s.deleteGuardrail, edit)
		api.POST("/environments/:env/flags/:key/guardrails/:guardrail/resume", s.resumeGuardrail, edit)
		api.GET("/incidents", s.listIncidents, view)
		api.GET("/incidents/:n", s.getIncident, view)
		api.POST("/incidents/:n/ack", s.ackIncident, edit)
		api.POST("/incidents/:n/resume", s.resumeIncident, edit)
	}
	if s.rollouts != nil {
		// NOTE: approving a step takes the editor role: the UI's approver
		// role does not exist in the API's tokens yet.
		r := s.rollouts
		api.GET("/environments/:env/rollouts", s.listRollouts, view)
		api.POST("/environments/:env/rollouts", s.createRollout, edit)
		api.GET("/environments/:env/rollouts/:id", s.getRollout, view)
		api.PUT("/environments/:env/rollouts/:id", s.putRollout, edit)
		api.DELETE("/environments/:env/rollouts/:id", deleteVersioned("p", r.DeletePlan), edit)
		api.GET("/environments/:env/rollouts/:id/status", s.rolloutStatus, view)
		api.GET("/environments/:env/rollouts/:id/decision", s.rolloutDecision, view)
		api.POST("/environments/:env/rollouts/:id/schedule", s.rolloutAction(s.scheduleRollout), edit)
		api.POST("/environments/:env/rollouts/:id/unschedule", s.rolloutAction(bodiless(r.Unschedule)), edit)
		api.POST("/environments/:env/rollouts/:id/start", s.rolloutAction(bodiless(r.Start)), edit)
		api.POST("/environments/:env/rollouts/:id/advance", s.rolloutAction(bodiless(r.Advance)), edit)
		api.POST("/environments/:env/rollouts/:id/approve", s.rolloutAction(s.approveRollout), edit)
		api.POST("/environments/:env/rollouts/:id/pause", s.rolloutAction(s.pauseRollout), edit)
		api.POST("/environments/:env/rollouts/:id/resume", s.rolloutAction(bodiless(r.Resume)), edit)
		api.POST("/environments/:env/rollouts/:id/abort", s.rolloutAction(s.abortRollout), edit)
		api.GET("/environments/:env/events", s.listEvents, view)
		api.POST("/environments/:env/events", s.createEvent, edit)
		api.POST("/environments/:env/events/check", s.checkEvent, view)
		api.GET("/environments/:env/events/:id", s.getEvent, view)
		api.PUT("/environments/:env/events/:id", s.putEvent, edit)
		api.DELETE("/environments/:env/events/:id", deleteVersioned("e", r.DeleteEvent), edit)
		api.POST("/environments/:env/events/:id/cancel", s.cancelEvent, edit)
		api.GET("/environments/:env/calendar", s.calendar, view)
		api.POST("/environments/:env/preview", s.preview, view)
	}

	api.GET("/audit", s.listAudit, view)
	api.GET("/tokens", s.listTokens, admin)
	api.POST("/tokens", s.createToken, admin)
	api.DELETE("/tokens/:id", s.revokeToken, admin)

	s.uiRoutes(e)
}

func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}

// observe logs each request and records its metrics by route pattern.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		req, code := c.Request(), c.Response().Status
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(route, req.Method, strconv.Itoa(code)).Inc()
		s.metrics.duration.WithLabelValues(route, req.Method).Observe(d.Seconds())
		if route != "/healthz" && route != "/readyz" && route != "/metrics" {
			level := slog.LevelInfo
			if (strings.HasPrefix(route, "/v1/") || strings.HasPrefix(route, "/ofrep/")) && code < 500 {
				level = slog.LevelDebug // game-server traffic: one request per server per poll or evaluation
			}
			s.log.LogAttrs(req.Context(), level, "http",
				slog.String("method", req.Method), slog.String("path", req.URL.Path), slog.Int("status", code),
				slog.Duration("duration", d), slog.String("remote", c.RealIP()),
				slog.String("actor", solstice.ActorFrom(req.Context()).Name))
		}
		return nil
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", "err", err)
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "detail": "database unreachable"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

type tokenKey struct{}

// authenticate checks the admin token of /api/v1 requests and puts the
// actor into the request context.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		secret, ok := bearer(c.Request())
		if !ok {
			return solstice.Errorf(solstice.KindUnauthorized, "missing credentials: send Authorization: Bearer <admin token> (create one with `solstice tokens create`)")
		}
		t, err := s.auth.Authenticate(c.Request().Context(), secret)
		if err != nil {
			return err
		}
		if t.Kind != auth.KindAdmin {
			return solstice.Errorf(solstice.KindForbidden, "a server key cannot use the admin API; use an admin token")
		}
		actor := solstice.Actor{Name: "token:" + t.Name, Kind: "token", TokenID: t.ID, Address: c.RealIP()}
		ctx := solstice.WithActor(c.Request().Context(), actor)
		ctx = context.WithValue(ctx, tokenKey{}, t)
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return "", false
	}
	return strings.TrimSpace(secret), true
}

// fourEyes refuses an editor token's change to a protected environment (the
// :env of the route): there, the UI turns the same change into a change
// request that another person approves, and the API must not be the way
// around it. Admin tokens may still write (automation, break-glass), and
// every such write is audited under the token's name. A dry run changes
// nothing and is let through.
func (s *Server) fourEyes(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if dry, _ := strconv.ParseBool(c.QueryParam("dry_run")); dry {
			return next(c)
		}
		if err := s.checkProtected(c, c.Param("env")); err != nil {
			return err
		}
		return next(c)
	}
}

// checkProtected returns KindForbidden when env is protected and the
// request's token is not an admin token. An unknown environment passes:
// the handler answers 404 for it.
func (s *Server) checkProtected(c echo.Context, env string) error {
	t, _ := c.Request().Context().Value(tokenKey{}).(auth.Token)
	if t.Role.Allows(auth.RoleAdmin) {
		return nil
	}
	e, err := s.flags.Store().GetEnvironment(c.Request().Context(), env)
	if solstice.IsKind(err, solstice.KindNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if e.Protected {
		return solstice.Errorf(solstice.KindForbidden,
			"%s is protected: a change there needs a second person's approval. Propose it in the web UI, where it becomes a change request, or use an admin token (token %s has %s)", env, t.ID, t.Role)
	}
	return nil
}

// need returns middleware requiring at least role r.
func need(r auth.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			t, _ := c.Request().Context().Value(tokenKey{}).(auth.Token)
			if !t.Role.Allows(r) {
				return solstice.Errorf(solstice.KindForbidden, "this needs the %s role; token %s has %s", r, t.ID, t.Role)
			}
			return next(c)
		}
	}
}
