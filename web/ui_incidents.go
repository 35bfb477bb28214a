package web

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
)

// The incident pages: what the guardrails did in an environment, the
// evidence behind each decision, and the two things people do about it:
// acknowledge it, and resume a tripped guardrail.

// attentionEvents are the incidents that call for a person: a trip, a
// fail-safe and a hold. Releases and resumes are records of what happened
// and are never "open".
var attentionEvents = []guardrails.Event{guardrails.EventTrip, guardrails.EventFailSafe, guardrails.EventHold}

const incidentsPerPage = 50

// featureOff renders the page of a feature this server was started
// without (no guardrail or rollout service), to users who may see the
// environment.
func (u *ui) featureOff(c echo.Context, nav, title, msg string) error {
	if _, err := u.environment(c); err != nil {
		return err
	}
	p := u.page(c, title)
	p.Nav = nav
	p.Data = map[string]any{"Status": http.StatusNotFound, "Title": title + ": not enabled", "Message": msg}
	return u.render(c, http.StatusNotFound, "error", p)
}

func (u *ui) guardrailsOff(c echo.Context) error {
	return u.featureOff(c, "incidents", "Incidents", "Guardrails are not enabled on this server, so there are no incidents: solstice serve runs them.")
}

func incidentURL(env string, n int64) string {
	return "/env/" + url.PathEscape(env) + "/incidents/" + strconv.FormatInt(n, 10)
}

// incidentOpen reports whether rec still calls for a person: a trip,
// fail-safe or hold nobody acknowledged.
func incidentOpen(rec guardrails.Record) bool {
	if rec.AckedAt != nil {
		return false
	}
	for _, e := range attentionEvents {
		if rec.Event == e {
			return true
		}
	}
	return false
}

// incidentItem is one incident in a list.
type incidentItem struct {
	guardrails.Record
	URL      string
	Open     bool
	EventTag string // the event in words
}

func newIncidentRow(rec guardrails.Record) incidentItem {
	return incidentItem{Record: rec, URL: incidentURL(rec.Guardrail.Environment, rec.Number), Open: incidentOpen(rec), EventTag: eventLabel(rec.Event, rec.Action)}
}

type incidentListData struct {
	Env   flags.Environment
	State string // open, acknowledged, all
	Flag  string
	Rows  []incidentItem
	Older string // the address of the next page, "" at the end
}

// incidentList lists an environment's incidents, newest first: the open
// ones (default), the acknowledged ones, or all; flag= keeps one flag's.
func (u *ui) incidentList(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if u.s.guardrails == nil {
		return u.guardrailsOff(c)
	}
	d := incidentListData{Env: env, State: c.QueryParam("state"), Flag: strings.TrimSpace(c.QueryParam("flag"))}
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return err
	}
	f := guardrails.IncidentFilter{Environment: env.Name, Flag: d.Flag, BeforeNumber: before}
	keep := func(guardrails.Record) bool { return true }
	switch d.State {
	case "", "open":
		d.State = "open"
		f.Unacked, f.Events = true, attentionEvents
	case "acknowledged":
		keep = func(r guardrails.Record) bool { return r.AckedAt != nil }
	case "all":
	default:
		return badRequestf(fmt.Sprintf("state must be open, acknowledged or all, got %q", d.State))
	}
	recs, next, err := u.scanIncidents(c, f, keep, incidentsPerPage)
	if err != nil {
		return err
	}
	for _, r := range recs {
		d.Rows = append(d.Rows, newIncidentRow(r))
	}
	if next > 0 {
		q := c.QueryParams()
		q.Set("before", strconv.FormatInt(next, 10))
		d.Older = "/env/" + url.PathEscape(env.Name) + "/incidents?" + q.Encode()
	}
	p := u.page(c, "Incidents in "+env.Name)
	p.Nav, p.Data = "incidents", d
	return u.render(c, http.StatusOK, "incidents", p)
}

// scanIncidents returns up to n incidents f selects that keep keeps,
// newest first, and the number to page on from (0 at the end). The store
// filters everything but "acknowledged"; for that one it reads on, a
// bounded number of batches per page.
func (u *ui) scanIncidents(c echo.Context, f guardrails.IncidentFilter, keep func(guardrails.Record) bool, n int) ([]guardrails.Record, int64, error) {
	const batch, maxBatches = 200, 20
	var out []guardrails.Record
	f.Limit = batch
	for range maxBatches {
		recs, err := u.s.guardrails.Incidents(c.Request().Context(), f)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range recs {
			if !keep(r) {
				continue
			}
			out = append(out, r)
			if len(out) == n {
				return out, r.Number, nil
			}
		}
		if len(recs) < batch {
			return out, 0, nil
		}
		f.BeforeNumber = recs[len(recs)-1].Number
	}
	return out, f.BeforeNumber, nil
}

// ---- one incident ----

// armView is one arm of the evidence, formatted.
type armView struct {
	Name      string // the variant, or "treatment"/"control"
	Exposures int64
	N, X      int64
	Rate      string
}

