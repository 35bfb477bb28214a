package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
)

// winterRamp is a three-step plan of winter-festival in production: 5%
// (which asks for an approval), 25%, 100%, each for at least an hour,
// gated by the reject-rate guardrail.
func winterRamp() rollout.Plan {
	hour := rollout.Duration(time.Hour)
	return rollout.Plan{ID: "winter-ramp", Environment: "production", Flag: "winter-festival",
		Treatment: "festival", Control: "control", Baseline: "baseline",
		Steps: []rollout.Step{{Weight: 500, MinDuration: hour, Approval: true}, {Weight: 2500, MinDuration: hour}, {Weight: 10000, MinDuration: hour}},
		Gates: rollout.Gates{Guardrails: []string{"reject-rate"}}}
}

// setUpRamp creates winter-festival (baseline, control, festival; on,
// serving baseline), its reject-rate guardrail, and the draft winterRamp.
func (o *opsHarness) setUpRamp() guardrails.Ref {
	o.t.Helper()
	o.splitFlag("production", "winter-festival", 0, true)
	ref := o.rejectRateGuardrail("production", "winter-festival")
	if _, err := o.rollouts.PutPlan(as("alice"), winterRamp(), 0); err != nil {
		o.t.Fatal(err)
	}
	return ref
}

func (o *opsHarness) plan(id string) rollout.Plan {
	o.t.Helper()
	p, err := o.rollouts.GetPlan(context.Background(), "production", id)
	if err != nil {
		o.t.Fatal(err)
	}
	return p
}

// setPhase moves a guardrail to phase through the state store, as the
// guardrail job would.
func (o *opsHarness) setPhase(ref guardrails.Ref, phase guardrails.Phase, reason string) {
	o.t.Helper()
	ctx := context.Background()
	st, err := o.db.State(ctx, ref)
	if solstice.IsKind(err, solstice.KindNotFound) {
		st, err = guardrails.NewState(ref, o.clock.Now()), nil
	}
	if err != nil {
		o.t.Fatal(err)
	}
	old := st.Version
	st.Phase, st.Reason, st.Since, st.Version = phase, reason, o.clock.Now(), old+1
	if err := o.db.SwapState(ctx, old, st); err != nil {
		o.t.Fatal(err)
	}
}

// treatmentWeight is the weight of festival in the default split of
// winter-festival (0 without one).
func (o *opsHarness) treatmentWeight() int {
	o.t.Helper()
	s := o.config("production", "winter-festival").Config.Split
	if s == nil {
		return 0
	}
	for _, w := range s.Weights {
		if w.Variant == "festival" {
			return w.Weight
		}
	}
	return 0
}

