package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
)

// The rollout pages: staged plans with where each ramp stands and the
// transitions people make (start, advance, pause, resume, abort, approve),
// and the seasonal events on a calendar with their phases and scheduled
// changes. Every transition goes through rollout.Service, which refuses
// anything its state table does not allow and says why; the pages show
// that reason and change nothing.

func (u *ui) rolloutsOff(c echo.Context, nav string) error {
	return u.featureOff(c, nav, map[string]string{"rollouts": "Rollouts", "calendar": "Calendar"}[nav],
		"Rollout plans and seasonal events are not enabled on this server: solstice serve runs them.")
}

func rolloutURL(env, id string) string {
	return "/env/" + url.PathEscape(env) + "/rollouts/" + url.PathEscape(id)
}

func eventURL(env, key string) string {
	return "/env/" + url.PathEscape(env) + "/events/" + url.PathEscape(key)
}

// weightText formats a weight in basis points as a percentage: 2500 → "25%".
func weightText(w int) string {
	return strconv.FormatFloat(float64(w)/100, 'f', -1, 64) + "%"
}

// utcText formats an instant for people, in UTC.
func utcText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("Mon 2 Jan 2006 15:04 UTC")
}

// untilText says how far off t is from now: "in 5h 30m", "3m ago".
func untilText(now, t time.Time) string {
	d := t.Sub(now).Round(time.Minute)
	s := ""
	a := d.Abs()
	switch {
	case a < time.Minute:
		return "now"
	case a < time.Hour:
		s = fmt.Sprintf("%dm", int(a/time.Minute))
	case a < 48*time.Hour:
		s = fmt.Sprintf("%dh %dm", int(a/time.Hour), int(a%time.Hour/time.Minute))
	default:
		s = fmt.Sprintf("%dd %dh", int(a/(24*time.Hour)), int(a%(24*time.Hour)/time.Hour))
	}
	if d < 0 {
		return s + " ago"
	}
	return "in " + s
}

// durationText formats a duration without its zero tail: "24h", "1h30m",
// "90s".
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ---- plan list ----

// planRow is one plan as a list shows it.
type planRow struct {
	Plan    rollout.Plan
	URL     string
	Step    int    // 1-based; 0 before the plan started
	Weight  string // the current step's treatment share
	Segment string
	// Next says when the next step is due or what it waits for.
	Next    string
	Waiting []rollout.Gate // the gates that hold it
}

// newPlanRow describes p; st (when not nil) is its status now.
func newPlanRow(p rollout.Plan, st *rollout.PlanStatus) planRow {
	r := planRow{Plan: p, URL: rolloutURL(p.Environment, p.ID)}
	if s, ok := p.Current(); ok {
		r.Step, r.Weight, r.Segment = p.Step+1, weightText(s.Weight), s.Segment
	}
	switch p.Status {
	case rollout.StatusDraft:
		r.Next = "not started"
	case rollout.StatusScheduled:
		if p.StartAt != nil {
			r.Next = "starts " + utcText(*p.StartAt)
		}
	case rollout.StatusPaused:
		r.Next = "paused: " + p.Reason
	case rollout.StatusRunning:
		r.Next = "running"
		if st == nil {
			break
		}
		d := st.Decision
		for _, g := range d.Gates {
			if !g.Passed && g.Name != rollout.GateDuration {
				r.Waiting = append(r.Waiting, g)
			}
		}
		what := fmt.Sprintf("step %d (%s)", p.Step+2, nextWeight(p))
		if p.Step+1 >= len(p.Steps) {
			what = "completion"
		}
		switch {
		case p.Pending != nil:
			r.Next = "applying its change"
		case d.Action == rollout.ActAdvance || d.Action == rollout.ActComplete:
			r.Next = what + " at the scheduler's next tick"
		case d.Action == rollout.ActRollBack || d.Action == rollout.ActPause:
			r.Next = string(d.Action) + " at the scheduler's next tick: " + d.Reason
		case !d.Due.IsZero() && d.Due.After(st.Input.Now):
			r.Next = what + " due " + utcText(d.Due) + " (" + untilText(st.Input.Now, d.Due) + ")"
		default:
			r.Next = what + " is due"
		}
		if len(r.Waiting) > 0 {
			r.Next += ", once it passes the gates below"
		}
	default:
		if n := len(p.History); n > 0 {
			r.Next = string(p.Status) + " " + utcText(p.History[n-1].Time)
		}
	}
	return r
}

