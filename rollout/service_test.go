package rollout_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
)

func wantKind(t *testing.T, err error, want solstice.Kind) {
	t.Helper()
	if got := solstice.ErrorKind(err); got != want {
		t.Fatalf("error kind %q (%v), want %q", got, err, want)
	}
}

func TestServicePutPlan(t *testing.T) {
	clock := &fakeClock{t: utc(2026, 12, 1, 0, 0)}
	w := newWorld(t, openDB(t, clock), clock)
	for _, tc := range []struct {
		name    string
		edit    func(p *rollout.Plan)
		kind    solstice.Kind
		pointer string
	}{
		{"unknown variant", func(p *rollout.Plan) { p.Treatment = "snow" }, solstice.KindInvalid, "/treatment"},
		{"control serves another value", func(p *rollout.Plan) { p.Control, p.Baseline = "festival", "control"; p.Treatment = "baseline" }, solstice.KindInvalid, "/control"},
		{"unknown guardrail", func(p *rollout.Plan) { p.Gates.Guardrails = []string{"d1"} }, solstice.KindInvalid, "/gates/guardrails/0"},
		{"unknown segment", func(p *rollout.Plan) { p.Steps[0].Segment = "beta" }, solstice.KindInvalid, "/steps/0/segment"},
		{"unknown flag", func(p *rollout.Plan) { p.Flag = "nope" }, solstice.KindNotFound, ""},
		{"invalid", func(p *rollout.Plan) { p.Steps = nil }, solstice.KindInvalid, "/steps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ramp()
			tc.edit(&p)
			_, err := w.svc.PutPlan(w.ctx, p, 0)
			wantKind(t, err, tc.kind)
			if tc.pointer != "" && !strings.Contains(mustJSON(solstice.ErrorFields(err)), `"pointer":"`+tc.pointer+`"`) {
				t.Errorf("fields %+v, want one at %s", solstice.ErrorFields(err), tc.pointer)
			}
		})
	}

	p := ramp()
	p.Status, p.Step, p.Revision = rollout.StatusCompleted, 2, 99 // runtime fields are the service's
	created, err := w.svc.PutPlan(w.ctx, p, 0)
	w.must(err)
	if created.Status != rollout.StatusDraft || created.Step != -1 || created.Revision != 0 || created.Version != 1 {
		t.Errorf("created %s step %d revision %d version %d; want a fresh draft", created.Status, created.Step, created.Revision, created.Version)
	}
	_, err = w.svc.PutPlan(w.ctx, ramp(), 0)
	wantKind(t, err, solstice.KindConflict)
	edit := created
	edit.Steps = edit.Steps[:2]
	_, err = w.svc.PutPlan(w.ctx, edit, 7)
	wantKind(t, err, solstice.KindPreconditionFailed)
	updated, err := w.svc.PutPlan(w.ctx, edit, 1)
	w.must(err)
	if len(updated.Steps) != 2 || updated.Version != 2 {
		t.Errorf("updated: %d steps, version %d", len(updated.Steps), updated.Version)
	}
	started, err := w.svc.Start(w.ctx, env, p.ID, 2)
	w.must(err)
	_, err = w.svc.PutPlan(w.ctx, edit, started.Version)
	wantKind(t, err, solstice.KindConflict)
	wantKind(t, w.svc.DeletePlan(w.ctx, env, p.ID, flags.AnyVersion), solstice.KindConflict)
}

