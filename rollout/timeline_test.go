package rollout_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
)

// festivalTimeline is the Winter Festival before it starts: a banner flag
// and the festival config, both off, the event and its ramp plan.
func festivalTimeline(now time.Time) rollout.Timeline {
	banner := flags.Config{Variants: []flags.Variant{{Key: "on", Value: json.RawMessage("true")}, {Key: "off", Value: json.RawMessage("false")}}, DefaultVariant: "on", OffVariant: "off"}
	p := testPlan()
	p.Steps[1].Approval = false
	set := flags.Set{Environment: "production", Revision: 3,
		Flags: []flags.FlagState{
			{Key: "festival-banner", Type: flags.TypeBoolean, Config: banner},
			{Key: "winter-festival", Type: flags.TypeObject, Config: festivalConfig()},
		}, Segments: []flags.Segment{}}
	return rollout.Timeline{Set: set, Now: now, Events: []rollout.Event{festivalEvent()}, Plans: []rollout.Plan{p}}
}

func TestTimelineAt(t *testing.T) {
	// The festival: teaser 2026-12-18 10:00 Paris (09:00Z), live 18:00
	// (17:00Z), wind-down 12-24 18:00, end 12-25 10:00 (09:00Z).
	now := utc(2026, 12, 1, 0, 0)
	tl := festivalTimeline(now)
	live := utc(2026, 12, 18, 17, 0)
	for _, tc := range []struct {
		name      string
		at        time.Time
		banner    bool
		festival  bool
		treatment int // basis points; -1: no split
	}{
		{"now", now, false, false, -1},
		{"a second before the teaser", utc(2026, 12, 18, 8, 59).Add(59 * time.Second), false, false, -1},
		{"the teaser starts", utc(2026, 12, 18, 9, 0), true, false, -1},
		{"live: step 1", live, true, true, 500},
		{"a second before step 2", live.Add(24*time.Hour - time.Second), true, true, 500},
		{"step 2", live.Add(24 * time.Hour), true, true, 2500},
		{"day 3 (step 3)", live.Add(48 * time.Hour), true, true, 10000},
		{"completed", live.Add(96 * time.Hour), true, true, 10000},
		{"a second before the end", utc(2026, 12, 25, 8, 59).Add(59 * time.Second), true, true, 10000},
		{"ended: set back", utc(2026, 12, 25, 9, 0), false, false, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := tl.At(tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if set.Revision != 3 {
				t.Errorf("revision %d, want the current 3", set.Revision)
			}
			banner, festival := set.Flags[0].Config, set.Flags[1].Config
			if banner.Enabled != tc.banner || festival.Enabled != tc.festival {
				t.Errorf("banner enabled %v, festival enabled %v; want %v, %v", banner.Enabled, festival.Enabled, tc.banner, tc.festival)
			}
			got := -1
			if festival.Split != nil {
				got = festival.Split.Weights[0].Weight
			}
			if got != tc.treatment {
				t.Errorf("treatment weight %d, want %d (split %+v)", got, tc.treatment, festival.Split)
			}
		})
	}
	if after, _ := tl.At(utc(2027, 1, 1, 0, 0)); !cmp.Equal(after.Flags, tl.Set.Flags) {
		t.Errorf("after the event the set is not what it was before:\n%s", cmp.Diff(tl.Set.Flags, after.Flags))
	}
	if _, err := tl.At(now.Add(-time.Second)); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("At(before now) = %v, want invalid", err)
	}

	// What a player gets on day 3, through the real evaluator.
	r, err := tl.Preview(live.Add(48*time.Hour), "winter-festival", flags.Context{flags.TargetingKey: "player-1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Variant != "festival" || r.Reason != flags.ReasonSplit {
		t.Errorf("day 3 preview = %+v, want festival by split", r)
	}
}

