package web

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
)

// The rollout API: plans (ETag "p<version>"), seasonal events (ETag
// "e<version>"), the calendar and the time-travel preview. Every handler
// binds the request, calls one method of rollout.Service and renders the
// result; transitions the plan's state table refuses come back as 409 with
// the reason.

// Default calendar window when from or to is left out: the week before
// now and the four weeks after it.
const (
	calendarBefore = 7 * 24 * time.Hour
	calendarSpan   = 35 * 24 * time.Hour
)

// urlMismatch returns a field error for each body field given with a value
// other than the URL's.
func urlMismatch(what string, pairs ...[3]string) error {
	var fields []solstice.FieldError
	for _, p := range pairs {
		if p[1] != "" && p[1] != p[2] {
			fields = append(fields, solstice.FieldError{Pointer: "/" + p[0], Message: fmt.Sprintf("is %q but the URL names %q", p[1], p[2])})
		}
	}
	if len(fields) > 0 {
		return solstice.Invalid("the "+what+" does not match the URL", fields...)
	}
	return nil
}

// ---- plans ----

func (s *Server) renderPlan(c echo.Context, status int, p rollout.Plan) error {
	c.Response().Header().Set("ETag", etag("p", p.Version))
	return c.JSON(status, p)
}

// listRollouts lists an environment's plans; flag= keeps one flag's,
// active=true those scheduled, running or paused.
func (s *Server) listRollouts(c echo.Context) error {
	active, err := queryBool(c, "active")
	if err != nil {
		return err
	}
	ps, err := s.rollouts.ListPlans(c.Request().Context(), rollout.PlanFilter{Environment: c.Param("env"), Flag: c.QueryParam("flag"), Active: active})
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []rollout.Plan{}
	}
	return c.JSON(http.StatusOK, map[string]any{"rollouts": ps})
}

// createRollout creates a draft plan; the body's id is required and its
// environment, when given, must be the URL's.
func (s *Server) createRollout(c echo.Context) error {
	var p rollout.Plan
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	if err := urlMismatch("rollout plan", [3]string{"environment", p.Environment, c.Param("env")}); err != nil {
		return err
	}
	p.Environment = c.Param("env")
	p, err := s.rollouts.PutPlan(c.Request().Context(), p, 0)
	if err != nil {
		return err
	}
	return s.renderPlan(c, http.StatusCreated, p)
}

func (s *Server) getRollout(c echo.Context) error {
	p, err := s.rollouts.GetPlan(c.Request().Context(), c.Param("env"), c.Param("id"))
	if err != nil {
		return err
	}
	return s.renderPlan(c, http.StatusOK, p)
}

// putRollout replaces the definition of a draft or scheduled plan
// (If-Match required; create with POST). Runtime fields in the body
// (status, step, history...) are ignored: only transitions change them.
func (s *Server) putRollout(c echo.Context) error {
	expect, err := ifMatch(c, "p")
	if err != nil {
		return err
	}
	var p rollout.Plan
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	if err := urlMismatch("rollout plan", [3]string{"environment", p.Environment, c.Param("env")}, [3]string{"id", p.ID, c.Param("id")}); err != nil {
		return err
	}
	p.Environment, p.ID = c.Param("env"), c.Param("id")
	p, err = s.rollouts.PutPlan(c.Request().Context(), p, expect)
	if err != nil {
		return err
	}
	return s.renderPlan(c, http.StatusOK, p)
}

