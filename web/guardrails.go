package web

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/guardrails"
)

// guardrailRef is the guardrail the URL names.
func guardrailRef(c echo.Context) guardrails.Ref {
	return guardrails.Ref{Environment: c.Param("env"), Flag: c.Param("key"), Key: c.Param("guardrail")}
}

func (s *Server) listGuardrails(c echo.Context) error {
	ds, err := s.guardrails.List(c.Request().Context(), c.Param("env"), c.Param("key"))
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []guardrails.Definition{}
	}
	return c.JSON(http.StatusOK, map[string]any{"guardrails": ds})
}

func (s *Server) getGuardrail(c echo.Context) error {
	d, err := s.guardrails.Status(c.Request().Context(), guardrailRef(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("g", d.Definition.Version))
	return c.JSON(http.StatusOK, d)
}

// guardrailSeries answers a guardrail's current test over time, for
// charts: ?points= from 1 to guardrails.MaxSeriesPoints (default
// guardrails.DefaultSeriesPoints).
func (s *Server) guardrailSeries(c echo.Context) error {
	points, err := queryInt(c, "points", guardrails.DefaultSeriesPoints)
	if err != nil {
		return err
	}
	if points < 1 || points > guardrails.MaxSeriesPoints {
		return badRequestf(fmt.Sprintf("query parameter points must be from 1 to %d, got %d", guardrails.MaxSeriesPoints, points))
	}
	sr, err := s.guardrails.Series(c.Request().Context(), guardrailRef(c), guardrails.SeriesOptions{Points: int(points)})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sr)
}

// putGuardrail creates a guardrail (no If-Match) or replaces it (If-Match
// with its ETag). The body is a rule; its environment, flag and key may be
// left out and must match the URL when given.
func (s *Server) putGuardrail(c echo.Context) error {
	ctx := c.Request().Context()
	ref := guardrailRef(c)
	expect, err := optionalIfMatch(c, "g", 0)
	if err != nil {
		return err
	}
	if c.Request().Header.Get("If-Match") == "" {
		if _, err := s.guardrails.Get(ctx, ref); err == nil {
			return solstice.Errorf(solstice.KindPreconditionNeeded, "guardrail %q exists: send If-Match with its ETag to replace it", ref.Key)
		}
	}
	var r guardrails.Rule
	if err := decodeJSON(c, &r); err != nil {
		return err
	}
	var fields []solstice.FieldError
	for _, f := range []struct{ name, got, want string }{
		{"environment", r.Environment, ref.Environment}, {"flag", r.Flag, ref.Flag}, {"key", r.Key, ref.Key},
	} {
		if f.got != "" && f.got != f.want {
			fields = append(fields, solstice.FieldError{Pointer: "/" + f.name, Message: fmt.Sprintf("is %q but the URL names %q", f.got, f.want)})
		}
	}
	if len(fields) > 0 {
		return solstice.Invalid("the guardrail does not match the URL", fields...)
	}
	r.Ref = ref
	d, err := s.guardrails.Put(ctx, r, expect)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag("g", d.Version))
	status := http.StatusOK
	if expect == 0 {
		status = http.StatusCreated
	}
	return c.JSON(status, d)
}

func (s *Server) deleteGuardrail(c echo.Context) error {
	expect, err := ifMatch(c, "g")
	if err != nil {
		return err
	}
	if err := s.guardrails.Delete(c.Request().Context(), guardrailRef(c), expect); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) resumeGuardrail(c echo.Context) error {
	st, err := s.guardrails.Resume(c.Request().Context(), guardrailRef(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// listIncidents filters by environment, flag, guardrail (with flag),
// event (comma-separated or repeated), unacked=true, and pages with before
// and limit.
func (s *Server) listIncidents(c echo.Context) error {
	f := guardrails.IncidentFilter{
		Environment: c.QueryParam("environment"), Flag: c.QueryParam("flag"), Guardrail: c.QueryParam("guardrail"),
	}
	if f.Guardrail != "" && f.Flag == "" {
		return badRequestf("query parameter guardrail needs flag: guardrail keys are per flag")
	}
	for _, v := range c.QueryParams()["event"] {
		for _, e := range strings.Split(v, ",") {
			ev := guardrails.Event(strings.TrimSpace(e))
			switch ev {
			case guardrails.EventTrip, guardrails.EventFailSafe, guardrails.EventHold, guardrails.EventRelease, guardrails.EventResume:
				f.Events = append(f.Events, ev)
			default:
				return badRequestf(fmt.Sprintf("query parameter event must be trip, fail_safe, hold, release or resume, got %q", e))
			}
		}
	}
	switch v := c.QueryParam("unacked"); v {
	case "", "false":
	case "true":
		f.Unacked = true
	default:
		return badRequestf(fmt.Sprintf("query parameter unacked must be true or false, got %q", v))
	}
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 50)
	if err != nil {
		return err
	}
	f.BeforeNumber, f.Limit = before, int(min(limit, 500))
	recs, err := s.guardrails.Incidents(c.Request().Context(), f)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []guardrails.Record{}
	}
	return c.JSON(http.StatusOK, map[string]any{"incidents": recs})
}

func (s *Server) getIncident(c echo.Context) error {
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	rec, err := s.guardrails.Incident(c.Request().Context(), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rec)
}

func (s *Server) ackIncident(c echo.Context) error {
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	rec, err := s.guardrails.Ack(c.Request().Context(), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rec)
}

func (s *Server) resumeIncident(c echo.Context) error {
	n, err := pathInt(c, "n")
	if err != nil {
		return err
	}
	st, err := s.guardrails.ResumeIncident(c.Request().Context(), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}