// TestServicePlanOperations drives a plan by hand: start, approve, the
// manual advance blocked by a held guardrail, pause and resume, abort.
func TestServicePlanOperations(t *testing.T) {
	t0 := utc(2026, 12, 1, 9, 0)
	clock := &fakeClock{t: t0}
	w := newWorld(t, openDB(t, clock), clock)
	p := ramp()
	p.Manual = true
	p.Steps[0].Approval = true
	p, err := w.svc.PutPlan(w.ctx, p, 0)
	w.must(err)

	_, err = w.svc.Pause(w.ctx, env, p.ID, "", p.Version)
	wantKind(t, err, solstice.KindConflict)
	p, err = w.svc.Start(w.ctx, env, p.ID, p.Version)
	w.must(err)
	if p.Status != rollout.StatusRunning || p.Pending != nil || p.Revision == 0 {
		t.Fatalf("started: %s, pending %+v, revision %d", p.Status, p.Pending, p.Revision)
	}
	rev, err := w.flags.GetRevision(w.ctx, env, p.Revision)
	w.must(err)
	if rev.Author != "rollout:winter-ramp" || !strings.Contains(rev.Message, "step 1 of 3, treatment 5% and control 5% (started by alice)") {
		t.Errorf("start revision by %s: %q", rev.Author, rev.Message)
	}
	if st := w.guardrailState(); st.Test != 1 || !st.TestStarted.Equal(t0) || st.Phase != guardrails.PhaseCollecting {
		t.Errorf("guardrail after the start: %+v; want test 1 from the step's start", st)
	}
	_, err = w.svc.Start(w.ctx, env, p.ID, p.Version)
	wantKind(t, err, solstice.KindConflict)

	st, err := w.svc.Status(w.ctx, env, p.ID)
	w.must(err)
	var failing []string
	for _, g := range st.Decision.Gates {
		if !g.Passed {
			failing = append(failing, g.Name)
		}
	}
	if diff := cmp.Diff([]string{"duration", "guardrails", "approval", "manual"}, failing); diff != "" {
		t.Errorf("failing gates (-want +got):\n%s", diff)
	}

	_, err = w.svc.Approve(w.ctx, env, p.ID, 1, p.Version)
	wantKind(t, err, solstice.KindConflict)
	p, err = w.svc.Approve(w.ctx, env, p.ID, 0, p.Version)
	w.must(err)

	w.setGuardrail(guardrails.PhaseHeld, "sample ratio mismatch")
	_, err = w.svc.Advance(w.ctx, env, p.ID, p.Version)
	if wantKind(t, err, solstice.KindConflict); !strings.Contains(err.Error(), "reject-rate is held") {
		t.Errorf("advance while held: %v", err)
	}
	w.setGuardrail(guardrails.PhaseMonitoring, "")
	clock.Set(t0.Add(time.Hour))
	p, err = w.svc.Advance(w.ctx, env, p.ID, p.Version)
	w.must(err)
	if p.Step != 1 || p.Pending != nil || w.config("winter-festival").Config.Split.Weights[0].Weight != 2500 {
		t.Fatalf("after a manual advance: step %d, pending %+v", p.Step, p.Pending)
	}
	// The scheduler leaves a manual plan alone.
	w.tick(t0.Add(100 * time.Hour))
	if got := w.plan(p.ID); got.Step != 1 || got.Status != rollout.StatusRunning {
		t.Errorf("the scheduler moved a manual plan: %s step %d", got.Status, got.Step)
	}
	p = w.plan(p.ID)

	p, err = w.svc.Pause(w.ctx, env, p.ID, "checking the drop tables", p.Version)
	w.must(err)
	if p.Reason != "paused by alice: checking the drop tables" {
		t.Errorf("pause reason %q", p.Reason)
	}
	// Someone edits the flag while the plan is paused; resuming applies
	// the step again on top of the edit.
	fc := w.config("winter-festival")
	edited := fc.Config
	edited.Split = nil
	_, err = w.flags.PutConfig(w.ctx, env, "winter-festival", edited, fc.Revision, "remove the split")
	w.must(err)
	clock.Set(t0.Add(101 * time.Hour))
	p, err = w.svc.Resume(w.ctx, env, p.ID, p.Version)
	w.must(err)
	if p.Status != rollout.StatusRunning || !p.StepStarted.Equal(t0.Add(101*time.Hour)) || w.config("winter-festival").Config.Split == nil {
		t.Errorf("resumed: %s from %s, split %+v", p.Status, p.StepStarted, w.config("winter-festival").Config.Split)
	}

	p, err = w.svc.Abort(w.ctx, env, p.ID, "wrong drop table", p.Version)
	w.must(err)
	if p.Status != rollout.StatusRolledBack || p.Pending != nil {
		t.Fatalf("aborted: %s pending %+v", p.Status, p.Pending)
	}
	for _, pl := range players(300) {
		if v := w.eval("winter-festival", pl).Variant; v != "baseline" {
			t.Fatalf("after the abort %s gets %s, want baseline", pl[flags.TargetingKey], v)
		}
	}
	_, err = w.svc.Abort(w.ctx, env, p.ID, "", p.Version)
	wantKind(t, err, solstice.KindConflict)
	_, err = w.svc.Resume(w.ctx, env, p.ID, flags.AnyVersion)
	wantKind(t, err, solstice.KindConflict)
	w.must(w.svc.DeletePlan(w.ctx, env, p.ID, p.Version))

	// A draft is cancelled by an abort; a tripped guardrail stops a start.
	d, err := w.svc.PutPlan(w.ctx, ramp(), 0)
	w.must(err)
	w.setGuardrail(guardrails.PhaseTripped, "harm established")
	_, err = w.svc.Start(w.ctx, env, d.ID, d.Version)
	if wantKind(t, err, solstice.KindConflict); !strings.Contains(err.Error(), "tripped") {
		t.Errorf("start with a tripped guardrail: %v", err)
	}
	d, err = w.svc.Abort(w.ctx, env, d.ID, "", d.Version)
	w.must(err)
	if d.Status != rollout.StatusCancelled {
		t.Errorf("aborted draft is %s, want cancelled", d.Status)
	}
	entries, err := w.db.ListAudit(w.ctx, solstice.AuditFilter{Resource: "rollout/winter-ramp", Actor: "alice"})
	w.must(err)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	want := []string{"rollout.abort", "rollout.create", "rollout.delete", "rollout.abort", "rollout.resume", "rollout.pause", "rollout.advance", "rollout.approve", "rollout.start", "rollout.create"}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Errorf("alice's audit entries, newest first (-want +got):\n%s", diff)
	}
}