func nextWeight(p rollout.Plan) string {
	if p.Step+1 < len(p.Steps) {
		return weightText(p.Steps[p.Step+1].Weight)
	}
	return ""
}

type rolloutListData struct {
	Env    flags.Environment
	Active []planRow
	Other  []planRow // drafts and finished plans
}

func (u *ui) rolloutList(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if u.s.rollouts == nil {
		return u.rolloutsOff(c, "rollouts")
	}
	ctx := c.Request().Context()
	plans, err := u.s.rollouts.ListPlans(ctx, rollout.PlanFilter{Environment: env.Name})
	if err != nil {
		return err
	}
	d := rolloutListData{Env: env}
	for _, p := range plans {
		if !p.Status.Active() {
			d.Other = append(d.Other, newPlanRow(p, nil))
			continue
		}
		var st *rollout.PlanStatus
		if p.Status == rollout.StatusRunning {
			s, err := u.s.rollouts.Status(ctx, env.Name, p.ID)
			if err != nil {
				return err
			}
			st, p = &s, s.Plan
		}
		d.Active = append(d.Active, newPlanRow(p, st))
	}
	p := u.page(c, "Rollouts in "+env.Name)
	p.Nav, p.Data = "rollouts", d
	return u.render(c, http.StatusOK, "rollouts", p)
}

// activeRollouts returns env's plans that are scheduled, running or
// paused, for the dashboard (none when rollouts are not enabled).
func (u *ui) activeRollouts(ctx context.Context, env string) ([]planRow, error) {
	if u.s.rollouts == nil {
		return nil, nil
	}
	plans, err := u.s.rollouts.ListPlans(ctx, rollout.PlanFilter{Environment: env, Active: true})
	if err != nil {
		return nil, err
	}
	var rows []planRow
	for _, p := range plans {
		if p.Status.Active() {
			rows = append(rows, newPlanRow(p, nil))
		}
	}
	return rows, nil
}

// ---- one plan ----

// stepView is one step of a plan's table.
type stepView struct {
	Number   int
	Weight   string
	Control  string
	Segment  string
	Duration string
	Approval bool
	Approved string // who approved it, or that it was passed without
	State    string // done, current, next or ""
}

// historyView is one transition of a plan.
type historyView struct {
	rollout.HistoryEntry
	StepText string // "2 (25%)", or "" when the transition is not at a step
}

// planActions are the transitions the page offers: legal in the plan's
// status, and allowed to the user.
type planActions struct {
	Start, Advance, Pause, Resume, Abort, Approve bool
	// Blocked says why a running plan may not be advanced by hand now.
	Blocked string
	// Cancel is true when aborting cancels a plan that never ran (rather
	// than rolling one back).
	Cancel bool
	Last   bool // advancing completes the plan
	Next   string
	Any    bool
}

type rolloutData struct {
	Env     flags.Environment
	Status  rollout.PlanStatus
	Row     planRow
	Steps   []stepView
	History []historyView
	Actions planActions
	Error   string
}