// evidenceView is a verdict's evidence as the incident page shows it.
type evidenceView struct {
	Status     string
	Reason     string
	Hold       string
	Metric     string
	Comparison string // the test in words
	NLabel     string // what the arms' trials and events count
	XLabel     string
	Treatment  armView
	Control    *armView // nil for a ceiling
	Effect     string   // harm beyond the allowed margin, in percentage points
	Lower      string
	Upper      string
	Confidence string // of the bounds: 1 − α
	PValue     string
	LogE       string
	Threshold  string
	Alpha      string
	Tau        string
	Design     string
	SRM        string // the sample-ratio check in words
	Time       time.Time
	Watermark  time.Time
}

// newEvidenceView formats v's evidence with the words and numbers of the
// guardrail pages (ui_guardrails.go); def, when known, names the arms and
// the metric's counts.
func newEvidenceView(v guardrails.Verdict, def *guardrails.Definition) *evidenceView {
	ev := v.Evidence
	e := &evidenceView{
		Status: string(v.Status), Reason: v.Reason, Hold: string(v.Hold), Metric: ev.Metric,
		Effect: pp(ev.Effect), Lower: pp(ev.Lower), Upper: pp(ev.Upper),
		PValue: pValue(ev.PValue), LogE: decimal(ev.LogE), Threshold: decimal(ev.Threshold),
		Alpha: strconv.FormatFloat(ev.Alpha, 'g', 4, 64), Design: decimal(ev.DesignEffect),
		Confidence: pct(1 - ev.Alpha), Time: v.Time, Watermark: v.Watermark,
	}
	if ev.Tau > 0 {
		e.Tau = ppAbs(ev.Tau)
	}
	treatment, control, metric := "treatment", "control", ev.Metric
	rule := guardrails.Rule{Metric: guardrails.RejectRate(), Comparison: ev.Comparison}
	if def != nil {
		rule = def.Rule
		treatment, metric = def.Treatment, metricLabel(def.Metric)
		if def.Control != "" {
			control = def.Control
		}
	}
	e.NLabel, e.XLabel = armCounts(rule.Metric)
	e.Comparison = "the " + metric + " of " + treatment + " is held to " + comparisonLabel(rule)
	arm := func(name string, a guardrails.ArmSample) armView {
		return armView{Name: name, Exposures: a.Exposures, N: a.N, X: a.X, Rate: pct(a.Rate)}
	}
	e.Treatment = arm(treatment, ev.Treatment)
	if ev.Comparison.Kind != guardrails.KindAbsoluteCeiling {
		c := arm(control, ev.Control)
		e.Control = &c
	}
	switch {
	case !ev.SRMChecked:
		e.SRM = "not checked (no expected split share, no exposures, or no control)"
	case ev.SRMLogE >= ev.SRMThreshold:
		e.SRM = fmt.Sprintf("mismatch: log evidence %s reached its threshold %s", decimal(ev.SRMLogE), decimal(ev.SRMThreshold))
	default:
		e.SRM = fmt.Sprintf("consistent with the split (log evidence %s, threshold %s)", decimal(ev.SRMLogE), decimal(ev.SRMThreshold))
	}
	return e
}

