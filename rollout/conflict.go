package rollout

import (
	"fmt"
	"slices"

	"github.com/solsticehq/solstice"
)

// ConflictKind names a kind of conflict between an event and the rest of
// the environment.
type ConflictKind string

// Conflict kinds.
const (
	// ConflictOverlap: another event changes the same flag in a window
	// that overlaps this one's.
	ConflictOverlap ConflictKind = "overlap"
	// ConflictStale: the flag's configuration was changed, by someone other
	// than the event, since the change was scheduled.
	ConflictStale ConflictKind = "stale_base"
	// ConflictRollout: a rollout plan the event does not start is under
	// way on the flag.
	ConflictRollout ConflictKind = "active_rollout"
)

// Conflict is one reason not to save an event as it is.
type Conflict struct {
	Kind ConflictKind `json:"kind"`
	// Pointer is the JSON pointer of the change concerned within the
	// event ("/phases/1/changes/0").
	Pointer string `json:"pointer"`
	Flag    string `json:"flag"`
	// With is the other event's key or the plan's ID.
	With    string `json:"with,omitempty"`
	Message string `json:"message"`
}

// FlagHead is the state of a flag's configuration that conflicts are
// checked against: the revision that last changed it and that revision's
// author.
type FlagHead struct {
	Revision int64  `json:"revision"`
	Author   string `json:"author"`
}

// ConflictInput is what DetectConflicts compares an event with.
type ConflictInput struct {
	Event Event
	// Others are the environment's other events (the stored version of
	// Event itself is skipped by key).
	Others []Event
	// Flags holds the current state of every flag Event changes.
	Flags map[string]FlagHead
	// Plans are the environment's plans.
	Plans []Plan
	// Applied names Event's phases already applied: their changes are
	// history and are not checked for staleness.
	Applied map[string]bool
}

// DetectConflicts returns what stands in the way of saving in.Event, in the
// order of its changes:
//
//   - another event that has not ended, whose window overlaps this one's
//     and which changes one of the same flags (ConflictOverlap, once per
//     flag and event);
//   - a change not yet applied whose BaseRevision is not the flag's current
//     revision, unless that revision was written by this event or by a plan
//     it starts (ConflictStale);
//   - a plan under way on one of the flags that this event does not start,
//     or a plan this event starts that another event starts too
//     (ConflictRollout).
//
// Events with an invalid time zone are not compared. It cannot fail.
func DetectConflicts(in ConflictInput) []Conflict {
	e := in.Event
	var out []Conflict
	times, err := e.Times()
	if err != nil {
		return nil
	}
	type ref struct {
		ptr     string
		change  Change
		applied bool
	}
	var refs []ref
	for i, p := range e.Phases {
		for j, c := range p.Changes {
			refs = append(refs, ref{fmt.Sprintf("/phases/%d/changes/%d", i, j), c, in.Applied[p.Name]})
		}
	}
	for j, c := range e.EndState {
		refs = append(refs, ref{fmt.Sprintf("/end_state/%d", j), c, false})
	}
	first := map[string]string{} // flag → pointer of its first change
	for _, r := range refs {
		if _, ok := first[r.change.Flag]; !ok {
			first[r.change.Flag] = r.ptr
		}
	}

	for _, o := range in.Others {
		if o.Key == e.Key {
			continue
		}
		for _, id := range e.Plans() {
			if slices.Contains(o.Plans(), id) {
				out = append(out, Conflict{Kind: ConflictRollout, Pointer: planPointer(e, id), With: id, Flag: planFlag(e, id),
					Message: fmt.Sprintf("rollout %s is also started by event %q: a plan runs once", id, o.Key)})
			}
		}
		ot, err := o.Times()
		if err != nil || !times.Start.Before(ot.Close) || !ot.Start.Before(times.Close) {
			continue
		}
		for _, f := range e.Flags() {
			if slices.Contains(o.Flags(), f) {
				out = append(out, Conflict{Kind: ConflictOverlap, Pointer: first[f], Flag: f, With: o.Key,
					Message: fmt.Sprintf("event %q also changes %s between %s and %s", o.Key, f, ot.Start.Format("2006-01-02 15:04 MST"), ot.Close.Format("2006-01-02 15:04 MST"))})
			}
		}
	}

	ours := []string{e.Actor().Name}
	for _, id := range e.Plans() {
		ours = append(ours, Plan{ID: id}.Actor().Name)
	}
	for _, r := range refs {
		head, ok := in.Flags[r.change.Flag]
		if r.applied || !ok || r.change.BaseRevision == 0 || head.Revision == r.change.BaseRevision || slices.Contains(ours, head.Author) {
			continue
		}
		out = append(out, Conflict{Kind: ConflictStale, Pointer: r.ptr, Flag: r.change.Flag,
			Message: fmt.Sprintf("%s was changed by %s since this change was scheduled (revision %d then, %d now): review it and save it with base_revision %d",
				r.change.Flag, head.Author, r.change.BaseRevision, head.Revision, head.Revision)})
	}

	for _, f := range e.Flags() {
		for _, p := range in.Plans {
			if p.Flag != f || !p.Status.Active() || slices.Contains(e.Plans(), p.ID) {
				continue
			}
			out = append(out, Conflict{Kind: ConflictRollout, Pointer: first[f], Flag: f, With: p.ID,
				Message: fmt.Sprintf("rollout %s of %s is %s; finish or cancel it, or start it from this event", p.ID, f, p.Status)})
		}
	}
	return out
}

// planPointer and planFlag return the pointer and the flag of the change of
// e that starts plan id.
func planPointer(e Event, id string) string {
	for i, p := range e.Phases {
		for j, c := range p.Changes {
			if c.Rollout == id {
				return fmt.Sprintf("/phases/%d/changes/%d", i, j)
			}
		}
	}
	return ""
}

func planFlag(e Event, id string) string {
	for _, p := range e.Phases {
		for _, c := range p.Changes {
			if c.Rollout == id {
				return c.Flag
			}
		}
	}
	return ""
}

// ConflictError returns a KindConflict *solstice.Error listing cs as field
// errors (nil when cs is empty).
func ConflictError(what string, cs []Conflict) error {
	if len(cs) == 0 {
		return nil
	}
	fs := make([]solstice.FieldError, len(cs))
	for i, c := range cs {
		fs[i] = solstice.FieldError{Pointer: c.Pointer, Message: c.Message}
	}
	noun := "conflicts"
	if len(cs) == 1 {
		noun = "conflict"
	}
	return &solstice.Error{Kind: solstice.KindConflict, Message: fmt.Sprintf("%s has %d %s with the schedule", what, len(cs), noun), Fields: fs}
}