func TestUIRollouts(t *testing.T) {
	o := newOpsHarness(t)
	ref := o.setUpRamp()
	page := "/env/production/rollouts/winter-ramp"
	version := func() string { return strconv.FormatInt(o.plan("winter-ramp").Version, 10) }

	// A viewer sees the plan and cannot move it.
	vic := o.login("vic")
	vic.want(vic.get("/env/production/rollouts"), http.StatusOK, "Rollouts in production", "No plan is scheduled, running or paused",
		"Drafts and finished plans", "winter-ramp", "draft")
	r := vic.want(vic.get(page), http.StatusOK, "Rollout winter-ramp", "draft", "not started", "moving a rollout needs the editor role",
		"5%", "25%", "100%", "needed")
	vic.wantNot(r, `action="`+page+`/start"`, `action="`+page+`/abort"`)
	for _, action := range []string{"start", "abort"} {
		vic.want(vic.post(page+"/"+action, url.Values{"version": {version()}}), http.StatusForbidden, "needs the editor role")
	}
	if p := o.plan("winter-ramp"); p.Status != rollout.StatusDraft || p.Version != 1 {
		t.Fatalf("a viewer's POST moved the plan: %s, version %d", p.Status, p.Version)
	}

	// Start, with the session's CSRF token only.
	alice := o.login("alice")
	r = alice.want(alice.get(page), http.StatusOK, "Start now…", "Cancel plan…")
	alice.wantNot(r, `action="`+page+`/advance"`, `action="`+page+`/pause"`)
	start := formValues(t, r.body, page+"/start")
	forged := url.Values{"version": start["version"], "_csrf": {"x" + alice.csrf}}
	alice.want(alice.do("POST", page+"/start", forged), http.StatusForbidden, "this form has expired")
	if o.plan("winter-ramp").Status != rollout.StatusDraft {
		t.Fatal("a forged start started the plan")
	}
	r = alice.want(alice.submit(page+"/start", start), http.StatusOK, "Started winter-ramp at step 1 of 3 (festival 5%). Revision ",
		"◀ current", "waiting for a person's approval", "Advance to step 2…", "Pause…", "Abort…")
	alice.wantNot(r, `action="`+page+`/approve"`, `action="`+page+`/start"`, `action="`+page+`/resume"`)
	if p := o.plan("winter-ramp"); p.Status != rollout.StatusRunning || p.Step != 0 || o.treatmentWeight() != 500 {
		t.Fatalf("after the start: %s at step %d, festival at %d; want running at step 1, 500", p.Status, p.Step, o.treatmentWeight())
	}

	// Illegal transitions show the domain's reason and change nothing:
	// resuming a running plan, and pausing from a stale page.
	v := version()
	r = alice.want(alice.post(page+"/resume", url.Values{"version": {v}}), http.StatusConflict, "Could not resume winter-ramp", "only a paused plan resumes")
	if !strings.Contains(r.body, "data-focus") {
		t.Error("the refusal does not take the focus")
	}
	stale, _ := strconv.Atoi(v)
	alice.want(alice.post(page+"/pause", url.Values{"version": {strconv.Itoa(stale - 1)}}), http.StatusConflict, "it changed since you loaded the page")
	alice.want(alice.post(page+"/pause", nil), http.StatusBadRequest, "version must be")
	alice.want(alice.post(page+"/launch", url.Values{"version": {v}}), http.StatusNotFound)
	if p := o.plan("winter-ramp"); p.Status != rollout.StatusRunning || strconv.FormatInt(p.Version, 10) != v {
		t.Fatalf("a refused transition changed the plan: %s, version %d (was %s)", p.Status, p.Version, v)
	}

	// Approving takes the approver role.
	alice.want(alice.post(page+"/approve", url.Values{"version": {v}, "step": {"0"}}), http.StatusForbidden, "needs the approver role")
	bob := o.login("bob")
	r = bob.want(bob.get(page), http.StatusOK, "Approve step 1")
	bob.want(bob.submit(page+"/approve", formValues(t, r.body, page+"/approve")), http.StatusOK, "Approved step 1 of 3 (festival 5%) of winter-ramp", "approved by bob")
	if !o.plan("winter-ramp").Approved(0) {
		t.Fatal("the approval was not recorded")
	}

	// Advance by hand, pause, and resume.
	r = alice.get(page)
	alice.want(alice.submit(page+"/advance", formValues(t, r.body, page+"/advance")), http.StatusOK, "Advanced winter-ramp to step 2 of 3 (festival 25%)")
	if p := o.plan("winter-ramp"); p.Step != 1 || o.treatmentWeight() != 2500 {
		t.Fatalf("after the advance: step %d, festival at %d; want step 2, 2500", p.Step, o.treatmentWeight())
	}
	r = alice.get(page)
	pause := formValues(t, r.body, page+"/pause")
	pause.Set("reason", "checking the drop tables")
	r = alice.want(alice.submit(page+"/pause", pause), http.StatusOK, "Paused winter-ramp at step 2 of 3", "paused by alice: checking the drop tables", "Resume…")
	alice.wantNot(r, `action="`+page+`/advance"`, `action="`+page+`/pause"`)

	// A tripped guardrail keeps a paused plan from resuming, with the
	// domain's reason.
	o.setPhase(ref, guardrails.PhaseTripped, "reject rate 6% against 2%")
	alice.want(alice.post(page+"/resume", url.Values{"version": {version()}}), http.StatusConflict, "guardrail reject-rate is tripped; resume the guardrail first")
	if o.plan("winter-ramp").Status != rollout.StatusPaused {
		t.Fatal("the plan resumed past a tripped guardrail")
	}
	o.setPhase(ref, guardrails.PhaseMonitoring, "the minimum sample is reached")
	r = alice.get(page)
	alice.want(alice.submit(page+"/resume", formValues(t, r.body, page+"/resume")), http.StatusOK, "Resumed winter-ramp: step 2 of 3 (festival 25%) starts over")

	// A held guardrail blocks a manual advance: the page says why instead
	// of offering it, and a direct POST is refused.
	o.setPhase(ref, guardrails.PhaseHeld, "the data is 40m late")
	r = alice.want(alice.get(page), http.StatusOK, "Advancing by hand is blocked: guardrail reject-rate is held (the data is 40m late)")
	alice.wantNot(r, `action="`+page+`/advance"`)
	alice.want(alice.post(page+"/advance", url.Values{"version": {version()}}), http.StatusConflict, "rollout winter-ramp cannot advance: guardrail reject-rate is held")
	if p := o.plan("winter-ramp"); p.Step != 1 {
		t.Fatalf("the blocked advance moved the plan to step %d", p.Step+1)
	}
	alice.want(alice.get("/env/production/rollouts"), http.StatusOK, "Under way", "running", "2 of 3", "festival</code> 25%", "step 3 (100%) due", "reject-rate is held")
	alice.want(alice.get("/env/production"), http.StatusOK, "Rollouts under way", "winter-ramp", "2 of 3: 25%", "1</span> rollout under way")

	// Abort rolls the plan back, for good.
	r = alice.get(page)
	abort := formValues(t, r.body, page+"/abort")
	abort.Set("reason", "drops too generous")
	r = alice.want(alice.submit(page+"/abort", abort), http.StatusOK, "Aborted winter-ramp: its players get the baseline baseline again", "rolled_back",
		"running → rolled_back", "aborted by alice: drops too generous")
	alice.wantNot(r, `action="`+page+`/`)
	if p := o.plan("winter-ramp"); p.Status != rollout.StatusRolledBack || o.treatmentWeight() != 0 {
		t.Fatalf("after the abort: %s, festival at %d; want rolled back, none", p.Status, o.treatmentWeight())
	}
	alice.want(alice.post(page+"/abort", url.Values{"version": {version()}}), http.StatusConflict, "a rolled_back plan is finished")
	alice.want(alice.get("/env/production/rollouts"), http.StatusOK, "No plan is scheduled, running or paused", "rolled_back")
	alice.want(alice.get("/env/production/rollouts/nope"), http.StatusNotFound)
}