func (u *ui) rolloutState(c echo.Context) (*rolloutData, error) {
	env, err := u.environment(c)
	if err != nil {
		return nil, err
	}
	st, err := u.s.rollouts.Status(c.Request().Context(), env.Name, c.Param("id"))
	if err != nil {
		return nil, err
	}
	p := st.Plan
	d := &rolloutData{Env: env, Status: st, Row: newPlanRow(p, &st)}
	for i, s := range p.Steps {
		v := stepView{Number: i + 1, Weight: weightText(s.Weight), Control: weightText(rollout.ControlWeight(s.Weight)),
			Segment: s.Segment, Duration: durationText(time.Duration(s.MinDuration)), Approval: s.Approval}
		if j := slices.IndexFunc(p.Approvals, func(a rollout.Approval) bool { return a.Step == i }); j >= 0 {
			v.Approved = "approved by " + p.Approvals[j].By
		} else if s.Approval && i < p.Step {
			v.Approved = "advanced without it"
		}
		switch {
		case p.Step < 0:
		case i < p.Step || i == p.Step && p.Status == rollout.StatusCompleted:
			v.State = "done"
		case i == p.Step && (p.Status == rollout.StatusRunning || p.Status == rollout.StatusPaused):
			v.State = "current"
		case i == p.Step+1 && p.Status == rollout.StatusRunning:
			v.State = "next"
		}
		d.Steps = append(d.Steps, v)
	}
	for i := len(p.History) - 1; i >= 0; i-- {
		h := p.History[i]
		v := historyView{HistoryEntry: h}
		if h.Weight > 0 {
			v.StepText = fmt.Sprintf("%d (%s)", h.Step+1, weightText(h.Weight))
		}
		d.History = append(d.History, v)
	}
	user := sessionOf(c).user
	editor := user.Can(env.Name, accounts.RoleEditor)
	a := &d.Actions
	switch p.Status {
	case rollout.StatusDraft, rollout.StatusScheduled:
		a.Start, a.Abort, a.Cancel = editor, editor, true
	case rollout.StatusRunning:
		a.Pause, a.Abort = editor, editor
		if p.Pending == nil {
			a.Advance = editor
			a.Blocked = rollout.Blocking(st.Input)
		}
	case rollout.StatusPaused:
		a.Resume, a.Abort = editor, editor
	}
	if cur, ok := p.Current(); ok && cur.Approval && !p.Approved(p.Step) && (p.Status == rollout.StatusRunning || p.Status == rollout.StatusPaused) {
		a.Approve = user.Can(env.Name, accounts.RoleApprover)
	}
	a.Last = p.Step+1 >= len(p.Steps)
	a.Next = nextWeight(p)
	a.Any = a.Start || a.Advance || a.Pause || a.Resume || a.Abort || a.Approve
	return d, nil
}

func (u *ui) rolloutPage(c echo.Context) error {
	if u.s.rollouts == nil {
		return u.rolloutsOff(c, "rollouts")
	}
	d, err := u.rolloutState(c)
	if err != nil {
		return err
	}
	return u.renderRollout(c, http.StatusOK, d)
}

func (u *ui) renderRollout(c echo.Context, status int, d *rolloutData) error {
	p := u.page(c, "Rollout "+d.Status.Plan.ID)
	p.Nav, p.Data = "rollouts", d
	return u.render(c, status, "rollout", p)
}

// rolloutTransition makes one of a plan's transitions (the :action of the
// path) for the user, expecting the version the page showed.
//
// NOTE: starting, advancing and resuming a plan write revisions without a
// change request even in a protected environment, as the API does: a
// plan's steps are reviewed as a whole, and steps that need a second
// person say so with their approval gate. Approving one takes the
// approver role.
func (u *ui) rolloutTransition(c echo.Context) error {
	if u.s.rollouts == nil {
		return u.rolloutsOff(c, "rollouts")
	}
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	action := c.Param("action")
	role := accounts.RoleEditor
	switch action {
	case "start", "advance", "pause", "resume", "abort":
	case "approve":
		role = accounts.RoleApprover
	default:
		return echo.NewHTTPError(http.StatusNotFound, "no such action")
	}
	if err := require(c, env.Name, role); err != nil {
		return err
	}
	expect, err := strconv.ParseInt(c.FormValue("version"), 10, 64)
	if err != nil || expect < 1 {
		return badRequestf("version must be the plan's version the page showed")
	}
	ctx := c.Request().Context()
	id := c.Param("id")
	reason := strings.TrimSpace(c.FormValue("reason"))
	r := u.s.rollouts
	var p rollout.Plan
	switch action {
	case "start":
		p, err = r.Start(ctx, env.Name, id, expect)
	case "advance":
		p, err = r.Advance(ctx, env.Name, id, expect)
	case "pause":
		p, err = r.Pause(ctx, env.Name, id, reason, expect)
	case "resume":
		p, err = r.Resume(ctx, env.Name, id, expect)
	case "abort":
		p, err = r.Abort(ctx, env.Name, id, reason, expect)
	case "approve":
		step, perr := strconv.Atoi(c.FormValue("step"))
		if perr != nil {
			return badRequestf("step must be the index of the step approved")
		}
		p, err = r.Approve(ctx, env.Name, id, step, expect)
	}
	switch solstice.ErrorKind(err) {
	case "":
	case solstice.KindConflict, solstice.KindInvalid, solstice.KindPreconditionFailed:
		d, serr := u.rolloutState(c)
		if serr != nil {
			return serr
		}
		d.Error = fmt.Sprintf("Could not %s %s: %s", action, id, userMessage(err))
		if solstice.IsKind(err, solstice.KindPreconditionFailed) {
			d.Error = fmt.Sprintf("Could not %s %s: it changed since you loaded the page (it is now %s, version %d). Check where it stands below and try again.",
				action, id, d.Status.Plan.Status, d.Status.Plan.Version)
		}
		return u.renderRollout(c, http.StatusConflict, d)
	default:
		return err
	}
	msg, link := transitionMessage(action, p)
	return u.redirectFlash(c, rolloutURL(env.Name, id), msg, link)
}

