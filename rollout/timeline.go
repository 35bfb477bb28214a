package rollout

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Timeline is everything that decides an environment's configuration in
// the future: its content now, its events with the records of their
// changes so far, and its plans.
type Timeline struct {
	Set     flags.Set `json:"set"`
	Now     time.Time `json:"now"`
	Events  []Event   `json:"events"`
	Plans   []Plan    `json:"plans"`
	Records []Record  `json:"records"`
}

// At returns the flag set that will be in force at t, with the changes
// that will have been applied by then, in the order the Scheduler applies
// them:
//
//   - changes already due but not yet applied, at Now;
//   - each event's phases at their start and its end at its end (or
//     cancellation), with the end setting back what the event changed
//     from the configuration captured when it first changed each flag;
//   - each plan's start at its StartAt or its event's phase, and each step
//     after the previous one's minimum duration.
//
// It is a projection: it assumes every gate passes as soon as the minimum
// duration allows and no guardrail trips, so with approvals, sample gates
// or a trip the real ramp is later or stops. The result's Revision is the
// current one. It returns a KindInvalid error for a t before Now (use the
// revision history for the past).
func (tl Timeline) At(t time.Time) (flags.Set, error) {
	if t.Before(tl.Now) {
		return flags.Set{}, solstice.Invalid("invalid preview time", solstice.FieldError{Pointer: "/at",
			Message: fmt.Sprintf("%s is before now (%s): the preview looks forward; the revisions show the past", t.UTC().Format(time.RFC3339), tl.Now.UTC().Format(time.RFC3339))})
	}
	s := newSim(tl)
	s.run(t)
	return s.set(), nil
}

// Preview evaluates flag for evalCtx on the configuration in force at t
// (see At), with the same compiler and evaluator as the live service. It
// returns At's errors and flags.Compile's (KindInvalid) when the projected
// set does not compile.
func (tl Timeline) Preview(t time.Time, flag string, evalCtx flags.Context) (flags.Result, error) {
	set, err := tl.At(t)
	if err != nil {
		return flags.Result{}, err
	}
	c, err := flags.Compile(set)
	if err != nil {
		return flags.Result{}, err
	}
	return flags.Evaluate(c, flag, evalCtx), nil
}

// sim is the projection behind At and BuildCalendar.
type sim struct {
	tl       Timeline
	configs  map[string]flags.Config
	plans    map[string]*Plan
	recs     map[string]Record
	events   []Event
	times    map[string]Times // by event UID
	done     map[string]bool  // change IDs applied (or skipped) by the simulation
	captured map[string]map[string]*flags.Config
	applied  map[string]map[string]bool
	log      []Entry
}

func newSim(tl Timeline) *sim {
	s := &sim{
		tl: tl, configs: map[string]flags.Config{}, plans: map[string]*Plan{}, recs: map[string]Record{},
		times: map[string]Times{}, done: map[string]bool{}, captured: map[string]map[string]*flags.Config{},
		applied: map[string]map[string]bool{},
	}
	for _, f := range tl.Set.Flags {
		s.configs[f.Key] = cloneConfig(f.Config)
	}
	for _, p := range tl.Plans {
		p.History = nil // not needed, and may be long
		s.plans[p.ID] = &p
	}
	for _, r := range tl.Records {
		if old, ok := s.recs[r.ID]; !ok || r.Attempt >= old.Attempt {
			s.recs[r.ID] = r
		}
	}
	for _, ev := range tl.Events {
		t, err := ev.Times()
		if err != nil {
			continue
		}
		s.times[ev.UID] = t
		s.events = append(s.events, ev)
		s.captured[ev.UID] = capturedBefore(ev, tl.Records)
		s.applied[ev.UID] = map[string]bool{}
		for _, ph := range ev.Phases {
			if r, ok := s.recs[PhaseChangeID(ev, ph.Name)]; ok && (r.Status == StatusDone || r.Status == StatusFailed) {
				s.applied[ev.UID][ph.Name] = true
			}
		}
	}
	slices.SortStableFunc(s.events, func(a, b Event) int {
		return cmp.Or(s.times[a.UID].Start.Compare(s.times[b.UID].Start), cmp.Compare(a.Key, b.Key))
	})
	return s
}

func (s *sim) set() flags.Set {
	out := s.tl.Set
	out.Flags = make([]flags.FlagState, len(s.tl.Set.Flags))
	for i, f := range s.tl.Set.Flags {
		out.Flags[i] = flags.FlagState{Key: f.Key, Type: f.Type, Config: s.configs[f.Key]}
	}
	return out
}

