package rollout_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/rollout"
)

func TestDetectConflicts(t *testing.T) {
	on := true
	other := func(key string, start, end rollout.LocalTime, flag string) rollout.Event {
		return rollout.Event{Key: key, UID: key, Environment: "production", Name: key, TimeZone: "America/New_York", Start: start, End: end,
			Phases: []rollout.Phase{{Name: "on", Start: start, Changes: []rollout.Change{{Flag: flag, Enabled: &on}}}}}
	}
	ev := festivalEvent() // Paris, 2026-12-18 10:00 to 2026-12-25 10:00 (09:00Z to 09:00Z)
	ev.Phases[0].Changes[0].BaseRevision = 4
	heads := map[string]rollout.FlagHead{"festival-banner": {Revision: 4, Author: "alice"}, "winter-festival": {Revision: 2, Author: "alice"}}
	type want struct {
		kind    rollout.ConflictKind
		pointer string
		with    string
	}
	for _, tc := range []struct {
		name string
		in   rollout.ConflictInput
		want []want
	}{
		{"nothing", rollout.ConflictInput{Event: ev, Flags: heads}, nil},
		{"overlap on a shared flag", rollout.ConflictInput{Event: ev, Flags: heads,
			// 2026-12-25 03:59 in New York is 08:59Z: a minute before the festival ends.
			Others: []rollout.Event{other("xmas", rollout.Local(2026, 12, 24, 0, 0), rollout.Local(2026, 12, 25, 3, 59), "festival-banner")}},
			[]want{{rollout.ConflictOverlap, "/phases/0/changes/0", "xmas"}}},
		{"touching windows do not overlap", rollout.ConflictInput{Event: ev, Flags: heads,
			Others: []rollout.Event{other("after", rollout.Local(2026, 12, 25, 4, 0), rollout.Local(2026, 12, 31, 0, 0), "festival-banner")}}, nil},
		{"overlap on another flag", rollout.ConflictInput{Event: ev, Flags: heads,
			Others: []rollout.Event{other("xmas", rollout.Local(2026, 12, 24, 0, 0), rollout.Local(2026, 12, 26, 0, 0), "snow")}}, nil},
		{"the stored version of itself", rollout.ConflictInput{Event: ev, Flags: heads, Others: []rollout.Event{ev}}, nil},
		{"a cancelled event's window ends early", rollout.ConflictInput{Event: ev, Flags: heads,
			Others: []rollout.Event{func() rollout.Event {
				o := other("xmas", rollout.Local(2026, 12, 10, 0, 0), rollout.Local(2026, 12, 26, 0, 0), "festival-banner")
				at := utc(2026, 12, 18, 9, 0)
				o.CancelledAt = &at
				return o
			}()}}, nil},
		{"changed since scheduled", rollout.ConflictInput{Event: ev, Flags: map[string]rollout.FlagHead{"festival-banner": {Revision: 6, Author: "bob"}}},
			[]want{{rollout.ConflictStale, "/phases/0/changes/0", ""}}},
		{"changed by the event itself", rollout.ConflictInput{Event: ev, Flags: map[string]rollout.FlagHead{"festival-banner": {Revision: 6, Author: "event:winter-festival"}}}, nil},
		{"changed, but the phase has started", rollout.ConflictInput{Event: ev, Flags: map[string]rollout.FlagHead{"festival-banner": {Revision: 6, Author: "bob"}}, Applied: map[string]bool{"teaser": true}}, nil},
		{"a rollout under way", rollout.ConflictInput{Event: ev, Flags: heads, Plans: []rollout.Plan{
			{ID: "other-ramp", Flag: "winter-festival", Status: rollout.StatusRunning},
			{ID: "winter-ramp", Flag: "winter-festival", Status: rollout.StatusRunning}, // started by this event
			{ID: "old", Flag: "winter-festival", Status: rollout.StatusCompleted},
		}}, []want{{rollout.ConflictRollout, "/phases/1/changes/0", "other-ramp"}}},
		{"a plan started by another event too", rollout.ConflictInput{Event: ev, Flags: heads, Others: []rollout.Event{func() rollout.Event {
			o := other("later", rollout.Local(2027, 1, 1, 0, 0), rollout.Local(2027, 1, 2, 0, 0), "snow")
			o.Phases[0].Changes = append(o.Phases[0].Changes, rollout.Change{Flag: "winter-festival", Rollout: "winter-ramp"})
			return o
		}()}}, []want{{rollout.ConflictRollout, "/phases/1/changes/0", "winter-ramp"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []want
			for _, c := range rollout.DetectConflicts(tc.in) {
				got = append(got, want{c.Kind, c.Pointer, c.With})
				if c.Message == "" || c.Flag == "" {
					t.Errorf("conflict %+v has no message or flag", c)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("conflicts (-want +got):\n%s", diff)
			}
		})
	}
	err := rollout.ConflictError("event x", []rollout.Conflict{{Pointer: "/phases/0", Message: "m"}})
	if !solstice.IsKind(err, solstice.KindConflict) || len(solstice.ErrorFields(err)) != 1 {
		t.Errorf("ConflictError = %v", err)
	}
	if rollout.ConflictError("event x", nil) != nil {
		t.Error("ConflictError(nil) is not nil")
	}
}
