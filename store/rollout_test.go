package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/store"
)

// rolloutSetup creates environments and boolean flags for the rollout
// store tests.
func rolloutSetup(t *testing.T, db *store.DB, envs []string, flagKeys ...string) {
	t.Helper()
	createEnv(t, db, envs...)
	var w flags.Write
	for _, k := range flagKeys {
		w.CreateFlags = append(w.CreateFlags, flags.Flag{Key: k, Name: k, Type: flags.TypeBoolean, Version: 1, CreatedAt: t0, UpdatedAt: t0})
	}
	mustWrite(t, db, w)
}

func rolloutPlan(env, id, flag string) rollout.Plan {
	return rollout.Plan{
		ID: id, Environment: env, Flag: flag, Treatment: "on", Control: "control", Baseline: "off",
		Steps:  []rollout.Step{{Weight: 500, MinDuration: rollout.Duration(time.Hour)}, {Weight: 10000}},
		Status: rollout.StatusDraft, Step: -1,
	}
}

func rolloutEvent(env, key, uid string, start, end rollout.LocalTime) rollout.Event {
	on := true
	return rollout.Event{
		Key: key, Environment: env, UID: uid, Name: key, TimeZone: "Europe/Paris", Start: start, End: end,
		Phases: []rollout.Phase{{Name: "live", Start: start, Changes: []rollout.Change{{Flag: "winter", Enabled: &on}}}},
	}
}

func rolloutAudit(action, resource string) solstice.AuditEntry {
	return solstice.AuditEntry{Actor: solstice.Actor{Name: "alice", Kind: "user"}, Action: action, Resource: resource}
}

func TestRolloutPlans(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		rolloutSetup(t, db, []string{"production", "staging"}, "winter", "summer")
		p := rolloutPlan("production", "ramp", "winter")

		created, err := db.PutPlan(ctx, p, 0, []solstice.AuditEntry{rolloutAudit("rollout.create", "rollout/ramp")})
		if err != nil {
			t.Fatal(err)
		}
		want := p
		want.Version, want.CreatedAt, want.UpdatedAt = 1, t0us, t0us
		if diff := cmp.Diff(want, created); diff != "" {
			t.Errorf("created plan (-want +got):\n%s", diff)
		}
		got, err := db.GetPlan(ctx, "production", "ramp")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(created, got); diff != "" {
			t.Errorf("GetPlan (-created +got):\n%s", diff)
		}

		_, err = db.PutPlan(ctx, p, 0, nil)
		wantKind(t, err, solstice.KindConflict)
		_, err = db.PutPlan(ctx, rolloutPlan("production", "x", "nope"), 0, nil)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.PutPlan(ctx, rolloutPlan("nowhere", "x", "winter"), 0, nil)
		wantKind(t, err, solstice.KindNotFound)
		_, err = db.PutPlan(ctx, rolloutPlan("production", "", "winter"), 0, nil)
		wantKind(t, err, solstice.KindInvalid)
		_, err = db.PutPlan(ctx, p, -7, nil)
		wantKind(t, err, solstice.KindInvalid)

		// Updates swap versions.
		running := created
		running.Status, running.Step = rollout.StatusRunning, 0
		running.Pending = &rollout.Pending{ID: "plan/production/ramp/2", Kind: rollout.PendingStep, ClaimedBy: "a", ClaimedAt: t0us}
		v2, err := db.PutPlan(ctx, running, 1, []solstice.AuditEntry{rolloutAudit("rollout.start", "rollout/ramp")})
		if err != nil || v2.Version != 2 || v2.Status != rollout.StatusRunning || v2.CreatedAt != t0us {
			t.Fatalf("update = %+v, %v; want version 2, running", v2, err)
		}
		_, err = db.PutPlan(ctx, running, 1, nil)
		wantKind(t, err, solstice.KindPreconditionFailed)
		_, err = db.PutPlan(ctx, rolloutPlan("production", "ghost", "winter"), 3, nil)
		wantKind(t, err, solstice.KindNotFound)
		v3, err := db.PutPlan(ctx, v2, flags.AnyVersion, nil)
		if err != nil || v3.Version != 3 {
			t.Fatalf("update with any version = %d, %v; want 3", v3.Version, err)
		}

		// Lists and their filters.
		if _, err := db.PutPlan(ctx, rolloutPlan("production", "a-first", "summer"), 0, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutPlan(ctx, rolloutPlan("staging", "ramp", "winter"), 0, nil); err != nil {
			t.Fatal(err)
		}
		done := rolloutPlan("staging", "old", "winter")
		done.Status = rollout.StatusCompleted
		if _, err := db.PutPlan(ctx, done, 0, nil); err != nil {
			t.Fatal(err)
		}
		ids := func(f rollout.PlanFilter) []string {
			t.Helper()
			ps, err := db.ListPlans(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, p := range ps {
				out = append(out, p.Environment+"/"+p.ID)
			}
			return out
		}
		for _, tc := range []struct {
			f    rollout.PlanFilter
			want []string
		}{
			{rollout.PlanFilter{}, []string{"production/a-first", "production/ramp", "staging/old", "staging/ramp"}},
			{rollout.PlanFilter{Environment: "staging"}, []string{"staging/old", "staging/ramp"}},
			{rollout.PlanFilter{Flag: "summer"}, []string{"production/a-first"}},
			{rollout.PlanFilter{Active: true}, []string{"production/ramp"}},
		} {
			if diff := cmp.Diff(tc.want, ids(tc.f)); diff != "" {
				t.Errorf("ListPlans(%+v) (-want +got):\n%s", tc.f, diff)
			}
		}

		// A finished plan with a change still pending stays active.
		rb := v3
		rb.Status = rollout.StatusRolledBack
		if _, err := db.PutPlan(ctx, rb, 3, nil); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"production/ramp"}, ids(rollout.PlanFilter{Active: true})); diff != "" {
			t.Errorf("active plans with a pending rollback (-want +got):\n%s", diff)
		}

		// Deletes check versions; audit entries were written with the changes.
		wantKind(t, db.DeletePlan(ctx, "staging", "ramp", 9, rolloutAudit("rollout.delete", "rollout/ramp")), solstice.KindPreconditionFailed)
		wantKind(t, db.DeletePlan(ctx, "staging", "nope", 1, rolloutAudit("rollout.delete", "rollout/nope")), solstice.KindNotFound)
		if err := db.DeletePlan(ctx, "staging", "ramp", 1, rolloutAudit("rollout.delete", "rollout/ramp")); err != nil {
			t.Fatal(err)
		}
		_, err = db.GetPlan(ctx, "staging", "ramp")
		wantKind(t, err, solstice.KindNotFound)
		entries, err := db.ListAudit(ctx, solstice.AuditFilter{Resource: "rollout/ramp"})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range entries {
			actions = append(actions, e.Action)
		}
		if diff := cmp.Diff([]string{"rollout.delete", "rollout.start", "rollout.create"}, actions); diff != "" {
			t.Errorf("audit actions (-want +got):\n%s", diff)
		}
	})
}