// decimal formats a log evidence or a design effect: two places.
func decimal(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "∞"
	case math.IsInf(x, -1):
		return "−∞"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

type incidentData struct {
	Env      flags.Environment
	Record   guardrails.Record
	Row      incidentItem
	Evidence *evidenceView
	Chart    string // the guardrail's page
	Rollback string // the address of the rollback revision, if any
	// Guardrail is the guardrail's definition and state now (nil when it
	// was deleted since).
	Guardrail *guardrails.Detail
	// Resumable says whether the guardrail is tripped and may be resumed
	// now; Latest whether this incident is the one that tripped it.
	Resumable bool
	Latest    bool
	Plans     []rollout.Plan // the rollout plans of the flag
	Error     string         // why an action was refused
}

// incidentState loads incident :n of the path's environment with its
// guardrail as it is now.
func (u *ui) incidentState(c echo.Context) (*incidentData, error) {
	env, err := u.environment(c)
	if err != nil {
		return nil, err
	}
	n, err := pathInt(c, "n")
	if err != nil {
		return nil, err
	}
	ctx := c.Request().Context()
	rec, err := u.s.guardrails.Incident(ctx, n)
	if err != nil {
		return nil, err
	}
	if rec.Guardrail.Environment != env.Name {
		return nil, solstice.Errorf(solstice.KindNotFound, "incident %d is not in %s: it is in %s", n, env.Name, rec.Guardrail.Environment)
	}
	d := &incidentData{Env: env, Record: rec, Row: newIncidentRow(rec), Chart: guardrailURL(rec.Guardrail.Environment, rec.Guardrail.Flag, rec.Guardrail.Key)}
	if rec.Revision > 0 {
		d.Rollback = revisionURL(env.Name, rec.Revision)
	}
	det, err := u.s.guardrails.Status(ctx, rec.Guardrail)
	switch {
	case err == nil:
		d.Guardrail = &det
		st := det.State
		d.Resumable = st.Phase == guardrails.PhaseTripped && st.Pending == nil
		d.Latest = st.Last != nil && st.Last.ID == rec.ID
	case !solstice.IsKind(err, solstice.KindNotFound):
		return nil, err
	}
	if rec.Verdict != nil {
		var def *guardrails.Definition
		if d.Guardrail != nil {
			def = &d.Guardrail.Definition
		}
		d.Evidence = newEvidenceView(*rec.Verdict, def)
	}
	if u.s.rollouts != nil {
		if d.Plans, err = u.s.rollouts.ListPlans(ctx, rollout.PlanFilter{Environment: env.Name, Flag: rec.Guardrail.Flag}); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (u *ui) incidentPage(c echo.Context) error {
	if u.s.guardrails == nil {
		return u.guardrailsOff(c)
	}
	d, err := u.incidentState(c)
	if err != nil {
		return err
	}
	return u.renderIncident(c, http.StatusOK, d)
}

func (u *ui) renderIncident(c echo.Context, status int, d *incidentData) error {
	p := u.page(c, fmt.Sprintf("Incident #%d", d.Record.Number))
	p.Nav, p.Data = "incidents", d
	return u.render(c, status, "incident", p)
}

// ackIncident records that the user has seen the incident.
func (u *ui) ackIncident(c echo.Context) error {
	if u.s.guardrails == nil {
		return u.guardrailsOff(c)
	}
	d, err := u.incidentState(c)
	if err != nil {
		return err
	}
	if err := require(c, d.Env.Name, accounts.RoleEditor); err != nil {
		return err
	}
	n := d.Record.Number
	if d.Record.AckedAt != nil {
		d.Error = alreadyAcked(d.Record)
		return u.renderIncident(c, http.StatusConflict, d)
	}
	rec, err := u.s.guardrails.Ack(c.Request().Context(), n)
	if err != nil {
		return err
	}
	// Ack changes nothing when someone else acknowledged it in the
	// meantime: say so rather than claim it.
	if me := solstice.ActorFrom(c.Request().Context()).Name; rec.AckedBy != nil && rec.AckedBy.Name != me {
		d.Record, d.Row = rec, newIncidentRow(rec)
		d.Error = alreadyAcked(rec)
		return u.renderIncident(c, http.StatusConflict, d)
	}
	return u.redirectFlash(c, incidentURL(d.Env.Name, n), fmt.Sprintf("Acknowledged incident #%d.", n), "")
}

func alreadyAcked(rec guardrails.Record) string {
	who := "someone"
	if rec.AckedBy != nil {
		who = rec.AckedBy.Name
	}
	when := ""
	if rec.AckedAt != nil {
		when = " at " + rec.AckedAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	return fmt.Sprintf("Incident #%d was already acknowledged by %s%s: nothing changed.", rec.Number, who, when)
}

// resumeIncident resumes the tripped guardrail of an incident: a new test
// starts on data from now on. It also acknowledges the incident, if
// nobody had: resuming is a person's answer to it.
func (u *ui) resumeIncident(c echo.Context) error {
	if u.s.guardrails == nil {
		return u.guardrailsOff(c)
	}
	d, err := u.incidentState(c)
	if err != nil {
		return err
	}
	if err := require(c, d.Env.Name, accounts.RoleEditor); err != nil {
		return err
	}
	ctx := c.Request().Context()
	n, g := d.Record.Number, d.Record.Guardrail
	st, err := u.s.guardrails.ResumeIncident(ctx, n)
	if solstice.IsKind(err, solstice.KindConflict) || solstice.IsKind(err, solstice.KindNotFound) {
		d.Error = "Not resumed: " + solstice.ErrorMessage(err)
		return u.renderIncident(c, http.StatusConflict, d)
	}
	if err != nil {
		return err
	}
	if d.Record.AckedAt == nil {
		if _, err := u.s.guardrails.Ack(ctx, n); err != nil {
			return err
		}
	}
	msg := fmt.Sprintf("Resumed guardrail %s of %s: it is %s in test %d, on data from now on.", g.Key, g.Flag, st.Phase, st.Test)
	for _, p := range d.Plans {
		if p.Status == rollout.StatusPaused {
			msg += fmt.Sprintf(" Rollout %s is still paused: resume it on its page.", p.ID)
		}
	}
	return u.redirectFlash(c, incidentURL(d.Env.Name, n), msg, guardrailURL(g.Environment, g.Flag, g.Key))
}

// openIncidents returns the open incidents of env, newest first, at most
// limit (none when guardrails are not enabled).
func (u *ui) openIncidents(ctx context.Context, env string, limit int) ([]incidentItem, error) {
	if u.s.guardrails == nil {
		return nil, nil
	}
	recs, err := u.s.guardrails.Incidents(ctx, guardrails.IncidentFilter{Environment: env, Unacked: true, Events: attentionEvents, Limit: limit})
	if err != nil {
		return nil, err
	}
	rows := make([]incidentItem, len(recs))
	for i, r := range recs {
		rows[i] = newIncidentRow(r)
	}
	return rows, nil
}