// final reports whether the change id is finished, in the records or in
// the simulation.
func (s *sim) final(id string) bool {
	if s.done[id] {
		return true
	}
	r, ok := s.recs[id]
	return ok && r.Status != StatusClaimed
}

type simAction struct {
	at    time.Time
	class int // 0: event, 1: plan (the order of a Tick)
	rank  int
	run   func(at time.Time)
}

func (s *sim) next() (simAction, bool) {
	var best simAction
	found := false
	consider := func(a simAction) {
		if !found || a.at.Before(best.at) || a.at.Equal(best.at) && (a.class < best.class || a.class == best.class && a.rank < best.rank) {
			best, found = a, true
		}
	}
	for i, ev := range s.events {
		if a, ok := s.nextOfEvent(ev); ok {
			a.rank = i
			consider(a)
		}
	}
	ids := make([]string, 0, len(s.plans))
	for id := range s.plans {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if a, ok := s.nextOfPlan(s.plans[id]); ok {
			a.class, a.rank = 1, i
			consider(a)
		}
	}
	return best, found
}

func (s *sim) run(until time.Time) {
	// Every action consumes a phase, an end, a start, a step or a pending
	// change, so the loop ends; the bound only guards against a bug.
	limit := 10 + 2*len(s.tl.Plans)*(MaxSteps+2)
	for _, ev := range s.events {
		limit += len(ev.Phases) + 1
	}
	for range limit {
		a, ok := s.next()
		if !ok || a.at.After(until) {
			return
		}
		a.run(a.at)
	}
}

func (s *sim) at(due time.Time) time.Time {
	if due.Before(s.tl.Now) {
		return s.tl.Now
	}
	return due
}

func (s *sim) status(due time.Time) EntryStatus {
	if due.Before(s.tl.Now) {
		return EntryDue
	}
	return EntryScheduled
}

func (s *sim) nextOfEvent(ev Event) (simAction, bool) {
	times := s.times[ev.UID]
	for i, ph := range ev.Phases {
		due := times.Phases[i]
		if !due.Before(times.Close) {
			break
		}
		id := PhaseChangeID(ev, ph.Name)
		if s.final(id) {
			continue
		}
		return simAction{at: s.at(due), run: func(at time.Time) { s.phase(ev, i, due, at) }}, true
	}
	if s.final(EndChangeID(ev)) {
		return simAction{}, false
	}
	return simAction{at: s.at(times.Close), run: func(at time.Time) { s.end(ev, times.Close, at) }}, true
}

func (s *sim) anyApplied(ev Event) bool {
	if len(s.applied[ev.UID]) > 0 {
		return true
	}
	for _, ph := range ev.Phases {
		if r, ok := s.recs[PhaseChangeID(ev, ph.Name)]; ok && r.Status == StatusClaimed {
			return true
		}
	}
	return false
}

func (s *sim) phase(ev Event, i int, due, at time.Time) {
	ph := ev.Phases[i]
	id := PhaseChangeID(ev, ph.Name)
	s.done[id] = true
	s.log = append(s.log, Entry{Time: due, Kind: EntryPhase, Event: ev.Key, Phase: ph.Name, Status: s.status(due), Flags: []string{},
		Summary: fmt.Sprintf("phase %s of %s starts", ph.Name, ev.Name)})
	ei := len(s.log) - 1 // an index: starting a plan appends to s.log
	if !s.times[ev.UID].Close.After(at) && !s.anyApplied(ev) {
		s.log[ei].Status, s.log[ei].Summary = EntrySkipped, "the event will be over when its phase is applied"
		return
	}
	for _, g := range groupByFlag(ph.Changes) {
		cfg, ok := s.configs[g.flag]
		if !ok {
			continue
		}
		s.log[ei].Flags = append(s.log[ei].Flags, g.flag)
		if s.captured[ev.UID][g.flag] == nil {
			before := cloneConfig(cfg)
			s.captured[ev.UID][g.flag] = &before
		}
		next := cfg
		for _, c := range g.changes {
			if c.Rollout != "" {
				continue
			}
			var err error
			if next, err = applyChange(next, c); err != nil {
				next = cfg // the scheduler writes all of a flag's changes or none
				break
			}
		}
		s.configs[g.flag] = next
		for _, c := range g.changes {
			if p := s.plans[c.Rollout]; c.Rollout != "" && p != nil && p.Flag == g.flag && (p.Status == StatusDraft || p.Status == StatusScheduled) && !s.busy(p) {
				s.start(p, at)
			}
		}
	}
	s.applied[ev.UID][ph.Name] = true
}