func TestRolloutPlanSwapRaces(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		rolloutSetup(t, db, []string{"production"}, "winter")
		p, err := db.PutPlan(ctx, rolloutPlan("production", "ramp", "winter"), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		const writers = 12
		_, errs := parallel(writers, func(i int) (rollout.Plan, error) {
			next := p
			next.Reason = fmt.Sprintf("writer %d", i)
			return db.PutPlan(ctx, next, p.Version, []solstice.AuditEntry{rolloutAudit("rollout.race", "rollout/ramp")})
		})
		wins := 0
		for _, err := range errs {
			switch solstice.ErrorKind(err) {
			case "":
				wins++
			case solstice.KindPreconditionFailed:
			default:
				t.Errorf("writer error %v, want none or precondition failed", err)
			}
		}
		if wins != 1 {
			t.Errorf("%d writers won the swap from version 1, want exactly 1", wins)
		}
		if n := len(mustAudit(t, db, "rollout.race")); n != 1 {
			t.Errorf("%d audit entries for the race, want 1 (the loser's are rolled back)", n)
		}
	})
}

func mustAudit(t *testing.T, db *store.DB, action string) []solstice.AuditEntry {
	t.Helper()
	entries, err := db.ListAudit(t.Context(), solstice.AuditFilter{Action: action})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestRolloutDeletingAFlagDeletesItsPlans(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		rolloutSetup(t, db, []string{"production"}, "winter")
		if _, err := db.PutPlan(ctx, rolloutPlan("production", "ramp", "winter"), 0, nil); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, db, flags.Write{DeleteFlags: []flags.FlagDelete{{Key: "winter", Expect: 1}}})
		_, err := db.GetPlan(ctx, "production", "ramp")
		wantKind(t, err, solstice.KindNotFound)
	})
}