// transitionMessage says what a transition did to p, and links the
// revision it wrote, if any.
func transitionMessage(action string, p rollout.Plan) (string, string) {
	step := ""
	if s, ok := p.Current(); ok {
		step = fmt.Sprintf("step %d of %d (%s %s)", p.Step+1, len(p.Steps), p.Treatment, weightText(s.Weight))
	}
	var msg string
	switch action {
	case "start":
		msg = fmt.Sprintf("Started %s at %s.", p.ID, step)
	case "advance":
		msg = fmt.Sprintf("Advanced %s to %s.", p.ID, step)
		if p.Status == rollout.StatusCompleted {
			msg = fmt.Sprintf("Completed %s: %s is served as its last step set it.", p.ID, p.Treatment)
		}
	case "pause":
		msg = fmt.Sprintf("Paused %s at %s. Nothing changes for players until it is resumed or aborted.", p.ID, step)
	case "resume":
		msg = fmt.Sprintf("Resumed %s: %s starts over, with new guardrail tests.", p.ID, step)
	case "abort":
		msg = fmt.Sprintf("Aborted %s: its players get the baseline %s again.", p.ID, p.Baseline)
		if p.Status == rollout.StatusCancelled {
			msg = fmt.Sprintf("Cancelled %s: it will not run.", p.ID)
		}
	case "approve":
		msg = fmt.Sprintf("Approved %s of %s.", step, p.ID)
	}
	if p.Pending != nil {
		msg += " Its change of the flag is still being applied."
	}
	link := ""
	if n := len(p.History); n > 0 && p.History[n-1].Revision > 0 && action != "approve" {
		link = revisionURL(p.Environment, p.History[n-1].Revision)
		msg += fmt.Sprintf(" Revision %d made the change.", p.History[n-1].Revision)
	}
	return msg, link
}

// ---- calendar ----

// calendarWeeks is how many weeks the calendar shows by default, starting
// with the current one.
const calendarWeeks = 4

// entryView is one scheduled change of a calendar.
type entryView struct {
	rollout.Entry
	UTC  string // the time in UTC
	What string // the change in words
	Link string // the event's or plan's page
}

type calendarDay struct {
	Label   string
	Entries []entryView
}

type windowView struct {
	rollout.Window
	URL        string
	StartLocal string
	EndLocal   string
	Phases     []phaseWindowView
}

type phaseWindowView struct {
	rollout.PhaseWindow
	UTC string
}

type calendarData struct {
	Env          flags.Environment
	From, To     string // the inputs: dates, To inclusive
	Span         string // [from, to) in words
	Now          time.Time
	Events       []windowView
	Days         []calendarDay
	Prev, Next   string
	This         string
	Error        string
	EntriesCount int
}

// calendarDate reads a calendar bound: a date (from the date inputs) or an
// RFC 3339 time. A date as to is inclusive: the range ends at the end of
// that day.
func calendarDate(v string, end bool) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", v); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date such as 2026-12-18", v)
	}
	return t.UTC(), nil
}

// weekStart returns the Monday 00:00 UTC of t's week.
func weekStart(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}