// deleteVersioned returns the handler of the DELETE of a plan (ETag prefix
// "p") or an event ("e"): If-Match required, del called with the URL's
// environment and id, 204 No Content.
func deleteVersioned(prefix string, del func(ctx context.Context, env, id string, expect int64) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		expect, err := ifMatch(c, prefix)
		if err != nil {
			return err
		}
		if err := del(c.Request().Context(), c.Param("env"), c.Param("id"), expect); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// rolloutStatus shows where a plan's ramp stands: the decision the
// scheduler would take now, gate by gate.
func (s *Server) rolloutStatus(c echo.Context) error {
	st, err := s.rollouts.Status(c.Request().Context(), c.Param("env"), c.Param("id"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("p", st.Plan.Version))
	return c.JSON(http.StatusOK, st)
}

// markdownType is the media type of an experiment's decision memo.
const markdownType = "text/markdown"

// rolloutDecision serves an experiment's decision, written when its plan
// ended: as JSON, or as the Markdown decision memo when the request's
// Accept header asks for text/markdown (and not for application/json with
// a higher q). Until the plan ends, or for a plan that is not an
// experiment, it is a 404 saying which.
func (s *Server) rolloutDecision(c echo.Context) error {
	d, err := s.rollouts.Decision(c.Request().Context(), c.Param("env"), c.Param("id"))
	if err != nil {
		return err
	}
	c.Response().Header().Add("Vary", "Accept")
	if prefersMarkdown(c.Request().Header.Values("Accept")) {
		return c.Blob(http.StatusOK, markdownType+"; charset=utf-8", []byte(rollout.Memo(d)))
	}
	return c.JSON(http.StatusOK, d)
}

// prefersMarkdown reports whether Accept headers name text/markdown with a
// q value above zero and at least that of application/json.
func prefersMarkdown(accept []string) bool {
	qMarkdown, qJSON := 0.0, 0.0
	for _, h := range accept {
		for _, part := range strings.Split(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
			switch mt {
			case markdownType:
				qMarkdown = max(qMarkdown, q)
			case echo.MIMEApplicationJSON:
				qJSON = max(qJSON, q)
			}
		}
	}
	return qMarkdown > 0 && qMarkdown >= qJSON
}

// scheduleRequest is the body of POST .../rollouts/:id/schedule.
type scheduleRequest struct {
	StartAt *time.Time `json:"start_at"`
}

// approveRequest is the body of POST .../rollouts/:id/approve: the
// 0-based index of the step approved, as the plan's "step" counts, so that
// an approval meant for one step never passes another.
type approveRequest struct {
	Step *int `json:"step"`
}

// reasonRequest is the optional body of pause and abort.
type reasonRequest struct {
	Reason string `json:"reason"`
}

// rolloutAction returns the handler of a plan's transition: If-Match
// required, the body read by act, the plan rendered with its new ETag.
func (s *Server) rolloutAction(act func(c echo.Context, env, id string, expect int64) (rollout.Plan, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		expect, err := ifMatch(c, "p")
		if err != nil {
			return err
		}
		p, err := act(c, c.Param("env"), c.Param("id"), expect)
		if err != nil {
			return err
		}
		return s.renderPlan(c, http.StatusOK, p)
	}
}

func (s *Server) scheduleRollout(c echo.Context, env, id string, expect int64) (rollout.Plan, error) {
	var in scheduleRequest
	if err := decodeJSON(c, &in); err != nil {
		return rollout.Plan{}, err
	}
	if in.StartAt == nil {
		return rollout.Plan{}, solstice.Invalid("invalid schedule", solstice.FieldError{Pointer: "/start_at", Message: "required: an RFC 3339 time in the future"})
	}
	return s.rollouts.Schedule(c.Request().Context(), env, id, *in.StartAt, expect)
}

func (s *Server) approveRollout(c echo.Context, env, id string, expect int64) (rollout.Plan, error) {
	var in approveRequest
	if err := decodeJSON(c, &in); err != nil {
		return rollout.Plan{}, err
	}
	if in.Step == nil {
		return rollout.Plan{}, solstice.Invalid("invalid approval", solstice.FieldError{Pointer: "/step", Message: "required: the 0-based index of the step approved (the plan's step)"})
	}
	return s.rollouts.Approve(c.Request().Context(), env, id, *in.Step, expect)
}

func (s *Server) pauseRollout(c echo.Context, env, id string, expect int64) (rollout.Plan, error) {
	var in reasonRequest
	if err := decodeOptionalJSON(c, &in); err != nil {
		return rollout.Plan{}, err
	}
	return s.rollouts.Pause(c.Request().Context(), env, id, in.Reason, expect)
}

func (s *Server) abortRollout(c echo.Context, env, id string, expect int64) (rollout.Plan, error) {
	var in reasonRequest
	if err := decodeOptionalJSON(c, &in); err != nil {
		return rollout.Plan{}, err
	}
	return s.rollouts.Abort(c.Request().Context(), env, id, in.Reason, expect)
}

// bodiless adapts a transition that takes no input (start, advance,
// unschedule); an empty body or {} is accepted.
func bodiless(f func(ctx context.Context, env, id string, expect int64) (rollout.Plan, error)) func(c echo.Context, env, id string, expect int64) (rollout.Plan, error) {
	return func(c echo.Context, env, id string, expect int64) (rollout.Plan, error) {
		var in struct{}
		if err := decodeOptionalJSON(c, &in); err != nil {
			return rollout.Plan{}, err
		}
		return f(c.Request().Context(), env, id, expect)
	}
}

// ---- events ----

func (s *Server) renderEvent(c echo.Context, status int, ev rollout.Event) error {
	c.Response().Header().Set("ETag", etag("e", ev.Version))
	return c.JSON(status, ev)
}

// listEvents lists an environment's events; open=true keeps those whose
// end has not been applied, from= and to= (RFC 3339) those whose window
// overlaps [from, to).
func (s *Server) listEvents(c echo.Context) error {
	open, err := queryBool(c, "open")
	if err != nil {
		return err
	}
	from, err := queryTime(c, "from")
	if err != nil {
		return err
	}
	to, err := queryTime(c, "to")
	if err != nil {
		return err
	}
	evs, err := s.rollouts.ListEvents(c.Request().Context(), rollout.EventFilter{Environment: c.Param("env"), Open: open, From: from, To: to})
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []rollout.Event{}
	}
	return c.JSON(http.StatusOK, map[string]any{"events": evs})
}

// bindEvent reads an event from the body; its environment and key, when
// given, must be the URL's (key only when the URL names one).
func bindEvent(c echo.Context) (rollout.Event, error) {
	var ev rollout.Event
	if err := decodeJSON(c, &ev); err != nil {
		return ev, err
	}
	pairs := [][3]string{{"environment", ev.Environment, c.Param("env")}}
	if id := c.Param("id"); id != "" {
		pairs = append(pairs, [3]string{"key", ev.Key, id})
		ev.Key = id
	}
	if err := urlMismatch("event", pairs...); err != nil {
		return ev, err
	}
	ev.Environment = c.Param("env")
	return ev, nil
}

// createEvent creates an event; conflicts with other events and plans are
// refused with 409 and a field error each (see checkEvent).
func (s *Server) createEvent(c echo.Context) error {
	ev, err := bindEvent(c)
	if err != nil {
		return err
	}
	ev, err = s.rollouts.PutEvent(c.Request().Context(), ev, 0)
	if err != nil {
		return err
	}
	return s.renderEvent(c, http.StatusCreated, ev)
}

// checkEvent is a dry run of saving an event: it validates it and lists
// its conflicts without saving. If-Match (optional) checks an edit of an
// existing event instead of a new one.
func (s *Server) checkEvent(c echo.Context) error {
	expect, err := optionalIfMatch(c, "e", 0)
	if err != nil {
		return err
	}
	ev, err := bindEvent(c)
	if err != nil {
		return err
	}
	cs, err := s.rollouts.CheckEvent(c.Request().Context(), ev, expect)
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []rollout.Conflict{}
	}
	return c.JSON(http.StatusOK, map[string]any{"conflicts": cs})
}

