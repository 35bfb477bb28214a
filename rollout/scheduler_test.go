package rollout_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
)

var on, off = true, false

type bannerCheck struct {
	at      time.Time
	enabled bool
	serve   string // the banner's default variant
}

// TestSchedulerAtWindowBoundariesAcrossDaylightSaving runs events whose
// local times fall on daylight-saving changes and checks the banner flag a
// second before and at each boundary.
func TestSchedulerAtWindowBoundariesAcrossDaylightSaving(t *testing.T) {
	for _, tc := range []struct {
		name   string
		event  rollout.Event
		checks []bannerCheck
	}{{
		name: "Paris, the autumn change: 02:30 happens twice, the first counts",
		event: rollout.Event{Key: "halloween", Environment: env, Name: "Halloween", TimeZone: "Europe/Paris",
			Start: rollout.Local(2026, 10, 24, 10, 0), End: rollout.Local(2026, 10, 26, 10, 0),
			Phases: []rollout.Phase{
				{Name: "on", Start: rollout.Local(2026, 10, 24, 10, 0), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
				{Name: "dark", Start: rollout.Local(2026, 10, 25, 2, 30), Changes: []rollout.Change{{Flag: "festival-banner", Serve: "off"}}},
			}},
		checks: []bannerCheck{
			{utc(2026, 10, 24, 8, 0).Add(-time.Second), false, "on"},
			{utc(2026, 10, 24, 8, 0), true, "on"}, // 10:00 CEST
			{utc(2026, 10, 25, 0, 30).Add(-time.Second), true, "on"},
			{utc(2026, 10, 25, 0, 30), true, "off"}, // 02:30 CEST, the first 02:30
			{utc(2026, 10, 26, 9, 0).Add(-time.Second), true, "off"},
			{utc(2026, 10, 26, 9, 0), false, "on"}, // 10:00 CET: 49 hours after the start
		},
	}, {
		name: "Paris, the spring change: 02:30 does not happen, 03:30 does",
		event: rollout.Event{Key: "spring", Environment: env, Name: "Spring", TimeZone: "Europe/Paris",
			Start: rollout.Local(2026, 3, 28, 10, 0), End: rollout.Local(2026, 3, 30, 10, 0),
			Phases: []rollout.Phase{
				{Name: "on", Start: rollout.Local(2026, 3, 28, 10, 0), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
				{Name: "night", Start: rollout.Local(2026, 3, 29, 2, 30), Changes: []rollout.Change{{Flag: "festival-banner", Serve: "off"}}},
			}},
		checks: []bannerCheck{
			{utc(2026, 3, 28, 9, 0).Add(-time.Second), false, "on"},
			{utc(2026, 3, 28, 9, 0), true, "on"},
			{utc(2026, 3, 29, 1, 30).Add(-time.Second), true, "on"},
			{utc(2026, 3, 29, 1, 30), true, "off"}, // 03:30 CEST
			{utc(2026, 3, 30, 8, 0).Add(-time.Second), true, "off"},
			{utc(2026, 3, 30, 8, 0), false, "on"}, // 10:00 CEST: 47 hours after the start
		},
	}, {
		name: "New York, the spring change",
		event: rollout.Event{Key: "spring-sale", Environment: env, Name: "Spring sale", TimeZone: "America/New_York",
			Start: rollout.Local(2026, 3, 7, 12, 0), End: rollout.Local(2026, 3, 9, 12, 0),
			Phases: []rollout.Phase{
				{Name: "on", Start: rollout.Local(2026, 3, 7, 12, 0), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
				{Name: "night", Start: rollout.Local(2026, 3, 8, 2, 30), Changes: []rollout.Change{{Flag: "festival-banner", Serve: "off"}}},
			}},
		checks: []bannerCheck{
			{utc(2026, 3, 7, 17, 0), true, "on"}, // 12:00 EST
			{utc(2026, 3, 8, 7, 30).Add(-time.Second), true, "on"},
			{utc(2026, 3, 8, 7, 30), true, "off"}, // 03:30 EDT
			{utc(2026, 3, 9, 16, 0).Add(-time.Second), true, "off"},
			{utc(2026, 3, 9, 16, 0), false, "on"}, // 12:00 EDT
		},
	}, {
		name: "New York, the autumn change",
		event: rollout.Event{Key: "harvest", Environment: env, Name: "Harvest", TimeZone: "America/New_York",
			Start: rollout.Local(2026, 10, 31, 12, 0), End: rollout.Local(2026, 11, 2, 12, 0),
			Phases: []rollout.Phase{
				{Name: "on", Start: rollout.Local(2026, 10, 31, 12, 0), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
				{Name: "night", Start: rollout.Local(2026, 11, 1, 1, 30), Changes: []rollout.Change{{Flag: "festival-banner", Serve: "off"}}},
			}},
		checks: []bannerCheck{
			{utc(2026, 10, 31, 16, 0), true, "on"}, // 12:00 EDT
			{utc(2026, 11, 1, 5, 30).Add(-time.Second), true, "on"},
			{utc(2026, 11, 1, 5, 30), true, "off"}, // the first 01:30, EDT
			{utc(2026, 11, 2, 17, 0).Add(-time.Second), true, "off"},
			{utc(2026, 11, 2, 17, 0), false, "on"}, // 12:00 EST
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: tc.checks[0].at.Add(-48 * time.Hour)}
			w := newWorld(t, openDB(t, clock), clock)
			ev, err := w.svc.PutEvent(w.ctx, tc.event, 0)
			w.must(err)
			for _, c := range tc.checks {
				w.tick(c.at)
				got := w.config("festival-banner").Config
				if got.Enabled != c.enabled || got.DefaultVariant != c.serve {
					t.Errorf("at %s: banner enabled %v serving %q, want %v serving %q", c.at, got.Enabled, got.DefaultVariant, c.enabled, c.serve)
				}
			}
			d, err := w.svc.Detail(w.ctx, env, ev.Key)
			w.must(err)
			if d.State.Status != rollout.EventEnded || len(d.Records) != 3 {
				t.Fatalf("after the end: state %+v, %d records", d.State, len(d.Records))
			}
			times, _ := ev.Times()
			for i, r := range d.Records {
				want := times.Close
				if i < len(times.Phases) {
					want = times.Phases[i]
				}
				if r.Status != rollout.StatusDone || !r.Due.Equal(want) || r.Late != 0 || !r.AppliedAt.Equal(want) {
					t.Errorf("record %s: %s due %s applied %s late %s; want done on time at %s", r.ID, r.Status, r.Due, r.AppliedAt, r.Late, want)
				}
			}
			for _, r := range w.revisions()[3:] { // after the flags' creation
				if r.Author != "event:"+ev.Key {
					t.Errorf("revision %d (%q) by %s, want the event's actor", r.Number, r.Message, r.Author)
				}
			}
		})
	}
}

// TestSchedulerCatchesUpLate stops the scheduler over a phase's start and
// a plan's start, and checks that each is applied once when it comes back,
// and says how late.
func TestSchedulerCatchesUpLate(t *testing.T) {
	start := utc(2026, 12, 18, 9, 0)
	clock := &fakeClock{t: start.Add(-24 * time.Hour)}
	w := newWorld(t, openDB(t, clock), clock)
	ev := festivalEvent()
	ev.Phases = ev.Phases[:1] // the teaser only
	_, err := w.svc.PutEvent(w.ctx, ev, 0)
	w.must(err)
	p := ramp()
	p.ID, p.Gates = "late-ramp", rollout.Gates{}
	p, err = w.svc.PutPlan(w.ctx, p, 0)
	w.must(err)
	_, err = w.svc.Schedule(w.ctx, env, p.ID, start.Add(30*time.Minute), p.Version)
	w.must(err)

	w.tick(start.Add(-time.Minute))
	if w.config("festival-banner").Config.Enabled {
		t.Fatal("the teaser applied early")
	}
	// Down from start−1m to start+3h.
	back := start.Add(3 * time.Hour)
	w.tick(back)
	w.tick(back.Add(10 * time.Second))
	w.tick(back.Add(20 * time.Second))

	d, err := w.svc.Detail(w.ctx, env, ev.Key)
	w.must(err)
	r := d.Records[0]
	if r.Status != rollout.StatusDone || r.Late != rollout.Duration(3*time.Hour) || r.Attempt != 1 {
		t.Errorf("teaser record: %s, late %s, attempt %d; want done 3h late at the first attempt", r.Status, r.Late, r.Attempt)
	}
	if n := w.tagged(r.ID); n != 1 {
		t.Errorf("%d revisions for the teaser, want 1", n)
	}
	revs := w.revisions()
	var teaser flags.Revision
	for _, rev := range revs {
		if strings.Contains(rev.Message, r.ID) {
			teaser = rev
		}
	}
	if !strings.Contains(teaser.Message, "applied 3h0m0s late") {
		t.Errorf("revision message %q does not say how late it was", teaser.Message)
	}
	entries, err := w.db.ListAudit(w.ctx, solstice.AuditFilter{Action: "event.phase_start"})
	w.must(err)
	if len(entries) != 1 {
		t.Fatalf("%d phase audit entries, want 1", len(entries))
	}
	var details struct {
		Late        string  `json:"late"`
		LateSeconds float64 `json:"late_seconds"`
		Due         time.Time
	}
	w.must(json.Unmarshal(entries[0].Details, &details))
	if details.Late != "3h0m0s" || details.LateSeconds != 10800 || !details.Due.Equal(start) || entries[0].Actor.Name != "event:winter-festival" {
		t.Errorf("audit entry %+v details %s; want 3h late, due at %s, by the event", entries[0], entries[0].Details, start)
	}

	got := w.plan(p.ID)
	if got.Status != rollout.StatusRunning || got.Step != 0 || len(got.History) != 2 || got.History[1].Late != rollout.Duration(150*time.Minute) {
		t.Errorf("plan after catch-up: %s step %d history %+v; want running step 1, started 2h30m late", got.Status, got.Step, got.History)
	}
	byPlan := 0
	for _, rev := range revs {
		if rev.Author == "rollout:"+p.ID {
			byPlan++
		}
	}
	if byPlan != 1 {
		t.Errorf("%d revisions by the plan, want 1 (its first step)", byPlan)
	}
	starts, err := w.db.ListAudit(w.ctx, solstice.AuditFilter{Action: "rollout.start"})
	w.must(err)
	if len(starts) != 1 || !strings.Contains(string(starts[0].Details), `"late":"2h30m0s"`) {
		t.Errorf("plan start audit entries %+v, want one saying 2h30m late", starts)
	}
}

// TestSchedulerCatchesUpAfterTheEvent brings the scheduler back after an
// event is over: its phases are skipped, its end state applies once.
func TestSchedulerCatchesUpAfterTheEvent(t *testing.T) {
	clock := &fakeClock{t: utc(2026, 12, 1, 0, 0)}
	w := newWorld(t, openDB(t, clock), clock)
	ev := festivalEvent()
	ev.Phases = ev.Phases[:1]
	ev.EndState = []rollout.Change{{Flag: "festival-banner", Serve: "off", Enabled: &on}}
	_, err := w.svc.PutEvent(w.ctx, ev, 0)
	w.must(err)
	w.tick(utc(2026, 12, 27, 0, 0))
	w.tick(utc(2026, 12, 27, 0, 1))
	d, err := w.svc.Detail(w.ctx, env, ev.Key)
	w.must(err)
	var got []string
	for _, r := range d.Records {
		got = append(got, fmt.Sprintf("%s %s %s", r.Kind, r.Status, r.Late))
	}
	want := []string{"phase_start skipped 207h0m0s", "event_end done 39h0m0s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if c := w.config("festival-banner").Config; !c.Enabled || c.DefaultVariant != "off" {
		t.Errorf("banner enabled %v serving %s, want the end state: enabled serving off", c.Enabled, c.DefaultVariant)
	}
	if d.State.Status != rollout.EventEnded {
		t.Errorf("state %+v, want ended", d.State)
	}
}

// TestSchedulersRace runs three schedulers at once, tick after tick, over
// an event with a ramp, on one database: every change is applied exactly
// once.
func TestSchedulersRace(t *testing.T) {
	clock := &fakeClock{}
	storetest.Dialects(t, func(t *testing.T, db *store.DB) {
		start := utc(2026, 12, 18, 9, 0)
		clock.Set(start.Add(-time.Hour))
		w := newWorld(t, db, clock)
		p := ramp()
		p.Gates = rollout.Gates{}
		for i := range p.Steps {
			p.Steps[i].MinDuration = rollout.Duration(2 * time.Hour)
		}
		_, err := w.svc.PutPlan(w.ctx, p, 0)
		w.must(err)
		ev := festivalEvent()
		ev.End = rollout.Local(2026, 12, 19, 10, 0)
		ev.Phases = []rollout.Phase{
			{Name: "teaser", Start: ev.Start, Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
			{Name: "live", Start: rollout.Local(2026, 12, 18, 12, 0), Changes: []rollout.Change{{Flag: "winter-festival", Rollout: "winter-ramp"}, {Flag: "festival-banner", Serve: "off"}}},
		}
		ev, err = w.svc.PutEvent(w.ctx, ev, 0)
		w.must(err)
		scheds := []*rollout.Scheduler{w.sched}
		for i := 2; i <= 3; i++ {
			scheds = append(scheds, rollout.NewScheduler(db, w.flags, db, rollout.WithClock(clock), rollout.WithInstance(fmt.Sprintf("s%d", i))))
		}
		for at := start.Add(-30 * time.Minute); !at.After(start.Add(26 * time.Hour)); at = at.Add(30 * time.Minute) {
			clock.Set(at)
			var wg sync.WaitGroup
			errs := make([]error, len(scheds))
			for i, s := range scheds {
				wg.Go(func() { errs[i] = s.Tick(w.ctx, at) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("scheduler %d at %s: %v", i+1, at, err)
				}
			}
		}
		d, err := w.svc.Detail(w.ctx, env, ev.Key)
		w.must(err)
		if len(d.Records) != 3 {
			t.Fatalf("%d records, want 3", len(d.Records))
		}
		for _, r := range d.Records {
			if r.Status != rollout.StatusDone || r.Attempt != 1 {
				t.Errorf("record %s: %s at attempt %d, want done at the first", r.ID, r.Status, r.Attempt)
			}
		}
		// Teaser and live: the banner (the plan's step has its own tag); end: both flags.
		for id, want := range map[string]int{d.Records[0].ID: 1, d.Records[1].ID: 1, d.Records[2].ID: 2} {
			if n := w.tagged(id); n != want {
				t.Errorf("%d revisions tagged %s, want %d", n, id, want)
			}
		}
		got := w.plan("winter-ramp")
		var moves []string
		for _, h := range got.History {
			moves = append(moves, fmt.Sprintf("%s→%s step %d", h.From, h.To, h.Step+1))
			if h.To == rollout.StatusRunning && h.Revision == 0 {
				t.Errorf("step %d has no revision", h.Step+1)
			}
		}
		want := []string{"draft→running step 1", "running→running step 2", "running→running step 3", "running→completed step 3"}
		if diff := cmp.Diff(want, moves); diff != "" || got.Status != rollout.StatusCompleted {
			t.Errorf("plan history (-want +got):\n%s", diff)
		}
		steps := 0
		for _, r := range w.revisions() {
			if r.Author == "rollout:winter-ramp" {
				steps++
			}
		}
		if steps != 3 {
			t.Errorf("%d revisions by the plan, want 3 (one per step)", steps)
		}
	})
}

// TestSchedulerTakesOverAfterACrash leaves changes claimed by a scheduler
// that died, once after writing and once before, and checks that another
// scheduler finishes each of them exactly once when their claims go stale.
func TestSchedulerTakesOverAfterACrash(t *testing.T) {
	start := utc(2026, 12, 18, 9, 0)
	clock := &fakeClock{t: start}
	w := newWorld(t, openDB(t, clock), clock)
	ev := festivalEvent()
	ev.Phases = ev.Phases[:2]
	ev.Phases[1].Changes = []rollout.Change{{Flag: "festival-banner", Serve: "off"}}
	ev, err := w.svc.PutEvent(w.ctx, ev, 0)
	w.must(err)
	head := func() int64 {
		heads, err := w.flags.Heads(w.ctx)
		w.must(err)
		return heads[env]
	}

	// The teaser: claimed and written by "dead", which then crashed.
	teaser := rollout.PhaseChangeID(ev, "teaser")
	_, ok, err := w.db.ClaimChange(w.ctx, rollout.Record{ID: teaser, Environment: env, EventUID: ev.UID, Event: ev.Key,
		Kind: rollout.KindPhaseStart, Phase: "teaser", Due: start, ClaimedBy: "dead", ClaimedAt: start, Head: head()}, start.Add(-time.Minute))
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	fc := w.config("festival-banner")
	cfg := fc.Config
	cfg.Enabled = true
	deadRev, err := w.flags.PutConfig(solstice.WithActor(w.ctx, ev.Actor()), env, "festival-banner", cfg, fc.Revision, "Event Winter Festival: phase teaser starts ["+teaser+"]")
	w.must(err)

	w.tick(start.Add(30 * time.Second)) // the claim is fresh: hands off
	if d, _ := w.svc.Detail(w.ctx, env, ev.Key); d.Records[0].Status != rollout.StatusClaimed {
		t.Fatalf("a fresh claim was taken over: %+v", d.Records[0])
	}
	w.tick(start.Add(2 * time.Minute)) // stale: taken over
	d, err := w.svc.Detail(w.ctx, env, ev.Key)
	w.must(err)
	r := d.Records[0]
	if r.Status != rollout.StatusDone || r.Attempt != 2 || r.ClaimedBy != "s1" || len(r.Writes) != 1 || r.Writes[0].Revision != deadRev.Number || r.Writes[0].Before == nil || r.Writes[0].Before.Enabled {
		t.Errorf("taken-over record = %s", mustJSON(r))
	}
	if n := w.tagged(teaser); n != 1 {
		t.Errorf("%d revisions for the teaser, want 1", n)
	}

	// The live phase: claimed by "dead", which crashed before writing.
	live := rollout.PhaseChangeID(ev, "live")
	liveAt := utc(2026, 12, 18, 17, 0)
	_, ok, err = w.db.ClaimChange(w.ctx, rollout.Record{ID: live, Environment: env, EventUID: ev.UID, Event: ev.Key,
		Kind: rollout.KindPhaseStart, Phase: "live", Due: liveAt, ClaimedBy: "dead", ClaimedAt: liveAt, Head: head()}, liveAt.Add(-time.Minute))
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	w.tick(liveAt.Add(5 * time.Minute))
	if n := w.tagged(live); n != 1 || w.config("festival-banner").Config.DefaultVariant != "off" {
		t.Errorf("%d revisions for the live phase, want 1 applying it", n)
	}

	// A plan's step claimed and written by "dead".
	p := ramp()
	p.Gates = rollout.Gates{}
	p, err = w.svc.PutPlan(w.ctx, p, 0)
	w.must(err)
	now := liveAt.Add(10 * time.Minute)
	clock.Set(now)
	running, err := p.Begin(now, solstice.Actor{Name: "alice"}, "started by alice", 0, head(), "dead")
	w.must(err)
	running, err = w.db.PutPlan(w.ctx, running, p.Version, nil)
	w.must(err)
	fc = w.config("winter-festival")
	stepRev, err := w.flags.PutConfig(solstice.WithActor(w.ctx, p.Actor()), env, "winter-festival", rollout.StepConfig(running, fc.Config, 0), fc.Revision, "step 1 ["+running.Pending.ID+"]")
	w.must(err)
	w.tick(now.Add(30 * time.Second))
	if got := w.plan(p.ID); got.Pending == nil {
		t.Fatal("a fresh pending change was taken over")
	}
	w.tick(now.Add(2 * time.Minute))
	got := w.plan(p.ID)
	if got.Pending != nil || got.Revision != stepRev.Number || got.Status != rollout.StatusRunning {
		t.Errorf("after the takeover: pending %+v, revision %d, %s; want none, %d, running", got.Pending, got.Revision, got.Status, stepRev.Number)
	}
	if n := w.tagged(running.Pending.ID); n != 1 {
		t.Errorf("%d revisions for the step, want 1", n)
	}
}