// festival is the Winter Festival in production: it starts a day after
// now (on the hour, Paris time), with a teaser that turns the banner on
// and a live phase eight hours later that serves it to everyone, and ends
// a week after it starts.
func (o *opsHarness) festival() (rollout.Event, time.Time) {
	o.t.Helper()
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		o.t.Fatal(err)
	}
	start := o.clock.Now().Add(24 * time.Hour).In(paris).Truncate(time.Hour)
	local := func(t time.Time) rollout.LocalTime {
		t = t.In(paris)
		return rollout.Local(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute())
	}
	on := true
	ev := rollout.Event{Key: "winter-festival", Environment: "production", Name: "Winter Festival", TimeZone: "Europe/Paris",
		Start: local(start), End: local(start.Add(7 * 24 * time.Hour)),
		Phases: []rollout.Phase{
			{Name: "teaser", Start: local(start), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
			{Name: "live", Start: local(start.Add(8 * time.Hour)), Changes: []rollout.Change{{Flag: "festival-banner", Serve: "on"}}},
		}}
	if _, err := o.flags.CreateFlag(as("alice"), flags.NewFlag{Key: "festival-banner", Type: flags.TypeBoolean}); err != nil {
		o.t.Fatal(err)
	}
	ev, err = o.rollouts.PutEvent(as("alice"), ev, 0)
	if err != nil {
		o.t.Fatal(err)
	}
	return ev, start
}