// TestServiceEvents checks what saving an event refuses: overlaps, stale
// bases, plans under way, changes to phases that have started.
func TestServiceEvents(t *testing.T) {
	t0 := utc(2026, 12, 1, 0, 0)
	clock := &fakeClock{t: t0}
	w := newWorld(t, openDB(t, clock), clock)
	_, err := w.svc.PutPlan(w.ctx, ramp(), 0)
	w.must(err)

	ev := festivalEvent()
	ev.UID = ""
	ev.Phases[2].Changes[0].Values = map[string]json.RawMessage{"on": json.RawMessage(`"yes"`)}
	_, err = w.svc.PutEvent(w.ctx, ev, 0)
	wantKind(t, err, solstice.KindInvalid) // a string for a boolean flag
	ev = festivalEvent()
	ev.Phases[0].Changes = append(ev.Phases[0].Changes, rollout.Change{Flag: "nope", Enabled: &on})
	_, err = w.svc.PutEvent(w.ctx, ev, 0)
	wantKind(t, err, solstice.KindInvalid)

	saved, err := w.svc.PutEvent(w.ctx, festivalEvent(), 0)
	w.must(err)
	if saved.UID == "" || saved.UID == "u1" || saved.Phases[0].Changes[0].BaseRevision == 0 {
		t.Errorf("saved event: uid %q, base revision %d; want a fresh uid and the flag's revision", saved.UID, saved.Phases[0].Changes[0].BaseRevision)
	}
	_, err = w.svc.PutEvent(w.ctx, festivalEvent(), 0)
	wantKind(t, err, solstice.KindConflict)

	// Another event on the banner, overlapping by a day.
	xmas := rollout.Event{Key: "xmas", Environment: env, Name: "Christmas", TimeZone: "UTC",
		Start: rollout.Local(2026, 12, 24, 0, 0), End: rollout.Local(2026, 12, 27, 0, 0),
		Phases: []rollout.Phase{{Name: "on", Start: rollout.Local(2026, 12, 24, 0, 0), Changes: []rollout.Change{{Flag: "festival-banner", Serve: "off"}}}}}
	_, err = w.svc.PutEvent(w.ctx, xmas, 0)
	wantKind(t, err, solstice.KindConflict)
	if f := solstice.ErrorFields(err); len(f) != 1 || f[0].Pointer != "/phases/0/changes/0" || !strings.Contains(f[0].Message, `event "winter-festival" also changes festival-banner`) {
		t.Errorf("overlap fields %+v", f)
	}
	cs, err := w.svc.CheckEvent(w.ctx, xmas, 0)
	w.must(err)
	if len(cs) != 1 || cs[0].Kind != rollout.ConflictOverlap {
		t.Errorf("CheckEvent = %+v", cs)
	}
	xmas.Start, xmas.Phases[0].Start = rollout.Local(2026, 12, 25, 9, 0), rollout.Local(2026, 12, 25, 9, 0)
	_, err = w.svc.PutEvent(w.ctx, xmas, 0)
	w.must(err) // it starts when the festival ends

	// Someone changes the banner: the festival's changes are now stale.
	fc := w.config("festival-banner")
	cfg := fc.Config
	cfg.DefaultVariant = "off"
	rev, err := w.flags.PutConfig(w.ctx, env, "festival-banner", cfg, fc.Revision, "")
	w.must(err)
	saved.Description = "Snow everywhere"
	_, err = w.svc.PutEvent(w.ctx, saved, saved.Version)
	wantKind(t, err, solstice.KindConflict)
	if f := solstice.ErrorFields(err); len(f) != 2 || !strings.Contains(f[0].Message, "changed by alice since this change was scheduled") {
		t.Errorf("stale fields %+v", f)
	}
	for _, i := range []int{0, 2} {
		saved.Phases[i].Changes[0].BaseRevision = rev.Number
	}
	saved, err = w.svc.PutEvent(w.ctx, saved, saved.Version)
	w.must(err)

	// A rollout under way on a flag blocks another event changing it.
	other := ramp()
	other.ID = "other-ramp"
	other.Gates = rollout.Gates{}
	_, err = w.svc.PutPlan(w.ctx, other, 0)
	w.must(err)
	_, err = w.svc.Start(w.ctx, env, "other-ramp", flags.AnyVersion)
	w.must(err)
	spring := rollout.Event{Key: "spring", Environment: env, Name: "Spring", TimeZone: "UTC",
		Start: rollout.Local(2027, 3, 1, 0, 0), End: rollout.Local(2027, 3, 2, 0, 0),
		Phases: []rollout.Phase{{Name: "on", Start: rollout.Local(2027, 3, 1, 0, 0), Changes: []rollout.Change{{Flag: "winter-festival", Enabled: &off}}}}}
	_, err = w.svc.PutEvent(w.ctx, spring, 0)
	if wantKind(t, err, solstice.KindConflict); !strings.Contains(err.Error(), "rollout other-ramp of winter-festival is running") {
		t.Errorf("active rollout: %v", err)
	}
	_, err = w.svc.Abort(w.ctx, env, "other-ramp", "", flags.AnyVersion)
	w.must(err)

	// Once the teaser has started it is frozen, and so is the start.
	w.tick(utc(2026, 12, 18, 9, 0))
	changed := cloneEvent(saved)
	changed.Phases[0].Changes[0].Enabled = &off
	_, err = w.svc.PutEvent(w.ctx, changed, saved.Version)
	wantKind(t, err, solstice.KindConflict)
	changed = cloneEvent(saved)
	changed.Start, changed.Phases[0].Start = rollout.Local(2026, 12, 18, 9, 0), rollout.Local(2026, 12, 18, 9, 0)
	_, err = w.svc.PutEvent(w.ctx, changed, saved.Version)
	wantKind(t, err, solstice.KindConflict)
	// Later phases can still change; other-ramp changed winter-festival
	// since the live phase was scheduled, which must be acknowledged.
	changed = cloneEvent(saved)
	changed.Phases[2].Start = rollout.Local(2026, 12, 24, 20, 0)
	_, err = w.svc.PutEvent(w.ctx, changed, saved.Version)
	if wantKind(t, err, solstice.KindConflict); !strings.Contains(err.Error(), "changed by rollout:other-ramp") {
		t.Errorf("stale after another rollout: %v", err)
	}
	changed.Phases[1].Changes[0].BaseRevision = w.config("winter-festival").Revision
	saved, err = w.svc.PutEvent(w.ctx, changed, saved.Version)
	w.must(err)

	wantKind(t, w.svc.DeleteEvent(w.ctx, env, saved.Key, saved.Version), solstice.KindConflict) // live
	saved, err = w.svc.CancelEvent(w.ctx, env, saved.Key, saved.Version)
	w.must(err)
	_, err = w.svc.CancelEvent(w.ctx, env, saved.Key, saved.Version)
	wantKind(t, err, solstice.KindConflict)
	w.tick(utc(2026, 12, 18, 9, 30))
	if c := w.config("festival-banner").Config; c.Enabled || c.DefaultVariant != "off" {
		t.Errorf("banner after the cancellation: enabled %v serving %s; want it set back (disabled, alice's default)", c.Enabled, c.DefaultVariant)
	}
	if p := w.plan("winter-ramp"); p.Status != rollout.StatusCancelled {
		t.Errorf("the event's plan is %s after the event was cancelled, want cancelled", p.Status)
	}
	d, err := w.svc.Detail(w.ctx, env, saved.Key)
	w.must(err)
	if d.State.Status != rollout.EventEnded {
		t.Errorf("state %+v, want ended", d.State)
	}
	w.must(w.svc.DeleteEvent(w.ctx, env, saved.Key, saved.Version))
}

// cloneEvent returns a deep copy of e.
func cloneEvent(e rollout.Event) rollout.Event {
	var out rollout.Event
	if err := json.Unmarshal([]byte(mustJSON(e)), &out); err != nil {
		panic(err)
	}
	return out
}
