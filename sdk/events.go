package sdk

import (
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
)

// EventKind names what happened to a Client.
type EventKind int

// Event kinds. Ready, Stale, Error and Recovered are transitions of the
// client's Status; ConfigurationChanged and Rejected are reports that
// leave it as it is.
const (
	// EventReady: the first snapshot is held, from the control plane or
	// the last-known-good file. Evaluations serve configured values.
	EventReady EventKind = iota + 1
	// EventConfigurationChanged: a new snapshot changed the flags listed in
	// Event.FlagChanges.
	EventConfigurationChanged
	// EventStale: the held snapshot expired, or polls have failed for
	// longer than Config.StaleAfter. Evaluations go on from it.
	EventStale
	// EventError: the control plane refused the client's configuration
	// (401, 403, 404 and other 4xx answers: a wrong server key or
	// environment). Evaluations go on from the held snapshot, if any.
	EventError
	// EventRecovered: after Stale or Error, the control plane answered
	// again and the held snapshot is current: Ready again.
	EventRecovered
	// EventRejected: a snapshot failed verification (tampered, signed by
	// an unknown key, for another environment, a rollback, expired,
	// oversized or not compilable) and was refused; the held one is kept.
	// Event.Reason says why.
	EventRejected
)

var kindNames = map[EventKind]string{
	EventReady:                "READY",
	EventConfigurationChanged: "CONFIGURATION_CHANGED",
	EventStale:                "STALE",
	EventError:                "ERROR",
	EventRecovered:            "RECOVERED",
	EventRejected:             "REJECTED",
}

// String returns the kind's name in OpenFeature's style ("READY").
func (k EventKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is something that happened to a Client, delivered to the functions
// registered with Subscribe.
type Event struct {
	Kind EventKind
	// Version and Revision are those of the snapshot held after the event
	// (0 when none is held).
	Version  int64
	Revision int64
	// FlagChanges are the keys of the flags a new snapshot added, removed
	// or changed (also through a segment they use), sorted; for
	// EventConfigurationChanged only.
	FlagChanges []string
	// Reason is why a snapshot was refused, for EventRejected.
	Reason snapshot.Reason
	// Err is the cause of EventError, EventRejected and (when polls are
	// failing) EventStale.
	Err error
	// Message says what happened, for logs and provider events.
	Message string
	// At is the client clock's time of the event.
	At time.Time
}

// subscribers holds the functions events are delivered to.
type subscribers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(Event)
}

func (s *subscribers) add(f func(Event)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = map[int]func(Event){}
	}
	id := s.next
	s.next++
	s.fns[id] = f
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.fns, id)
	}
}

func (s *subscribers) list() []func(Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int, 0, len(s.fns))
	for id := range s.fns {
		ids = append(ids, id)
	}
	slices.Sort(ids) // in order of subscription
	out := make([]func(Event), len(ids))
	for i, id := range ids {
		out[i] = s.fns[id]
	}
	return out
}

// changedFlags returns the sorted keys of the flags that differ between
// two sets: added, removed, changed, or using a segment that changed.
// Both sets are sorted by key, as Compiled.Set returns them.
func changedFlags(old, cur flags.Set) []string {
	oldSegs := make(map[string]flags.Segment, len(old.Segments))
	for _, s := range old.Segments {
		oldSegs[s.Key] = s
	}
	changedSeg := map[string]bool{}
	for _, s := range cur.Segments {
		if o, ok := oldSegs[s.Key]; !ok || !reflect.DeepEqual(o, s) {
			changedSeg[s.Key] = true
		}
		delete(oldSegs, s.Key)
	}
	for k := range oldSegs { // removed
		changedSeg[k] = true
	}
	usesChanged := func(f flags.FlagState) bool {
		for _, r := range f.Rules {
			for _, c := range r.Conditions {
				if c.Segment != "" && changedSeg[c.Segment] {
					return true
				}
			}
		}
		return false
	}

	var out []string
	i, j := 0, 0
	for i < len(old.Flags) || j < len(cur.Flags) {
		switch {
		case j == len(cur.Flags) || (i < len(old.Flags) && old.Flags[i].Key < cur.Flags[j].Key):
			out = append(out, old.Flags[i].Key) // removed
			i++
		case i == len(old.Flags) || cur.Flags[j].Key < old.Flags[i].Key:
			out = append(out, cur.Flags[j].Key) // added
			j++
		default:
			if !reflect.DeepEqual(old.Flags[i], cur.Flags[j]) || usesChanged(cur.Flags[j]) {
				out = append(out, cur.Flags[j].Key)
			}
			i++
			j++
		}
	}
	return out
}