func TestTimelineCancelledAndCatchUp(t *testing.T) {
	now := utc(2026, 12, 20, 0, 0) // the festival is live, but nothing was applied: a scheduler was down
	tl := festivalTimeline(now)
	set, _ := tl.At(now)
	if !set.Flags[0].Enabled || !set.Flags[1].Enabled {
		t.Errorf("overdue phases are not applied at now")
	}
	// The event is over and no phase was applied: the phases are skipped.
	tl.Now = utc(2026, 12, 26, 0, 0)
	set, _ = tl.At(tl.Now)
	if !cmp.Equal(set.Flags, tl.Set.Flags) {
		t.Errorf("an event that was over before any phase applied changed flags:\n%s", cmp.Diff(tl.Set.Flags, set.Flags))
	}
	// Cancelled during the teaser: the live phase never comes.
	tl = festivalTimeline(utc(2026, 12, 1, 0, 0))
	at := utc(2026, 12, 18, 12, 0)
	tl.Events[0].CancelledAt = &at
	set, _ = tl.At(utc(2026, 12, 18, 11, 0))
	if !set.Flags[0].Enabled {
		t.Errorf("the teaser is not applied before the cancellation")
	}
	set, _ = tl.At(utc(2026, 12, 20, 0, 0))
	if set.Flags[0].Enabled || set.Flags[1].Enabled {
		t.Errorf("after the cancellation: banner %v, festival %v; want both off", set.Flags[0].Enabled, set.Flags[1].Enabled)
	}
}

func TestBuildCalendar(t *testing.T) {
	now := utc(2026, 12, 1, 0, 0)
	tl := festivalTimeline(now)
	cal := rollout.BuildCalendar(tl, utc(2026, 12, 18, 0, 0), utc(2026, 12, 26, 0, 0))
	type row struct {
		Time   time.Time
		Kind   rollout.EntryKind
		Name   string
		Status rollout.EntryStatus
		Local  string
	}
	var got []row
	for _, e := range cal.Entries {
		got = append(got, row{e.Time, e.Kind, e.Phase + e.Plan, e.Status, e.Local})
	}
	live := utc(2026, 12, 18, 17, 0)
	want := []row{
		{utc(2026, 12, 18, 9, 0), rollout.EntryPhase, "teaser", rollout.EntryScheduled, "2026-12-18 10:00 CET"},
		{live, rollout.EntryPhase, "live", rollout.EntryScheduled, "2026-12-18 18:00 CET"},
		{live, rollout.EntryPlanStart, "winter-ramp", rollout.EntryProjected, ""},
		{live.Add(24 * time.Hour), rollout.EntryPlanStep, "winter-ramp", rollout.EntryProjected, ""},
		{live.Add(48 * time.Hour), rollout.EntryPlanStep, "winter-ramp", rollout.EntryProjected, ""},
		{live.Add(72 * time.Hour), rollout.EntryPlanComplete, "winter-ramp", rollout.EntryProjected, ""},
		{utc(2026, 12, 24, 17, 0), rollout.EntryPhase, "wind-down", rollout.EntryScheduled, "2026-12-24 18:00 CET"},
		{utc(2026, 12, 25, 9, 0), rollout.EntryEnd, "", rollout.EntryScheduled, "2026-12-25 10:00 CET"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("calendar entries (-want +got):\n%s", diff)
	}
	if len(cal.Events) != 1 || len(cal.Events[0].Phases) != 3 || !cal.Events[0].Phases[1].End.Equal(utc(2026, 12, 24, 17, 0)) ||
		cal.Events[0].State.Status != rollout.EventScheduled {
		t.Errorf("calendar events = %+v", cal.Events)
	}
	// A range after the event shows nothing.
	if cal := rollout.BuildCalendar(tl, utc(2026, 12, 25, 9, 1), utc(2026, 12, 31, 0, 0)); len(cal.Events) != 0 || len(cal.Entries) != 0 {
		t.Errorf("calendar after the event = %+v", cal)
	}
}

// BenchmarkTimelineAt measures a preview of day 3 of the Winter Festival:
// the teaser, the live phase starting the ramp and two steps replayed.
func BenchmarkTimelineAt(b *testing.B) {
	tl := festivalTimeline(utc(2026, 12, 1, 0, 0))
	at := utc(2026, 12, 20, 18, 0)
	for b.Loop() {
		if _, err := tl.At(at); err != nil {
			b.Fatal(err)
		}
	}
}