// getEvent returns an event with its state and the records of its
// changes.
func (s *Server) getEvent(c echo.Context) error {
	d, err := s.rollouts.Detail(c.Request().Context(), c.Param("env"), c.Param("id"))
	if err != nil {
		return err
	}
	if d.Records == nil {
		d.Records = []rollout.Record{}
	}
	c.Response().Header().Set("ETag", etag("e", d.Event.Version))
	return c.JSON(http.StatusOK, d)
}

// putEvent replaces an event (If-Match required; create with POST).
func (s *Server) putEvent(c echo.Context) error {
	expect, err := ifMatch(c, "e")
	if err != nil {
		return err
	}
	ev, err := bindEvent(c)
	if err != nil {
		return err
	}
	ev, err = s.rollouts.PutEvent(c.Request().Context(), ev, expect)
	if err != nil {
		return err
	}
	return s.renderEvent(c, http.StatusOK, ev)
}

func (s *Server) cancelEvent(c echo.Context) error {
	expect, err := ifMatch(c, "e")
	if err != nil {
		return err
	}
	ev, err := s.rollouts.CancelEvent(c.Request().Context(), c.Param("env"), c.Param("id"), expect)
	if err != nil {
		return err
	}
	return s.renderEvent(c, http.StatusOK, ev)
}

