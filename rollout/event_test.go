package rollout_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/rollout"
)

func utc(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, time.UTC)
}

// TestLocalTimeAcrossDaylightSaving pins how wall-clock times resolve
// around daylight-saving changes (RFC 5545: the first occurrence of a
// repeated time, the offset before a gap for a skipped one).
func TestLocalTimeAcrossDaylightSaving(t *testing.T) {
	for _, tc := range []struct {
		name string
		zone string
		lt   rollout.LocalTime
		want time.Time
	}{
		{"Paris winter", "Europe/Paris", rollout.Local(2026, 12, 18, 10, 0), utc(2026, 12, 18, 9, 0)},
		{"Paris summer", "Europe/Paris", rollout.Local(2026, 7, 1, 10, 0), utc(2026, 7, 1, 8, 0)},
		{"Paris before the spring gap", "Europe/Paris", rollout.Local(2026, 3, 29, 1, 59), utc(2026, 3, 29, 0, 59)},
		{"Paris in the spring gap", "Europe/Paris", rollout.Local(2026, 3, 29, 2, 30), utc(2026, 3, 29, 1, 30)}, // = 03:30 CEST
		{"Paris after the spring gap", "Europe/Paris", rollout.Local(2026, 3, 29, 3, 0), utc(2026, 3, 29, 1, 0)},
		{"Paris repeated autumn hour", "Europe/Paris", rollout.Local(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30)}, // first, CEST
		{"Paris after the autumn change", "Europe/Paris", rollout.Local(2026, 10, 25, 3, 0), utc(2026, 10, 25, 2, 0)},
		{"New York in the spring gap", "America/New_York", rollout.Local(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7, 30)},      // = 03:30 EDT
		{"New York repeated autumn hour", "America/New_York", rollout.Local(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)}, // first, EDT
		{"New York after the autumn change", "America/New_York", rollout.Local(2026, 11, 1, 2, 0), utc(2026, 11, 1, 7, 0)},
		{"UTC", "UTC", rollout.Local(2026, 3, 29, 2, 30), utc(2026, 3, 29, 2, 30)},
	} {
		loc, err := time.LoadLocation(tc.zone)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.lt.In(loc); !got.Equal(tc.want) {
			t.Errorf("%s: %s in %s = %s, want %s", tc.name, tc.lt, tc.zone, got, tc.want)
		}
	}
}

func TestLocalTimeText(t *testing.T) {
	for _, s := range []string{"2026-12-18T10:00", "2026-12-18T10:00:30"} {
		lt, err := rollout.ParseLocalTime(s)
		if err != nil || lt.String() != s {
			t.Errorf("ParseLocalTime(%q) = %v, %v; want it back", s, lt, err)
		}
	}
	for _, s := range []string{"", "2026-12-18", "2026-12-18T10:00Z", "2026-12-18T10:00+01:00", "2026-02-30T10:00", "18/12/2026 10:00"} {
		if _, err := rollout.ParseLocalTime(s); err == nil {
			t.Errorf("ParseLocalTime(%q) accepted", s)
		}
	}
	var ev struct{ Start rollout.LocalTime }
	if err := json.Unmarshal([]byte(`{"Start":"2026-12-18T10:00"}`), &ev); err != nil || ev.Start != rollout.Local(2026, 12, 18, 10, 0) {
		t.Errorf("unmarshal = %v, %v", ev.Start, err)
	}
	if err := json.Unmarshal([]byte(`{"Start":"tomorrow"}`), &ev); err == nil {
		t.Error("unmarshal of a bad local time accepted")
	}
}

func festivalEvent() rollout.Event {
	on := true
	return rollout.Event{
		Key: "winter-festival", Environment: "production", UID: "u1", Name: "Winter Festival", TimeZone: "Europe/Paris",
		Start: rollout.Local(2026, 12, 18, 10, 0), End: rollout.Local(2026, 12, 25, 10, 0),
		Phases: []rollout.Phase{
			{Name: "teaser", Start: rollout.Local(2026, 12, 18, 10, 0), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}},
			{Name: "live", Start: rollout.Local(2026, 12, 18, 18, 0), Changes: []rollout.Change{{Flag: "winter-festival", Rollout: "winter-ramp"}}},
			{Name: "wind-down", Start: rollout.Local(2026, 12, 24, 18, 0), Changes: []rollout.Change{{Flag: "festival-banner", Values: map[string]json.RawMessage{"on": json.RawMessage(`true`)}}}},
		},
	}
}

