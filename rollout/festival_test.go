package rollout_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
)

// compareToPreview evaluates both flags for every player on the live
// configuration and on the preview set, and reports differences.
func compareToPreview(t *testing.T, w *world, preview flags.Set, at time.Time, ps []flags.Context) {
	t.Helper()
	want, err := flags.Compile(preview)
	if err != nil {
		t.Fatalf("compile the preview for %s: %v", at, err)
	}
	got, err := w.flags.Compiled(w.ctx, env)
	w.must(err)
	bad := 0
	for _, flag := range []string{"festival-banner", "winter-festival"} {
		for _, p := range ps {
			a, b := flags.Evaluate(want, flag, p), flags.Evaluate(got, flag, p)
			if a.Variant != b.Variant || !cmp.Equal(a.Value, b.Value) || a.Reason != b.Reason {
				if bad++; bad <= 3 {
					t.Errorf("at %s, %s for %s: previewed %s %v (%s), got %s %v (%s)", at, flag, p[flags.TargetingKey], a.Variant, a.Value, a.Reason, b.Variant, b.Value, b.Reason)
				}
			}
		}
	}
	if bad > 3 {
		t.Errorf("at %s: %d more differences", at, bad-3)
	}
}

// TestPreviewEqualsActual previews, before an event starts, the
// configuration at every half hour of it (across the spring
// daylight-saving change, with a phase at a local time that does not exist
// that night), then lets the clock run through the event and checks that
// what the evaluator serves at each moment is what was previewed.
func TestPreviewEqualsActual(t *testing.T) {
	t0 := utc(2026, 3, 27, 0, 0)
	clock := &fakeClock{t: t0}
	w := newWorld(t, openDB(t, clock), clock)
	p := ramp()
	p.Gates = rollout.Gates{}
	for i := range p.Steps {
		p.Steps[i].MinDuration = rollout.Duration(12 * time.Hour)
	}
	_, err := w.svc.PutPlan(w.ctx, p, 0)
	w.must(err)
	ev := rollout.Event{Key: "spring-festival", Environment: env, Name: "Spring Festival", TimeZone: "Europe/Paris",
		Start: rollout.Local(2026, 3, 27, 12, 0), End: rollout.Local(2026, 4, 3, 12, 0),
		Phases: []rollout.Phase{
			{Name: "teaser", Start: rollout.Local(2026, 3, 27, 12, 0), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
			{Name: "live", Start: rollout.Local(2026, 3, 29, 2, 30), Changes: []rollout.Change{{Flag: "winter-festival", Rollout: "winter-ramp"}}},
			{Name: "wind-down", Start: rollout.Local(2026, 4, 2, 12, 0), Changes: []rollout.Change{
				{Flag: "festival-banner", Serve: "off"},
				{Flag: "winter-festival", Values: map[string]json.RawMessage{"festival": json.RawMessage(`{"festival":true,"xp":1}`)}},
			}},
		},
		EndState: []rollout.Change{{Flag: "festival-banner", Enabled: &off}},
	}
	_, err = w.svc.PutEvent(w.ctx, ev, 0)
	w.must(err)

	tl, err := w.svc.Timeline(w.ctx, env)
	w.must(err)
	ps := players(150)
	end := utc(2026, 4, 4, 0, 0)
	sawRamp := map[int]bool{}
	for at := t0; !at.After(end); at = at.Add(30 * time.Minute) {
		preview, err := tl.At(at)
		w.must(err)
		w.tick(at)
		compareToPreview(t, w, preview, at, ps)
		if s := w.config("winter-festival").Config.Split; s != nil {
			sawRamp[s.Weights[0].Weight] = true
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if diff := cmp.Diff(map[int]bool{500: true, 2500: true, 10000: true}, sawRamp); diff != "" {
		t.Errorf("treatment weights seen (-want +got):\n%s", diff)
	}
	if c := w.config("festival-banner").Config; c.Enabled || c.DefaultVariant != "on" {
		t.Errorf("banner after the event: enabled %v serving %s; want the end state (off) with its old default", c.Enabled, c.DefaultVariant)
	}
}

// TestWinterFestival runs the Winter Festival from start to end with a
// fast clock: a banner teaser, then the festival config turned on through a
// 5% → 25% → 100% ramp gated by a reject-rate guardrail, a wind-down, and
// the end a week after the start, which sets everything back. Once it runs
// cleanly (and what a player gets on day 3 is what the preview said before
// the event); once with the guardrail tripping in the middle of the ramp.
func TestWinterFestival(t *testing.T) {
	for _, trip := range []bool{false, true} {
		name := "completes"
		if trip {
			name = "guardrail trip rolls back"
		}
		t.Run(name, func(t *testing.T) {
			begin := utc(2026, 12, 17, 9, 0)
			clock := &fakeClock{t: begin}
			w := newWorld(t, openDB(t, clock), clock)
			_, err := w.svc.PutPlan(w.ctx, ramp(), 0)
			w.must(err)
			ev, err := w.svc.PutEvent(w.ctx, festivalEvent(), 0)
			w.must(err)
			before := map[string]flags.Config{"festival-banner": w.config("festival-banner").Config, "winter-festival": w.config("winter-festival").Config}

			// Day 3 of the festival, noon in Paris: the ramp's second step.
			day3 := utc(2026, 12, 20, 11, 0)
			ps := players(400)
			previewDay3, err := w.svc.PreviewSet(w.ctx, env, day3)
			w.must(err)
			r, err := w.svc.Preview(w.ctx, env, day3, "winter-festival", ps[0])
			w.must(err)
			if r.Reason != flags.ReasonSplit {
				t.Errorf("the day-3 preview for player-0 = %+v, want a split", r)
			}
			cal, err := w.svc.Calendar(w.ctx, env, begin, utc(2026, 12, 26, 0, 0))
			w.must(err)
			if len(cal.Events) != 1 || cal.Events[0].Key != "winter-festival" || len(cal.Entries) != 8 {
				t.Errorf("calendar before the event: %d events, %d entries; want the festival and 8 entries", len(cal.Events), len(cal.Entries))
			}

			tripAt := utc(2026, 12, 19, 23, 0) // 6 hours into the 25% step
			tripped := false
			for at := utc(2026, 12, 18, 8, 0); !at.After(utc(2026, 12, 25, 10, 0)); at = at.Add(15 * time.Minute) {
				clock.Set(at)
				// The guardrail job: each new test reaches its minimum
				// sample within a tick; once, in the trip run, harm is
				// established.
				if st, err := w.db.State(w.ctx, guardrailRef); err == nil && st.Phase == guardrails.PhaseCollecting {
					w.setGuardrail(guardrails.PhaseMonitoring, "the minimum sample is reached")
				}
				if trip && !at.Before(tripAt) && !tripped {
					w.setGuardrail(guardrails.PhaseTripped, "reject rate 3.1% against 2.0% for control: harm established")
					tripped = true
				}
				w.tick(at)

				if at.Equal(day3) {
					if !trip {
						compareToPreview(t, w, previewDay3, at, ps)
					}
					share := 0
					for _, p := range ps {
						if w.eval("winter-festival", p).Variant == "festival" {
							share++
						}
					}
					if trip && share != 0 {
						t.Errorf("on day 3, after the trip, %d of %d players get the festival, want none", share, len(ps))
					}
					if !trip && (share < 60 || share > 140) {
						t.Errorf("on day 3, %d of %d players get the festival, want about 25%%", share, len(ps))
					}
				}
			}

			p := w.plan("winter-ramp")
			var moves []string
			for _, h := range p.History {
				moves = append(moves, string(h.From)+"→"+string(h.To)+" by "+h.Actor)
			}
			want := []string{"draft→running by event:winter-festival", "running→running by rollout:winter-ramp", "running→running by rollout:winter-ramp", "running→completed by rollout:winter-ramp"}
			if trip {
				want = []string{"draft→running by event:winter-festival", "running→running by rollout:winter-ramp", "running→rolled_back by rollout:winter-ramp"}
			}
			if diff := cmp.Diff(want, moves); diff != "" {
				t.Errorf("plan history (-want +got):\n%s", diff)
			}
			if trip {
				h := p.History[2]
				if p.Status != rollout.StatusRolledBack || !h.Time.Equal(tripAt) || !strings.Contains(h.Reason, "guardrail reject-rate tripped: reject rate 3.1%") || h.Revision == 0 {
					t.Errorf("rollback: %s at %s (%q), revision %d; want rolled back at the first tick after the trip, with a revision", p.Status, h.Time, h.Reason, h.Revision)
				}
				rev, err := w.flags.GetRevision(w.ctx, env, h.Revision)
				w.must(err)
				if rev.Author != "rollout:winter-ramp" || !strings.HasPrefix(rev.Message, "Rollout winter-ramp rolled back: guardrail reject-rate tripped") {
					t.Errorf("rollback revision by %s: %q", rev.Author, rev.Message)
				}
			} else {
				if st := w.guardrailState(); st.Test != 3 || !st.TestStarted.Equal(p.History[2].Time) {
					t.Errorf("guardrail test %d since %s; want test 3, started with step 3 at %s", st.Test, st.TestStarted, p.History[2].Time)
				}
				for i, h := range p.History[:3] {
					if want := utc(2026, 12, 18, 17, 0).Add(time.Duration(i) * 24 * time.Hour); !h.Time.Equal(want) {
						t.Errorf("step %d started at %s, want %s", i+1, h.Time, want)
					}
				}
			}

			// The end set both flags back to what they were before the event.
			for flag, c := range before {
				a, _ := json.Marshal(c)
				b, _ := json.Marshal(w.config(flag).Config)
				if string(a) != string(b) {
					t.Errorf("%s after the event:\n%s\nwant what it was before:\n%s", flag, b, a)
				}
			}
			d, err := w.svc.Detail(w.ctx, env, ev.Key)
			w.must(err)
			if d.State.Status != rollout.EventEnded || len(d.Records) != 4 {
				t.Fatalf("event state %+v with %d records, want ended with 4", d.State, len(d.Records))
			}
			for _, r := range d.Records {
				if r.Status != rollout.StatusDone || r.Late != 0 {
					t.Errorf("record %s: %s late %s (%s)", r.ID, r.Status, r.Late, r.Outcome)
				}
			}
			cal, err = w.svc.Calendar(w.ctx, env, begin, utc(2026, 12, 26, 0, 0))
			w.must(err)
			kinds := map[rollout.EntryKind]int{}
			for _, e := range cal.Entries {
				kinds[e.Kind]++
				if e.Status != rollout.EntryDone {
					t.Errorf("calendar entry after the event %+v, want done", e)
				}
			}
			wantKinds := map[rollout.EntryKind]int{rollout.EntryPhase: 3, rollout.EntryEnd: 1, rollout.EntryPlanStart: 1, rollout.EntryPlanStep: 2, rollout.EntryPlanComplete: 1}
			if trip {
				wantKinds = map[rollout.EntryKind]int{rollout.EntryPhase: 3, rollout.EntryEnd: 1, rollout.EntryPlanStart: 1, rollout.EntryPlanStep: 1, rollout.EntryPlanRollback: 1}
			}
			if diff := cmp.Diff(wantKinds, kinds); diff != "" {
				t.Errorf("calendar entries by kind (-want +got):\n%s", diff)
			}
		})
	}
}