// ---- calendar and preview ----

// calendar lists the events, phases and scheduled changes of [from, to)
// (RFC 3339). Without from, the window starts a week before now; without
// to, it lasts five weeks. A range that is empty, reversed or longer than
// rollout.MaxCalendarSpan is a 400, like any other bad query parameter.
func (s *Server) calendar(c echo.Context) error {
	ctx := c.Request().Context()
	env := c.Param("env")
	from, err := queryTime(c, "from")
	if err != nil {
		return err
	}
	to, err := queryTime(c, "to")
	if err != nil {
		return err
	}
	switch {
	case from.IsZero() && to.IsZero():
		// NOTE: "now" is the rollout service's clock, which a test (or a
		// replay) may set, not the handler's wall clock.
		tl, err := s.rollouts.Timeline(ctx, env)
		if err != nil {
			return err
		}
		from = tl.Now.Add(-calendarBefore)
		to = from.Add(calendarSpan)
	case from.IsZero():
		from = to.Add(-calendarSpan)
	case to.IsZero():
		to = from.Add(calendarSpan)
	}
	switch {
	case !to.After(from):
		return badRequestf(fmt.Sprintf("query parameter to (%s) must be after from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339)))
	case to.Sub(from) > rollout.MaxCalendarSpan:
		return badRequestf(fmt.Sprintf("the calendar range may span at most %s; from %s to %s spans %s", rollout.MaxCalendarSpan, from.Format(time.RFC3339), to.Format(time.RFC3339), to.Sub(from)))
	}
	cal, err := s.rollouts.Calendar(ctx, env, from, to)
	if err != nil {
		return err
	}
	if cal.Events == nil {
		cal.Events = []rollout.Window{}
	}
	if cal.Entries == nil {
		cal.Entries = []rollout.Entry{}
	}
	return c.JSON(http.StatusOK, cal)
}

// queryTime parses an optional RFC 3339 query parameter (zero when
// absent).
func queryTime(c echo.Context, name string) (time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badRequestf(fmt.Sprintf("query parameter %s must be an RFC 3339 time such as 2026-12-18T10:00:00Z, got %q", name, v))
	}
	return t.UTC(), nil
}

// previewRequest is the body of POST .../preview. At is a string so that
// a malformed time is a field error naming /at, not a JSON syntax error.
type previewRequest struct {
	At      string        `json:"at"`
	Flag    string        `json:"flag"`
	Context flags.Context `json:"context"`
}

// previewResponse is an evaluation as /evaluate answers it, at a future
// time; its revision is the current one the projection starts from.
type previewResponse struct {
	At time.Time `json:"at"`
	evaluateResponse
}

// preview evaluates a flag for a context on the configuration that every
// schedule and rollout step will have put in force at a future time: what
// a player gets on day 3 of an event. The projection assumes every gate
// passes as soon as the minimum durations allow and no guardrail trips.
func (s *Server) preview(c echo.Context) error {
	var in previewRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	var fields []solstice.FieldError
	at, err := time.Parse(time.RFC3339, in.At)
	if err != nil {
		fields = append(fields, solstice.FieldError{Pointer: "/at", Message: fmt.Sprintf("must be an RFC 3339 time such as 2026-12-20T12:00:00+01:00, got %q", in.At)})
	}
	if in.Flag == "" {
		fields = append(fields, solstice.FieldError{Pointer: "/flag", Message: "required"})
	}
	if len(fields) > 0 {
		return solstice.Invalid("invalid preview", fields...)
	}
	// NOTE: PreviewSet, Compile and Evaluate are exactly what
	// Service.Preview does; calling them here also gives the revision the
	// projection starts from, which the response reports.
	set, err := s.rollouts.PreviewSet(c.Request().Context(), c.Param("env"), at)
	if err != nil {
		return err
	}
	compiled, err := flags.Compile(set)
	if err != nil {
		return err
	}
	r := flags.Evaluate(compiled, in.Flag, in.Context)
	return c.JSON(http.StatusOK, previewResponse{At: at.UTC(), evaluateResponse: toEvaluateResponse(r, set.Revision)})
}