func (u *ui) calendarPage(c echo.Context) error {
	env, err := u.environment(c)
	if err != nil {
		return err
	}
	if u.s.rollouts == nil {
		return u.rolloutsOff(c, "calendar")
	}
	// NOTE: "now" is the rollout service's clock, as in the API; the
	// timeline that gives it is also what the calendar is built from.
	tl, err := u.s.rollouts.Timeline(c.Request().Context(), env.Name)
	if err != nil {
		return err
	}
	d := calendarData{Env: env, Now: tl.Now}
	status := http.StatusOK
	from := weekStart(tl.Now)
	to := from.AddDate(0, 0, 7*calendarWeeks)
	var problems []string
	if v := c.QueryParam("from"); v != "" {
		if from, err = calendarDate(v, false); err != nil {
			problems = append(problems, "From: "+err.Error())
		}
	}
	switch v := c.QueryParam("to"); {
	case v != "":
		if to, err = calendarDate(v, true); err != nil {
			problems = append(problems, "To: "+err.Error())
		}
	case c.QueryParam("from") != "":
		to = from.AddDate(0, 0, 7*calendarWeeks)
	}
	if len(problems) == 0 {
		switch {
		case !to.After(from):
			problems = append(problems, "The end must be after the start.")
		case to.Sub(from) > rollout.MaxCalendarSpan:
			problems = append(problems, fmt.Sprintf("The calendar shows at most %d days at once.", int(rollout.MaxCalendarSpan/(24*time.Hour))))
		}
	}
	d.From, d.To = c.QueryParam("from"), c.QueryParam("to")
	if len(problems) > 0 {
		d.Error, status = strings.Join(problems, " "), http.StatusUnprocessableEntity
	} else {
		d.From, d.To = from.Format("2006-01-02"), to.Add(-time.Nanosecond).Format("2006-01-02")
		d.Span = utcText(from) + " to " + utcText(to)
		u.fillCalendar(&d, rollout.BuildCalendar(tl, from, to))
		base := "/env/" + url.PathEscape(env.Name) + "/calendar"
		span := to.Sub(from)
		link := func(f time.Time) string {
			return base + "?" + url.Values{"from": {f.Format("2006-01-02")}, "to": {f.Add(span - time.Nanosecond).Format("2006-01-02")}}.Encode()
		}
		d.Prev, d.Next, d.This = link(from.Add(-span)), link(to), base
	}
	p := u.page(c, "Calendar of "+env.Name)
	p.Nav, p.Data = "calendar", d
	return u.render(c, status, "calendar", p)
}

func (u *ui) fillCalendar(d *calendarData, cal rollout.Calendar) {
	env := d.Env.Name
	zones := map[string]*time.Location{} // by event key
	names := map[string]string{}
	for _, w := range cal.Events {
		names[w.Key] = w.Name
		v := windowView{Window: w, URL: eventURL(env, w.Key)}
		loc, err := time.LoadLocation(w.TimeZone)
		if err != nil {
			loc = time.UTC // the calendar leaves out events with an unknown zone
		}
		zones[w.Key] = loc
		v.StartLocal, v.EndLocal = localText(w.Start, loc), localText(w.End, loc)
		for _, ph := range w.Phases {
			pv := phaseWindowView{PhaseWindow: ph, UTC: utcText(ph.Start)}
			pv.Local = localText(ph.Start, loc)
			v.Phases = append(v.Phases, pv)
		}
		d.Events = append(d.Events, v)
	}
	for _, e := range cal.Entries {
		v := entryView{Entry: e, UTC: e.Time.UTC().Format("15:04 UTC"), What: entryWords(e, names[e.Event])}
		if loc := zones[e.Event]; loc != nil && e.Event != "" {
			v.Local = localText(e.Time, loc)
		}
		switch {
		case e.Event != "":
			v.Link = eventURL(env, e.Event)
		case e.Plan != "":
			v.Link = rolloutURL(env, e.Plan)
		}
		label := e.Time.UTC().Format("Monday 2 January 2006")
		if n := len(d.Days); n == 0 || d.Days[n-1].Label != label {
			d.Days = append(d.Days, calendarDay{Label: label})
		}
		day := &d.Days[len(d.Days)-1]
		day.Entries = append(day.Entries, v)
		d.EntriesCount++
	}
}

// localText formats t in an event's time zone.
func localText(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("Mon 2 Jan 2006 15:04 MST")
}