func TestRolloutEvents(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		rolloutSetup(t, db, []string{"production", "staging"}, "winter")
		dec := rolloutEvent("production", "winter-festival", "u1", rollout.Local(2026, 12, 18, 10, 0), rollout.Local(2026, 12, 25, 10, 0))
		created, err := db.PutEvent(ctx, dec, 0, []solstice.AuditEntry{rolloutAudit("event.create", "event/winter-festival")})
		if err != nil {
			t.Fatal(err)
		}
		want := dec
		want.Version, want.CreatedAt, want.UpdatedAt = 1, t0us, t0us
		if diff := cmp.Diff(want, created); diff != "" {
			t.Errorf("created event (-want +got):\n%s", diff)
		}
		got, err := db.GetEvent(ctx, "production", "winter-festival")
		if err != nil || !cmp.Equal(created, got) {
			t.Fatalf("GetEvent = %+v, %v; want %+v", got, err, created)
		}

		_, err = db.PutEvent(ctx, dec, 0, nil)
		wantKind(t, err, solstice.KindConflict)
		_, err = db.PutEvent(ctx, rolloutEvent("production", "other", "u1", dec.Start, dec.End), 0, nil)
		wantKind(t, err, solstice.KindConflict) // the UID is taken
		_, err = db.PutEvent(ctx, rolloutEvent("nowhere", "x", "u9", dec.Start, dec.End), 0, nil)
		wantKind(t, err, solstice.KindNotFound)
		bad := rolloutEvent("production", "x", "u9", dec.Start, dec.End)
		bad.TimeZone = "Mars/Olympus"
		_, err = db.PutEvent(ctx, bad, 0, nil)
		wantKind(t, err, solstice.KindInvalid)

		upd := created
		upd.Name = "Winter Festival"
		v2, err := db.PutEvent(ctx, upd, 1, nil)
		if err != nil || v2.Version != 2 || v2.Name != "Winter Festival" {
			t.Fatalf("update = %+v, %v", v2, err)
		}
		_, err = db.PutEvent(ctx, upd, 1, nil)
		wantKind(t, err, solstice.KindPreconditionFailed)

		spring := rolloutEvent("production", "spring", "u2", rollout.Local(2027, 3, 20, 9, 0), rollout.Local(2027, 3, 27, 9, 0))
		if _, err := db.PutEvent(ctx, spring, 0, nil); err != nil {
			t.Fatal(err)
		}
		early := rolloutEvent("staging", "early", "u3", rollout.Local(2026, 1, 1, 0, 0), rollout.Local(2026, 1, 2, 0, 0))
		if _, err := db.PutEvent(ctx, early, 0, nil); err != nil {
			t.Fatal(err)
		}
		keys := func(f rollout.EventFilter) []string {
			t.Helper()
			es, err := db.ListEvents(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, e := range es {
				out = append(out, e.Environment+"/"+e.Key)
			}
			return out
		}
		paris, _ := time.LoadLocation("Europe/Paris")
		for _, tc := range []struct {
			name string
			f    rollout.EventFilter
			want []string
		}{
			{"all", rollout.EventFilter{}, []string{"production/winter-festival", "production/spring", "staging/early"}},
			{"environment", rollout.EventFilter{Environment: "production"}, []string{"production/winter-festival", "production/spring"}},
			{"overlapping", rollout.EventFilter{From: time.Date(2026, 12, 24, 0, 0, 0, 0, paris), To: time.Date(2027, 3, 20, 9, 0, 0, 0, paris)}, []string{"production/winter-festival"}},
			{"end is exclusive", rollout.EventFilter{From: time.Date(2026, 12, 25, 10, 0, 0, 0, paris)}, []string{"production/spring"}},
			{"open", rollout.EventFilter{Open: true}, []string{"production/winter-festival", "production/spring", "staging/early"}},
		} {
			if diff := cmp.Diff(tc.want, keys(tc.f)); diff != "" {
				t.Errorf("%s: ListEvents(%+v) (-want +got):\n%s", tc.name, tc.f, diff)
			}
		}

		// Recording an event's end closes it.
		r := rollout.Record{ID: "event/staging/u3/end", Environment: "staging", EventUID: "u3", Event: "early", Kind: rollout.KindEventEnd,
			Due: t0, ClaimedBy: "s1", ClaimedAt: t0}
		claimed, ok, err := db.ClaimChange(ctx, r, t0.Add(-time.Minute))
		if err != nil || !ok {
			t.Fatalf("claim = %v, %v", ok, err)
		}
		claimed.Status, claimed.AppliedAt = rollout.StatusDone, t0
		if _, err := db.FinishChange(ctx, claimed, nil); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"production/winter-festival", "production/spring"}, keys(rollout.EventFilter{Open: true})); diff != "" {
			t.Errorf("open events after staging/early ended (-want +got):\n%s", diff)
		}

		wantKind(t, db.DeleteEvent(ctx, "production", "spring", 5, rolloutAudit("event.delete", "event/spring")), solstice.KindPreconditionFailed)
		if err := db.DeleteEvent(ctx, "production", "spring", 1, rolloutAudit("event.delete", "event/spring")); err != nil {
			t.Fatal(err)
		}
		_, err = db.GetEvent(ctx, "production", "spring")
		wantKind(t, err, solstice.KindNotFound)
	})
}