func (s *sim) end(ev Event, due, at time.Time) {
	s.done[EndChangeID(ev)] = true
	entry := Entry{Time: due, Kind: EntryEnd, Event: ev.Key, Status: s.status(due), Flags: []string{}}
	if !s.anyApplied(ev) && ev.CancelledAt != nil {
		entry.Status, entry.Summary = EntrySkipped, "the event was cancelled before it started"
		s.log = append(s.log, entry)
		return
	}
	for _, id := range ev.Plans() {
		if p := s.plans[id]; p != nil && !p.Status.Terminal() {
			p.Status, p.Pending = StatusCancelled, nil
		}
	}
	touched := map[string]*fields{}
	for _, ph := range ev.Phases {
		if !s.applied[ev.UID][ph.Name] {
			continue
		}
		for _, c := range ph.Changes {
			if touched[c.Flag] == nil {
				touched[c.Flag] = &fields{}
			}
			touched[c.Flag].add(c)
		}
	}
	for _, flag := range ev.Flags() {
		cfg, ok := s.configs[flag]
		if !ok {
			continue
		}
		if next, err := endConfig(ev, flag, cfg, s.captured[ev.UID][flag], touched[flag]); err == nil {
			s.configs[flag] = next
			entry.Flags = append(entry.Flags, flag)
		}
	}
	entry.Summary = fmt.Sprintf("%s ends", ev.Name)
	s.log = append(s.log, entry)
}

// busy reports whether another plan of p's flag is running or paused.
func (s *sim) busy(p *Plan) bool {
	for _, o := range s.plans {
		if o.ID != p.ID && o.Flag == p.Flag && (o.Status == StatusRunning || o.Status == StatusPaused) {
			return true
		}
	}
	return false
}

func (s *sim) start(p *Plan, at time.Time) {
	p.Status, p.Step, p.StepStarted, p.Pending = StatusRunning, 0, at, nil
	if cfg, ok := s.configs[p.Flag]; ok {
		s.configs[p.Flag] = StepConfig(*p, cfg, 0)
	}
	s.log = append(s.log, Entry{Time: at, Kind: EntryPlanStart, Plan: p.ID, Step: 1, Flags: []string{p.Flag}, Status: EntryProjected,
		Summary: fmt.Sprintf("rollout %s starts: treatment %s, control %s", p.ID, pct(p.Steps[0].Weight), pct(ControlWeight(p.Steps[0].Weight)))})
}

func (s *sim) nextOfPlan(p *Plan) (simAction, bool) {
	switch {
	case p.Pending != nil:
		return simAction{at: s.tl.Now, run: func(time.Time) { s.applyPending(p) }}, true
	case p.Status == StatusScheduled && p.StartAt != nil:
		due := *p.StartAt
		return simAction{at: s.at(due), run: func(at time.Time) {
			if !s.busy(p) {
				s.start(p, at)
				s.log[len(s.log)-1].Status = s.status(due)
			} else {
				p.Status = StatusCancelled
			}
		}}, true
	case p.Status == StatusRunning:
		step, ok := p.Current()
		if !ok {
			return simAction{}, false
		}
		return simAction{at: s.at(p.StepStarted.Add(time.Duration(step.MinDuration))), run: func(at time.Time) { s.advance(p, at) }}, true
	}
	return simAction{}, false
}

func (s *sim) applyPending(p *Plan) {
	pd := p.Pending
	p.Pending = nil
	cfg, ok := s.configs[p.Flag]
	if !ok {
		return
	}
	switch pd.Kind {
	case PendingRollback:
		s.configs[p.Flag], _ = RolledBackConfig(*p, cfg)
	default:
		s.configs[p.Flag] = StepConfig(*p, cfg, pd.Step)
	}
}

func (s *sim) advance(p *Plan, at time.Time) {
	if p.Step+1 >= len(p.Steps) {
		p.Status = StatusCompleted
		s.log = append(s.log, Entry{Time: at, Kind: EntryPlanComplete, Plan: p.ID, Step: p.Step + 1, Flags: []string{p.Flag}, Status: EntryProjected,
			Summary: fmt.Sprintf("rollout %s completes at %s", p.ID, pct(p.Steps[p.Step].Weight))})
		return
	}
	p.Step++
	p.StepStarted = at
	if cfg, ok := s.configs[p.Flag]; ok {
		s.configs[p.Flag] = StepConfig(*p, cfg, p.Step)
	}
	w := p.Steps[p.Step].Weight
	s.log = append(s.log, Entry{Time: at, Kind: EntryPlanStep, Plan: p.ID, Step: p.Step + 1, Flags: []string{p.Flag}, Status: EntryProjected,
		Summary: fmt.Sprintf("rollout %s step %d: treatment %s, control %s", p.ID, p.Step+1, pct(w), pct(ControlWeight(w)))})
}