func TestUICalendarAndEvents(t *testing.T) {
	o := newOpsHarness(t)
	ev, start := o.festival()
	page := "/env/production/events/winter-festival"
	startLocal := start.Format("Mon 2 Jan 2006 15:04 MST")
	startUTC := start.UTC().Format("Mon 2 Jan 2006 15:04 UTC")

	vic := o.login("vic")
	r := vic.want(vic.get("/env/production/calendar"), http.StatusOK, "Calendar of production", "Winter Festival", "scheduled", "teaser", "live",
		startLocal, startUTC, "Winter Festival: phase teaser starts", "Winter Festival: phase live starts", "Winter Festival ends", "festival-banner", "‹ Earlier", "Later ›")
	if strings.Index(r.body, "phase teaser starts") > strings.Index(r.body, "phase live starts") {
		t.Error("the calendar lists the live phase before the teaser")
	}
	vic.want(vic.get("/env/production"), http.StatusOK, "Events", "Winter Festival", "starts "+startLocal)

	// Ranges: explicit, empty, and invalid ones, which say why.
	vic.want(vic.get("/env/production/calendar?from=2020-01-01&to=2020-01-31"), http.StatusOK, "No event in this range", "Nothing is scheduled in this range")
	day := start.UTC().Format("2006-01-02")
	vic.want(vic.get("/env/production/calendar?from="+day+"&to="+day), http.StatusOK, "Winter Festival", "phase teaser starts")
	for _, tc := range []struct{ query, want string }{
		{"from=2026-12-10&to=2026-12-01", "The end must be after the start"},
		{"from=soon", `"soon" is not a date`},
		{"from=2026-01-01&to=2027-12-31", "at most 366 days"},
	} {
		vic.want(vic.get("/env/production/calendar?"+tc.query), http.StatusUnprocessableEntity, tc.want)
	}

	// The event's page, which a viewer cannot cancel from.
	r = vic.want(vic.get(page), http.StatusOK, "Winter Festival", "scheduled", "teaser", "live", "turn it on", `serve "on" to everyone no rule matches`,
		"Not applied yet", startLocal, startUTC, "Europe/Paris")
	vic.wantNot(r, `action="`+page+`/cancel"`)
	vic.want(vic.post(page+"/cancel", url.Values{"version": {"1"}}), http.StatusForbidden, "needs the editor role")

	// The teaser starts: the calendar and the page show it done, with its
	// revision. (The clock jumps a day: everyone logs in again.)
	o.clock.advance(start.Sub(o.clock.Now()) + time.Minute)
	if err := o.sched.Tick(context.Background(), o.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if !o.config("production", "festival-banner").Config.Enabled {
		t.Fatal("the teaser did not turn the banner on")
	}
	rev := strconv.FormatInt(o.head("production"), 10)
	alice := o.login("alice")
	alice.want(alice.get("/env/production/calendar"), http.StatusOK, "live: teaser", "done")
	r = alice.want(alice.get(page), http.StatusOK, "live: teaser", "now", `href="/env/production/history/`+rev+`"`, "Cancel event…", "It is live")

	// Cancel, with the session's CSRF token only; a second cancel is
	// refused with the reason, and changes nothing.
	cancel := formValues(t, r.body, page+"/cancel")
	alice.want(alice.do("POST", page+"/cancel", url.Values{"version": cancel["version"]}), http.StatusForbidden, "this form has expired")
	if got, _ := o.rollouts.GetEvent(context.Background(), "production", ev.Key); got.CancelledAt != nil {
		t.Fatal("a forged cancel cancelled the event")
	}
	r = alice.want(alice.submit(page+"/cancel", cancel), http.StatusOK, "Cancelled Winter Festival: phases that have not started never will.",
		"It had started, so the scheduler sets its flags back at its next tick", "cancelled by alice")
	alice.wantNot(r, `action="`+page+`/cancel"`)
	got, err := o.rollouts.GetEvent(context.Background(), "production", ev.Key)
	if err != nil || got.CancelledAt == nil || got.CancelledBy != "alice" {
		t.Fatalf("after the cancel: %+v, %v", got, err)
	}
	alice.want(alice.post(page+"/cancel", url.Values{"version": {strconv.FormatInt(got.Version, 10)}}), http.StatusConflict, "Not cancelled", "was already cancelled")
	if again, _ := o.rollouts.GetEvent(context.Background(), "production", ev.Key); again.Version != got.Version {
		t.Errorf("the refused cancel changed the event: version %d, was %d", again.Version, got.Version)
	}
	alice.want(alice.get("/env/production/events/nope"), http.StatusNotFound)
}
