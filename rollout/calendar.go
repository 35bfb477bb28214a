package rollout

import (
	"fmt"
	"slices"
	"time"
)

// EntryKind names what a calendar entry is.
type EntryKind string

// Entry kinds.
const (
	EntryPhase        EntryKind = "phase_start"
	EntryEnd          EntryKind = "event_end"
	EntryPlanStart    EntryKind = "plan_start"
	EntryPlanStep     EntryKind = "plan_step"
	EntryPlanComplete EntryKind = "plan_complete"
	EntryPlanPause    EntryKind = "plan_pause"
	EntryPlanResume   EntryKind = "plan_resume"
	EntryPlanRollback EntryKind = "plan_rollback"
	EntryPlanCancel   EntryKind = "plan_cancel"
)

// EntryStatus says whether an entry happened, is due, or is expected.
type EntryStatus string

// Entry statuses.
const (
	EntryDone      EntryStatus = "done"      // applied (or, for a plan, happened)
	EntryFailed    EntryStatus = "failed"    // could not be applied; see the summary
	EntrySkipped   EntryStatus = "skipped"   // deliberately not applied
	EntryClaimed   EntryStatus = "claimed"   // being applied
	EntryDue       EntryStatus = "due"       // its time has passed; the scheduler applies it at its next tick
	EntryScheduled EntryStatus = "scheduled" // at a set time in the future
	EntryProjected EntryStatus = "projected" // expected then if every gate passes in time
)

// Entry is one scheduled change in a calendar.
type Entry struct {
	Time time.Time `json:"time"`
	// Local is Time in the event's time zone ("2026-12-18 10:00 CET"), for
	// an event's entries.
	Local   string      `json:"local,omitempty"`
	Kind    EntryKind   `json:"kind"`
	Event   string      `json:"event,omitempty"`
	Phase   string      `json:"phase,omitempty"`
	Plan    string      `json:"plan,omitempty"`
	Step    int         `json:"step,omitempty"` // 1-based
	Flags   []string    `json:"flags"`
	Status  EntryStatus `json:"status"`
	Late    Duration    `json:"late,omitempty"`
	Summary string      `json:"summary"`
}

// EventStatus is where an event stands.
type EventStatus string

// Event statuses.
const (
	EventScheduled EventStatus = "scheduled" // no phase applied yet
	EventLive      EventStatus = "live"      // a phase applied, the end not yet
	EventEnded     EventStatus = "ended"
	EventCancelled EventStatus = "cancelled" // cancelled before it started
)

// EventState is an event's status and current phase, from the records of
// its changes.
type EventState struct {
	Status EventStatus `json:"status"`
	Phase  string      `json:"phase,omitempty"`
}

// StateOf returns ev's state given the records of its changes. It cannot
// fail.
func StateOf(ev Event, recs []Record) EventState {
	if r, ok := findRecord(recs, EndChangeID(ev)); ok && r.Status != StatusClaimed {
		if r.Status == StatusSkipped && ev.CancelledAt != nil {
			return EventState{Status: EventCancelled}
		}
		return EventState{Status: EventEnded}
	}
	st := EventState{Status: EventScheduled}
	for _, ph := range ev.Phases {
		if r, ok := findRecord(recs, PhaseChangeID(ev, ph.Name)); ok && (r.Status == StatusDone || r.Status == StatusFailed) {
			st = EventState{Status: EventLive, Phase: ph.Name}
		}
	}
	if st.Status == EventScheduled && ev.CancelledAt != nil {
		st.Status = EventCancelled
	}
	return st
}

// Window is an event as a calendar shows it: its instants, its phases'
// intervals and its state.
type Window struct {
	Key      string        `json:"key"`
	Name     string        `json:"name"`
	TimeZone string        `json:"time_zone"`
	Start    time.Time     `json:"start"`
	End      time.Time     `json:"end"` // the actual end: earlier when cancelled
	Phases   []PhaseWindow `json:"phases"`
	State    EventState    `json:"state"`
	Flags    []string      `json:"flags"`
}

// PhaseWindow is one phase's interval [Start, End).
type PhaseWindow struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Local string    `json:"local"` // Start in the event's time zone
}

// Calendar lists an environment's events and scheduled changes within
// [From, To).
type Calendar struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Now     time.Time `json:"now"`
	Events  []Window  `json:"events"`
	Entries []Entry   `json:"entries"`
}