// entryWords says what a calendar entry does; name is its event's name,
// if known.
func entryWords(e rollout.Entry, name string) string {
	if name == "" {
		name = e.Event
	}
	switch e.Kind {
	case rollout.EntryPhase:
		return fmt.Sprintf("%s: phase %s starts", name, e.Phase)
	case rollout.EntryEnd:
		return fmt.Sprintf("%s ends: its flags are set back", name)
	case rollout.EntryPlanStart:
		return fmt.Sprintf("rollout %s starts (step 1)", e.Plan)
	case rollout.EntryPlanStep:
		return fmt.Sprintf("rollout %s: step %d", e.Plan, e.Step)
	case rollout.EntryPlanComplete:
		return fmt.Sprintf("rollout %s completes", e.Plan)
	case rollout.EntryPlanPause:
		return fmt.Sprintf("rollout %s paused at step %d", e.Plan, e.Step)
	case rollout.EntryPlanResume:
		return fmt.Sprintf("rollout %s resumed at step %d", e.Plan, e.Step)
	case rollout.EntryPlanRollback:
		return fmt.Sprintf("rollout %s rolled back", e.Plan)
	case rollout.EntryPlanCancel:
		return fmt.Sprintf("rollout %s cancelled", e.Plan)
	}
	return string(e.Kind)
}

// ---- one event ----

// changeView is one scheduled change of a flag, in words.
type changeView struct {
	Flag         string
	URL          string // the flag's page
	What         string
	Rollout      string // the page of the plan it starts, if any
	BaseRevision int64
}