func TestRolloutClaimChange(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		rolloutSetup(t, db, []string{"production"})
		r := rollout.Record{ID: "event/production/u1/phase/live", Environment: "production", EventUID: "u1", Event: "fest",
			Kind: rollout.KindPhaseStart, Phase: "live", Due: t0, ClaimedBy: "s1", ClaimedAt: t0, Head: 7}
		stale := t0.Add(-time.Minute)

		first, ok, err := db.ClaimChange(ctx, r, stale)
		if err != nil || !ok || first.Attempt != 1 || first.Status != rollout.StatusClaimed || first.Head != 7 {
			t.Fatalf("first claim = %+v, %v, %v; want attempt 1, claimed", first, ok, err)
		}
		other := r
		other.ClaimedBy = "s2"
		if got, ok, err := db.ClaimChange(ctx, other, stale); err != nil || ok || got.ClaimedBy != "s1" {
			t.Fatalf("claim of a fresh claim by another = %+v, %v, %v; want s1's, false", got, ok, err)
		}
		again, ok, err := db.ClaimChange(ctx, r, stale)
		if err != nil || !ok || again.Attempt != 2 {
			t.Fatalf("claim again by the same claimant = %+v, %v, %v; want attempt 2", again, ok, err)
		}
		// Once s1's claim is stale, s2 takes it over; s1 can no longer finish.
		other.ClaimedAt = t0.Add(2 * time.Minute)
		took, ok, err := db.ClaimChange(ctx, other, t0.Add(time.Minute))
		if err != nil || !ok || took.Attempt != 3 || took.ClaimedBy != "s2" || took.Head != 7 {
			t.Fatalf("takeover = %+v, %v, %v; want attempt 3 by s2 keeping head 7", took, ok, err)
		}
		lost := again
		lost.Status, lost.AppliedAt = rollout.StatusDone, t0
		_, err = db.FinishChange(ctx, lost, nil)
		wantKind(t, err, solstice.KindConflict)
		_, err = db.FinishChange(ctx, took, nil)
		wantKind(t, err, solstice.KindInvalid) // not a final status

		fin := took
		fin.Status, fin.AppliedAt, fin.Late, fin.Outcome = rollout.StatusDone, t0.Add(3*time.Minute), rollout.Duration(3*time.Minute), "phase live started"
		fin.Writes = []rollout.Write{{Flag: "winter", Revision: 8, BeforeRevision: 7, Before: &flags.Config{DefaultVariant: "off"}}}
		done, err := db.FinishChange(ctx, fin, []solstice.AuditEntry{rolloutAudit("event.phase_start", "event/fest")})
		if err != nil {
			t.Fatal(err)
		}
		want := fin
		want.ClaimedAt, want.AppliedAt = dbTimeOf(fin.ClaimedAt), dbTimeOf(fin.AppliedAt)
		want.Due = t0us
		if diff := cmp.Diff(want, done); diff != "" {
			t.Errorf("finished record (-want +got):\n%s", diff)
		}
		if got, ok, err := db.ClaimChange(ctx, r, t0.Add(time.Hour)); err != nil || ok || got.Status != rollout.StatusDone {
			t.Fatalf("claim of a finished change = %+v, %v, %v; want done, false", got, ok, err)
		}
		recs, err := db.ListChanges(ctx, rollout.RecordFilter{Environment: "production", EventUID: "u1"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]rollout.Record{done}, recs); diff != "" {
			t.Errorf("ListChanges (-want +got):\n%s", diff)
		}
		if n := len(mustAudit(t, db, "event.phase_start")); n != 1 {
			t.Errorf("%d audit entries, want 1", n)
		}

		bad := r
		bad.ID = "event/nowhere/u1/end"
		bad.Environment = "nowhere"
		_, _, err = db.ClaimChange(ctx, bad, stale)
		wantKind(t, err, solstice.KindNotFound)
		bad.ClaimedBy = ""
		_, _, err = db.ClaimChange(ctx, bad, stale)
		wantKind(t, err, solstice.KindInvalid)
	})
}