// BuildCalendar returns tl's calendar over [from, to): the events whose
// window overlaps it, and the changes in it, sorted by time: those already
// made (from the records and the plans' histories) and those to come (from
// the same projection as Timeline.At, up to to). It cannot fail; events
// with an invalid time zone are left out.
func BuildCalendar(tl Timeline, from, to time.Time) Calendar {
	cal := Calendar{From: from.UTC(), To: to.UTC(), Now: tl.Now.UTC(), Events: []Window{}, Entries: []Entry{}}
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	zones := map[string]*time.Location{}
	for _, ev := range tl.Events {
		loc, err := ev.Location()
		if err != nil {
			continue
		}
		zones[ev.Key] = loc
		t, _ := ev.Times()
		if !t.Start.Before(to) || !from.Before(t.Close) {
			continue
		}
		w := Window{Key: ev.Key, Name: ev.Name, TimeZone: ev.TimeZone, Start: t.Start, End: t.Close, Phases: []PhaseWindow{}, State: StateOf(ev, tl.Records), Flags: ev.Flags()}
		for i, ph := range ev.Phases {
			if !t.Phases[i].Before(t.Close) {
				break
			}
			end := t.Close
			if i+1 < len(ev.Phases) && t.Phases[i+1].Before(end) {
				end = t.Phases[i+1]
			}
			w.Phases = append(w.Phases, PhaseWindow{Name: ph.Name, Start: t.Phases[i], End: end, Local: localString(t.Phases[i], loc)})
		}
		cal.Events = append(cal.Events, w)
	}

	keys := map[string]string{} // event UID → key
	for _, ev := range tl.Events {
		keys[ev.UID] = ev.Key
	}
	for _, r := range tl.Records {
		if !in(r.Due) {
			continue
		}
		e := Entry{Time: r.Due, Kind: EntryPhase, Event: r.Event, Phase: r.Phase, Status: recordStatus(r.Status), Late: r.Late, Summary: r.Outcome, Flags: []string{}}
		if r.Kind == KindEventEnd {
			e.Kind = EntryEnd
		}
		for _, w := range r.Writes {
			e.Flags = append(e.Flags, w.Flag)
		}
		cal.Entries = append(cal.Entries, e)
	}
	for _, p := range tl.Plans {
		for _, h := range p.History {
			kind, ok := historyKind(h)
			if !ok || !in(h.Time) {
				continue
			}
			cal.Entries = append(cal.Entries, Entry{Time: h.Time, Kind: kind, Plan: p.ID, Step: h.Step + 1, Flags: []string{p.Flag},
				Status: EntryDone, Late: h.Late, Summary: fmt.Sprintf("rollout %s %s → %s: %s", p.ID, h.From, h.To, h.Reason)})
		}
	}
	s := newSim(tl)
	s.run(to)
	for _, e := range s.log {
		if in(e.Time) {
			cal.Entries = append(cal.Entries, e)
		}
	}
	for i := range cal.Entries {
		if loc := zones[cal.Entries[i].Event]; loc != nil {
			cal.Entries[i].Local = localString(cal.Entries[i].Time, loc)
		}
	}
	// Stable: changes at the same time keep the order in which they
	// happened or will happen.
	slices.SortStableFunc(cal.Entries, func(a, b Entry) int { return a.Time.Compare(b.Time) })
	return cal
}

func localString(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("2006-01-02 15:04 MST")
}

func recordStatus(s RecordStatus) EntryStatus {
	switch s {
	case StatusDone:
		return EntryDone
	case StatusFailed:
		return EntryFailed
	case StatusSkipped:
		return EntrySkipped
	default:
		return EntryClaimed
	}
}

func historyKind(h HistoryEntry) (EntryKind, bool) {
	switch {
	case h.To == StatusRunning && (h.From == StatusDraft || h.From == StatusScheduled):
		return EntryPlanStart, true
	case h.To == StatusRunning && h.From == StatusRunning:
		return EntryPlanStep, true
	case h.To == StatusRunning && h.From == StatusPaused:
		return EntryPlanResume, true
	case h.To == StatusCompleted:
		return EntryPlanComplete, true
	case h.To == StatusPaused:
		return EntryPlanPause, true
	case h.To == StatusRolledBack:
		return EntryPlanRollback, true
	case h.To == StatusCancelled && h.From != StatusDraft && h.From != StatusScheduled:
		return EntryPlanCancel, true
	}
	return "", false
}