func describeChange(env string, ch rollout.Change) changeView {
	v := changeView{Flag: ch.Flag, URL: configURL(env, ch.Flag), BaseRevision: ch.BaseRevision}
	if ch.Rollout != "" {
		v.Rollout = rolloutURL(env, ch.Rollout)
	}
	var parts []string
	switch {
	case ch.Config != nil:
		parts = append(parts, "replace its whole configuration")
	case ch.Rollout != "":
		parts = append(parts, "start rollout "+ch.Rollout)
	default:
		if ch.Enabled != nil {
			parts = append(parts, map[bool]string{true: "turn it on", false: "turn it off"}[*ch.Enabled])
		}
		if ch.Serve != "" {
			parts = append(parts, fmt.Sprintf("serve %q to everyone no rule matches", ch.Serve))
		}
		if len(ch.Values) > 0 {
			keys := make([]string, 0, len(ch.Values))
			for k := range ch.Values {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			parts = append(parts, "new values for "+strings.Join(keys, ", "))
		}
	}
	v.What = strings.Join(parts, "; ")
	return v
}

// recordView is what a scheduled change of an event did.
type recordView struct {
	rollout.Record
	Applied string
	Writes  []writeView
}

type writeView struct {
	rollout.Write
	URL string // the revision's page, if it wrote one
}

func newRecordView(env string, r *rollout.Record) *recordView {
	if r == nil {
		return nil
	}
	v := &recordView{Record: *r, Applied: utcText(r.AppliedAt)}
	for _, w := range r.Writes {
		wv := writeView{Write: w}
		if w.Revision > 0 {
			wv.URL = revisionURL(env, w.Revision)
		}
		v.Writes = append(v.Writes, wv)
	}
	return v
}

// eventPhaseView is one phase of an event with what happened to it.
type eventPhaseView struct {
	Name    string
	Local   string
	UTC     string
	Changes []changeView
	Record  *recordView
	Current bool
}

type eventData struct {
	Env       flags.Environment
	Detail    rollout.EventDetail
	Start     [2]string // local, UTC
	End       [2]string
	Cancelled string
	Phases    []eventPhaseView
	EndState  []changeView
	EndRecord *recordView // the record of the end
	CanCancel bool
	Error     string
}

func (u *ui) eventState(c echo.Context) (*eventData, error) {
	env, err := u.environment(c)
	if err != nil {
		return nil, err
	}
	det, err := u.s.rollouts.Detail(c.Request().Context(), env.Name, c.Param("id"))
	if err != nil {
		return nil, err
	}
	ev := det.Event
	d := &eventData{Env: env, Detail: det}
	times, err := ev.Times()
	if err != nil {
		return nil, err
	}
	loc, err := ev.Location()
	if err != nil {
		return nil, err
	}
	d.Start = [2]string{localText(times.Start, loc), utcText(times.Start)}
	d.End = [2]string{localText(times.End, loc), utcText(times.End)}
	if ev.CancelledAt != nil {
		d.Cancelled = fmt.Sprintf("cancelled by %s, %s", ev.CancelledBy, utcText(*ev.CancelledAt))
	}
	record := func(id string) *recordView {
		for i := range det.Records {
			if det.Records[i].ID == id {
				return newRecordView(env.Name, &det.Records[i])
			}
		}
		return nil
	}
	for i, ph := range ev.Phases {
		v := eventPhaseView{Name: ph.Name, Local: localText(times.Phases[i], loc), UTC: utcText(times.Phases[i]),
			Record: record(rollout.PhaseChangeID(ev, ph.Name)), Current: det.State.Status == rollout.EventLive && det.State.Phase == ph.Name}
		for _, ch := range ph.Changes {
			v.Changes = append(v.Changes, describeChange(env.Name, ch))
		}
		d.Phases = append(d.Phases, v)
	}
	for _, ch := range ev.EndState {
		d.EndState = append(d.EndState, describeChange(env.Name, ch))
	}
	d.EndRecord = record(rollout.EndChangeID(ev))
	st := det.State.Status
	d.CanCancel = ev.CancelledAt == nil && (st == rollout.EventScheduled || st == rollout.EventLive) &&
		sessionOf(c).user.Can(env.Name, accounts.RoleEditor)
	return d, nil
}

func (u *ui) eventPage(c echo.Context) error {
	if u.s.rollouts == nil {
		return u.rolloutsOff(c, "calendar")
	}
	d, err := u.eventState(c)
	if err != nil {
		return err
	}
	return u.renderEvent(c, http.StatusOK, d)
}

func (u *ui) renderEvent(c echo.Context, status int, d *eventData) error {
	p := u.page(c, d.Detail.Event.Name)
	p.Nav, p.Data = "calendar", d
	return u.render(c, status, "event", p)
}

// cancelEvent ends an event now, expecting the version the page showed.
func (u *ui) cancelEvent(c echo.Context) error {
	if u.s.rollouts == nil {
		return u.rolloutsOff(c, "calendar")
	}
	d, err := u.eventState(c)
	if err != nil {
		return err
	}
	env := d.Env.Name
	if err := require(c, env, accounts.RoleEditor); err != nil {
		return err
	}
	expect, err := strconv.ParseInt(c.FormValue("version"), 10, 64)
	if err != nil || expect < 1 {
		return badRequestf("version must be the event's version the page showed")
	}
	key := c.Param("id")
	ev, err := u.s.rollouts.CancelEvent(c.Request().Context(), env, key, expect)
	switch solstice.ErrorKind(err) {
	case "":
	case solstice.KindConflict, solstice.KindPreconditionFailed:
		d.Error = "Not cancelled: " + userMessage(err)
		if solstice.IsKind(err, solstice.KindPreconditionFailed) {
			d.Error = "Not cancelled: the event changed since you loaded the page. Check it below and try again."
		}
		return u.renderEvent(c, http.StatusConflict, d)
	default:
		return err
	}
	msg := fmt.Sprintf("Cancelled %s: phases that have not started never will.", ev.Name)
	if d.Detail.State.Status == rollout.EventLive {
		msg += " It had started, so the scheduler sets its flags back at its next tick."
	}
	return u.redirectFlash(c, eventURL(env, key), msg, "")
}

// ---- dashboard ----

// eventSummary is an event as the dashboard lists it.
type eventSummary struct {
	Key, Name string
	URL       string
	State     rollout.EventState
	Start     string // local, with the zone
}

// openEvents returns env's events that have not ended, live ones first,
// then by start (none when rollouts are not enabled).
func (u *ui) openEvents(ctx context.Context, env string, limit int) ([]eventSummary, error) {
	if u.s.rollouts == nil {
		return nil, nil
	}
	evs, err := u.s.rollouts.ListEvents(ctx, rollout.EventFilter{Environment: env, Open: true})
	if err != nil {
		return nil, err
	}
	var live, later []eventSummary
	for _, ev := range evs {
		det, err := u.s.rollouts.Detail(ctx, env, ev.Key)
		if err != nil {
			return nil, err
		}
		s := eventSummary{Key: ev.Key, Name: ev.Name, URL: eventURL(env, ev.Key), State: det.State}
		if t, err := ev.Times(); err == nil {
			if loc, err := ev.Location(); err == nil {
				s.Start = localText(t.Start, loc)
			}
		}
		switch det.State.Status {
		case rollout.EventLive:
			live = append(live, s)
		case rollout.EventScheduled:
			later = append(later, s)
		}
	}
	out := append(live, later...)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