func dbTimeOf(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func TestRolloutClaimChangeRaces(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		rolloutSetup(t, db, []string{"production"})
		const claimants = 12
		for round, staleClaim := range []bool{false, true} {
			id := fmt.Sprintf("event/production/u1/phase/p%d", round)
			if staleClaim { // a claim left by a crashed scheduler, stale for everyone
				old := rollout.Record{ID: id, Environment: "production", EventUID: "u1", Kind: rollout.KindPhaseStart, Due: t0, ClaimedBy: "dead", ClaimedAt: t0.Add(-time.Hour)}
				if _, ok, err := db.ClaimChange(ctx, old, t0.Add(-2*time.Hour)); err != nil || !ok {
					t.Fatalf("seed claim: %v, %v", ok, err)
				}
			}
			results, errs := parallel(claimants, func(i int) (bool, error) {
				r := rollout.Record{ID: id, Environment: "production", EventUID: "u1", Kind: rollout.KindPhaseStart, Due: t0,
					ClaimedBy: fmt.Sprintf("s%d", i), ClaimedAt: t0}
				_, ok, err := db.ClaimChange(ctx, r, t0.Add(-time.Minute))
				return ok, err
			})
			wins := 0
			for i, ok := range results {
				if errs[i] != nil {
					t.Fatalf("claimant %d: %v", i, errs[i])
				}
				if ok {
					wins++
				}
			}
			if wins != 1 {
				t.Errorf("stale=%v: %d claimants won, want exactly 1", staleClaim, wins)
			}
		}
	})
}

// TestRolloutPlanDecision checks that an experiment's decision is stored
// beside the plan, written once: a later write with another decision, or
// none, keeps the first, however many writers race to write one.
func TestRolloutPlanDecision(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		rolloutSetup(t, db, []string{"production"}, "winter")
		p := rolloutPlan("production", "exp", "winter")
		p.Experiment = true
		created, err := db.PutPlan(ctx, p, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if created.ExperimentDecision != nil || !created.Experiment {
			t.Fatalf("created experiment: decision %+v, experiment %t; want none, true", created.ExperimentDecision, created.Experiment)
		}

		decision := func(o rollout.Outcome, reason string) *rollout.ExperimentDecision {
			return &rollout.ExperimentDecision{Outcome: o, Reason: reason, Environment: "production", Plan: "exp", Flag: "winter",
				Status: rollout.StatusCompleted, EndedAt: t0us, Timeline: []rollout.HistoryEntry{}, Guardrails: []rollout.GuardrailEvidence{
					{Key: "reject-rate", Metric: "reject_rate", Effect: -0.001, Lower: -0.004, Upper: 0.002, PValue: 0.83, Incidents: []rollout.IncidentSummary{}}}}
		}
		// Writers race to end the plan, each with a decision of its own:
		// one wins, and its decision is the one stored.
		const writers = 8
		won, errs := parallel(writers, func(i int) (rollout.Plan, error) {
			next := created
			next.Status = rollout.StatusCompleted
			next.ExperimentDecision = decision(rollout.OutcomeShip, fmt.Sprintf("writer %d", i))
			return db.PutPlan(ctx, next, created.Version, nil)
		})
		var first *rollout.ExperimentDecision
		for i, err := range errs {
			switch solstice.ErrorKind(err) {
			case "":
				if first != nil {
					t.Errorf("two writers won the swap")
				}
				first = won[i].ExperimentDecision
			case solstice.KindPreconditionFailed:
			default:
				t.Errorf("writer error %v, want none or precondition failed", err)
			}
		}
		if first == nil {
			t.Fatal("no writer stored a decision")
		}
		got, err := db.GetPlan(ctx, "production", "exp")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, got.ExperimentDecision); diff != "" {
			t.Errorf("stored decision (-winner's +got):\n%s", diff)
		}

		// Later writes neither replace nor remove it.
		for _, tc := range []struct {
			name string
			d    *rollout.ExperimentDecision
		}{{"another decision", decision(rollout.OutcomeRollBack, "a retry's")}, {"no decision", nil}} {
			next := got
			next.Reason = "a later write"
			next.ExperimentDecision = tc.d
			got, err = db.PutPlan(ctx, next, got.Version, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(first, got.ExperimentDecision); diff != "" {
				t.Errorf("decision after a write with %s (-first +got):\n%s", tc.name, diff)
			}
		}
		ps, err := db.ListPlans(ctx, rollout.PlanFilter{Environment: "production"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 1 || ps[0].ExperimentDecision == nil || ps[0].ExperimentDecision.Reason != first.Reason {
			t.Errorf("ListPlans: %+v, want the plan with its decision", ps)
		}
	})
}