func TestEventTimes(t *testing.T) {
	ev := festivalEvent()
	ev.TimeZone = "Europe/Paris"
	ev.Start, ev.End = rollout.Local(2026, 3, 28, 10, 0), rollout.Local(2026, 3, 30, 10, 0)
	ev.Phases = []rollout.Phase{{Name: "a", Start: rollout.Local(2026, 3, 28, 10, 0)}, {Name: "b", Start: rollout.Local(2026, 3, 29, 10, 0)}}
	times, err := ev.Times()
	if err != nil {
		t.Fatal(err)
	}
	if d := times.End.Sub(times.Start); d != 47*time.Hour {
		t.Errorf("an event of two local days across the spring change lasts %s, want 47h", d)
	}
	if d := times.Phases[1].Sub(times.Phases[0]); d != 23*time.Hour {
		t.Errorf("phase a lasts %s, want 23h (10:00 to 10:00 local)", d)
	}
	ev.Start, ev.End = rollout.Local(2026, 10, 24, 10, 0), rollout.Local(2026, 10, 26, 10, 0)
	ev.Phases = []rollout.Phase{{Name: "a", Start: ev.Start}}
	times, _ = ev.Times()
	if d := times.End.Sub(times.Start); d != 49*time.Hour {
		t.Errorf("an event of two local days across the autumn change lasts %s, want 49h", d)
	}
	cancel := utc(2026, 10, 25, 0, 0)
	ev.CancelledAt = &cancel
	times, _ = ev.Times()
	if !times.Close.Equal(cancel) || !times.End.Equal(utc(2026, 10, 26, 9, 0)) {
		t.Errorf("cancelled: close %s end %s", times.Close, times.End)
	}
	ev.TimeZone = "Atlantis/Central"
	if _, err := ev.Times(); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("Times with an unknown zone = %v, want invalid", err)
	}
}

func TestValidateEvent(t *testing.T) {
	if err := rollout.ValidateEvent(festivalEvent()); err != nil {
		t.Fatalf("ValidateEvent(valid) = %v", err)
	}
	off := false
	for _, tc := range []struct {
		name string
		edit func(e *rollout.Event)
		want []string
	}{
		{"bad key", func(e *rollout.Event) { e.Key = "Winter!" }, []string{"/key"}},
		{"no name", func(e *rollout.Event) { e.Name = " " }, []string{"/name"}},
		{"no zone", func(e *rollout.Event) { e.TimeZone = "" }, []string{"/time_zone"}},
		{"bad zone", func(e *rollout.Event) { e.TimeZone = "Europe/Pariss" }, []string{"/time_zone"}},
		{"end before start", func(e *rollout.Event) { e.End = rollout.Local(2026, 12, 17, 10, 0) }, []string{"/end", "/phases/0/start", "/phases/1/start", "/phases/2/start"}},
		{"no start", func(e *rollout.Event) { e.Start = rollout.LocalTime{} }, []string{"/start"}},
		{"no phases", func(e *rollout.Event) { e.Phases = nil }, []string{"/phases"}},
		{"phase before the start", func(e *rollout.Event) { e.Phases[0].Start = rollout.Local(2026, 12, 18, 9, 59) }, []string{"/phases/0/start"}},
		{"phase at the end", func(e *rollout.Event) { e.Phases[2].Start = e.End }, []string{"/phases/2/start"}},
		{"phases out of order", func(e *rollout.Event) { e.Phases[1].Start = e.Phases[0].Start }, []string{"/phases/1/start"}},
		{"phase name twice", func(e *rollout.Event) { e.Phases[2].Name = "live" }, []string{"/phases/2/name"}},
		{"empty change", func(e *rollout.Event) { e.Phases[0].Changes[0] = rollout.Change{Flag: "x"} }, []string{"/phases/0/changes/0"}},
		{"rollout and more", func(e *rollout.Event) { e.Phases[1].Changes[0].Enabled = &off }, []string{"/phases/1/changes/0/rollout"}},
		{"rollout at the end", func(e *rollout.Event) { e.EndState = []rollout.Change{{Flag: "winter-festival", Rollout: "x"}} }, []string{"/end_state/0/rollout"}},
		{"bad variant key", func(e *rollout.Event) { e.Phases[0].Changes[0].Serve = "On" }, []string{"/phases/0/changes/0/serve"}},
		{"bad value", func(e *rollout.Event) {
			e.Phases[2].Changes[0].Values["on"] = json.RawMessage(`{`)
		}, []string{"/phases/2/changes/0/values/on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := festivalEvent()
			tc.edit(&ev)
			err := rollout.ValidateEvent(ev)
			if tc.want == nil {
				if err != nil {
					t.Errorf("ValidateEvent = %v, want nil", err)
				}
				return
			}
			if !solstice.IsKind(err, solstice.KindInvalid) {
				t.Fatalf("ValidateEvent = %v, want invalid", err)
			}
			var got []string
			for _, f := range solstice.ErrorFields(err) {
				got = append(got, f.Pointer)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("pointers (-want +got):\n%s\n%v", diff, err)
			}
		})
	}
	// A whole-config change alone is fine; with anything else it is not.
	ev := festivalEvent()
	cfg := festivalConfig()
	ev.Phases[0].Changes[0] = rollout.Change{Flag: "festival-banner", Config: &cfg, Enabled: &off}
	if err := rollout.ValidateEvent(ev); !strings.Contains(solstice.ErrorMessage(err), "/phases/0/changes/0/config") {
		t.Errorf("config with enabled: %v", err)
	}
}
