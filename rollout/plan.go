package rollout

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Limits enforced by ValidatePlan.
const (
	MaxPlanIDLength = 100 // so that the plan's rule ID, "rollout-" + ID, is a valid key
	MaxSteps        = 20
	MaxGuardrails   = 20
)

// Plan is a staged rollout of one flag in one environment: the treatment
// variant ramps up through Steps, each served to a share of the players
// (optionally only within a segment), while a control group of the same
// size keeps the baseline experience under a variant of its own, so that
// guardrails can compare the two arms. The rest of the players stay on the
// baseline variant. See StepSplit for the bucketing.
//
// The fields above Status are the definition a person edits; the fields
// from Status down are the plan's runtime state, changed only by its
// transitions.
type Plan struct {
	ID          string `json:"id"` // unique within the environment
	Environment string `json:"environment"`
	Flag        string `json:"flag"`
	Description string `json:"description,omitempty"`
	// Treatment is the variant being rolled out; Control is a variant
	// serving the same value as Baseline, which everyone else keeps.
	Treatment string `json:"treatment"`
	Control   string `json:"control"`
	Baseline  string `json:"baseline"`
	// BucketBy and Salt are those of the plan's split (flags.Split); the
	// salt defaults to the plan's ID, so that two plans of one flag assign
	// players independently. They stay fixed for the plan's life.
	BucketBy string `json:"bucket_by,omitempty"`
	Salt     string `json:"salt,omitempty"`
	Steps    []Step `json:"steps"`
	Gates    Gates  `json:"gates"`
	// Manual plans only advance when a person says so; the gates are then
	// advice. Others advance by themselves as soon as every gate passes.
	Manual bool `json:"manual,omitempty"`
	// Experiment makes the plan an experiment: treatment and control of
	// equal size at every step (no step above half the players), and a
	// decision (ship, roll back or inconclusive, with the guardrails'
	// evidence) written once when the plan ends. See ExperimentDecision.
	Experiment bool `json:"experiment,omitempty"`

	Status Status `json:"status"`
	// StartAt is when a scheduled plan starts.
	StartAt *time.Time `json:"start_at,omitempty"`
	// Step is the index of the current step while running or paused (and
	// the last step reached afterwards); -1 before the plan starts.
	Step        int       `json:"step"`
	StepStarted time.Time `json:"step_started,omitzero"`
	// Approvals are the people's approvals to advance past steps.
	Approvals []Approval `json:"approvals,omitempty"`
	// Reason says why the plan is in its status.
	Reason string `json:"reason,omitempty"`
	// Revision is the revision that applied the plan's latest change.
	Revision int64 `json:"revision,omitempty"`
	// Pending is a change of the flag's configuration decided but not yet
	// known to be written.
	Pending *Pending `json:"pending,omitempty"`
	// History lists every transition, oldest first.
	History []HistoryEntry `json:"history,omitempty"`
	// ExperimentDecision is an experiment's decision, set by the
	// transition that ends it and stored with it, never changed after.
	// It is stored apart from the plan's document and served on its own
	// (Service.Decision), so it is not part of the plan's JSON.
	ExperimentDecision *ExperimentDecision `json:"-"`

	Version   int64     `json:"version"` // the ETag: one more per stored write
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Step is one stage of a ramp.
type Step struct {
	// Weight is the treatment's share in basis points (1 to Space): 500
	// is 5%. The control group gets as much, up to half the players.
	Weight int `json:"weight"`
	// Segment, if set, limits the step to the members of a segment: the
	// split then applies through a rule with an in_segment condition, and
	// everyone else keeps what the flag served them before the plan.
	Segment string `json:"segment,omitempty"`
	// MinDuration is how long the step lasts at least.
	MinDuration Duration `json:"min_duration"`
	// Approval makes advancing past this step wait for a person's
	// approval.
	Approval bool `json:"approval,omitempty"`
}

// Gates are the conditions, besides each step's minimum duration and
// approval, that every step must meet before the plan advances.
type Gates struct {
	// Guardrails are the keys of the flag's guardrails whose current test
	// must be past collecting (monitoring) before advancing. Whatever this
	// list, no plan advances while any guardrail of its flag is held or
	// tripped, and a tripped guardrail whose action is rollback rolls the
	// plan back.
	Guardrails []string `json:"guardrails,omitempty"`
	// MinSample is the exposures each arm needs within the step (0: no
	// minimum), measured by the scheduler's SampleSource.
	MinSample int64 `json:"min_sample,omitempty"`
}

// Approval records a person's approval to advance past a step.
type Approval struct {
	Step int       `json:"step"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// PendingKind names the configuration change a plan has pending.
type PendingKind string

// Pending kinds.
const (
	PendingStep     PendingKind = "step"     // apply the current step (at start, advance and resume)
	PendingRollback PendingKind = "rollback" // serve the baseline to the plan's audience
)

// Pending is a configuration change a plan decided and claimed, and is
// writing. Several schedulers may look at the plan; the one named in
// ClaimedBy writes, and another one takes over once the claim is older
// than its claim timeout. Revisions written for it carry ID in brackets in
// their message, so a retry finds a write that happened before a crash.
type Pending struct {
	ID        string      `json:"id"`
	Kind      PendingKind `json:"kind"`
	Step      int         `json:"step"`
	Head      int64       `json:"head"` // the environment's head revision when claimed
	ClaimedBy string      `json:"claimed_by"`
	ClaimedAt time.Time   `json:"claimed_at"`
}

// HistoryEntry is one transition in a plan's history.
type HistoryEntry struct {
	Time   time.Time `json:"time"`
	From   Status    `json:"from"`
	To     Status    `json:"to"`
	Step   int       `json:"step"`
	Weight int       `json:"weight,omitempty"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason"`
	// Late is how long after it was due the transition happened (a start
	// after its StartAt; an advance after the step's minimum duration,
	// including time spent waiting for the other gates).
	Late     Duration `json:"late,omitempty"`
	Revision int64    `json:"revision,omitempty"`
}

// Status is where a plan stands.
type Status string

// Statuses.
const (
	StatusDraft      Status = "draft"
	StatusScheduled  Status = "scheduled"
	StatusRunning    Status = "running"
	StatusPaused     Status = "paused"
	StatusCompleted  Status = "completed"
	StatusRolledBack Status = "rolled_back"
	StatusCancelled  Status = "cancelled"
)

// Statuses lists every status, in the order of the transition table.
var Statuses = []Status{StatusDraft, StatusScheduled, StatusRunning, StatusPaused, StatusCompleted, StatusRolledBack, StatusCancelled}

// transitions is the table of legal status changes, with what each means.
// running → running is the advance to the next step. Anything not listed
// is refused by Transition.
var transitions = map[[2]Status]string{
	{StatusDraft, StatusScheduled}:     "scheduled to start at a set time",
	{StatusDraft, StatusRunning}:       "started by a person or by a phase of its event",
	{StatusDraft, StatusCancelled}:     "cancelled before it ran",
	{StatusScheduled, StatusDraft}:     "unscheduled, to be edited or started otherwise",
	{StatusScheduled, StatusRunning}:   "its start time came, its event's phase started, or a person started it early",
	{StatusScheduled, StatusCancelled}: "cancelled before it ran",
	{StatusRunning, StatusRunning}:     "advanced to its next step",
	{StatusRunning, StatusPaused}:      "paused by a person, by a guardrail whose action is pause, or because its step could not be applied",
	{StatusRunning, StatusCompleted}:   "the last step's gates passed",
	{StatusRunning, StatusRolledBack}:  "a guardrail tripped, or a person aborted it: the baseline is served again",
	{StatusRunning, StatusCancelled}:   "its event ended, and the event sets the flag back",
	{StatusPaused, StatusRunning}:      "resumed by a person: the current step starts again, with new guardrail tests",
	{StatusPaused, StatusRolledBack}:   "a guardrail tripped, or a person aborted it: the baseline is served again",
	{StatusPaused, StatusCancelled}:    "its event ended, and the event sets the flag back",
}

// Transition reports whether a plan may move from one status to another.
// It returns nil for a legal transition and a KindConflict *solstice.Error
// saying why for any other.
func Transition(from, to Status) error {
	if _, ok := transitions[[2]Status{from, to}]; ok {
		return nil
	}
	switch {
	case !knownStatus(from) || !knownStatus(to):
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %q → %q: unknown status", from, to)
	case from.Terminal():
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %s → %s: a %s plan is finished; create a new plan to roll out again", from, to, from)
	case from == to:
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %s → %s: it is already %s", from, to, to)
	case to == StatusPaused:
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %s → %s: only a running plan can be paused", from, to)
	case to == StatusCompleted:
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %s → %s: only a running plan completes, when its last step's gates pass", from, to)
	case to == StatusRolledBack:
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %s → %s: only a running or paused plan can be rolled back; one that never ran is cancelled", from, to)
	case to == StatusDraft || to == StatusScheduled:
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %s → %s: a plan that has started cannot go back to %s", from, to, to)
	default:
		return solstice.Errorf(solstice.KindConflict, "illegal rollout transition %s → %s", from, to)
	}
}

// TransitionReason returns what the legal transition from → to means, or
// "" for an illegal one.
func TransitionReason(from, to Status) string { return transitions[[2]Status{from, to}] }

// Terminal reports whether s is final: completed, rolled back or cancelled.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusRolledBack || s == StatusCancelled
}

// Active reports whether a plan in status s is under way or about to be:
// scheduled, running or paused.
func (s Status) Active() bool {
	return s == StatusScheduled || s == StatusRunning || s == StatusPaused
}

func knownStatus(s Status) bool { return slices.Contains(Statuses, s) }

// RuleID returns the ID of the rule through which the plan's segment-limited
// steps apply.
func RuleID(planID string) string { return "rollout-" + planID }

// Actor returns the system actor that authors the plan's revisions.
func (p Plan) Actor() solstice.Actor { return solstice.System("rollout:" + p.ID) }

// Current returns the current step, and false before the plan started.
func (p Plan) Current() (Step, bool) {
	if p.Step < 0 || p.Step >= len(p.Steps) {
		return Step{}, false
	}
	return p.Steps[p.Step], true
}

// Approved reports whether a person approved advancing past step i.
func (p Plan) Approved(i int) bool {
	return slices.ContainsFunc(p.Approvals, func(a Approval) bool { return a.Step == i })
}

// ValidatePlan checks a plan's definition on its own: keys, variants, steps
// (weights from 1 to Space that never decrease, at most Space/2 in an
// experiment, whose arms must be of equal size; a segment, once dropped,
// not taken up again, and never changed for another), gates. What depends
// on other objects (the flag's variants, segments and guardrails) is
// checked by Service. It returns nil or a KindInvalid *solstice.Error
// listing every problem with its JSON pointer.
func ValidatePlan(p Plan) error {
	var fs []solstice.FieldError
	add := func(ptr, format string, args ...any) {
		fs = append(fs, solstice.FieldError{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
	}
	if !flags.ValidKey(p.ID) || len(p.ID) > MaxPlanIDLength {
		add("/id", "must be 1 to %d characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", MaxPlanIDLength)
	}
	if p.Environment == "" {
		add("/environment", "is required")
	}
	if !flags.ValidKey(p.Flag) {
		add("/flag", "must be a flag key")
	}
	if len(p.Description) > flags.MaxDescriptionLength {
		add("/description", "must be at most %d characters", flags.MaxDescriptionLength)
	}
	variants := map[string]string{}
	for _, v := range []struct{ ptr, key string }{{"/treatment", p.Treatment}, {"/control", p.Control}, {"/baseline", p.Baseline}} {
		switch other, dup := variants[v.key]; {
		case !flags.ValidKey(v.key):
			add(v.ptr, "must be a variant key")
		case dup:
			add(v.ptr, "must differ from %s: the treatment, control and baseline are three variants", other[1:])
		default:
			variants[v.key] = v.ptr
		}
	}
	if len(p.BucketBy) > flags.MaxSplitFieldLength {
		add("/bucket_by", "must be at most %d characters", flags.MaxSplitFieldLength)
	}
	if len(p.Salt) > flags.MaxSplitFieldLength {
		add("/salt", "must be at most %d characters", flags.MaxSplitFieldLength)
	}
	switch {
	case len(p.Steps) == 0:
		add("/steps", "must list at least one step")
	case len(p.Steps) > MaxSteps:
		add("/steps", "at most %d steps are allowed, got %d", MaxSteps, len(p.Steps))
	}
	prev := Step{}
	for i, s := range p.Steps {
		sp := "/steps/" + strconv.Itoa(i)
		switch {
		case s.Weight < 1 || s.Weight > Space:
			add(sp+"/weight", "must be from 1 to %d basis points (%d is 100%%)", Space, Space)
		case i > 0 && s.Weight < prev.Weight:
			add(sp+"/weight", "must not be below the previous step's %d: a ramp only grows (pause or abort it instead)", prev.Weight)
		}
		if s.Segment != "" && !flags.ValidKey(s.Segment) {
			add(sp+"/segment", "must be a segment key")
		}
		if i > 0 && s.Segment != prev.Segment && s.Segment != "" {
			if prev.Segment == "" {
				add(sp+"/segment", "a ramp that reached everyone cannot be limited to a segment again")
			} else {
				add(sp+"/segment", "must stay %q or be dropped: changing the segment would take the treatment from players who have it", prev.Segment)
			}
		}
		if s.MinDuration < 0 {
			add(sp+"/min_duration", "must not be negative")
		}
		prev = s
	}
	if len(p.Gates.Guardrails) > MaxGuardrails {
		add("/gates/guardrails", "at most %d guardrails are allowed, got %d", MaxGuardrails, len(p.Gates.Guardrails))
	}
	for i, g := range p.Gates.Guardrails {
		if !flags.ValidKey(g) {
			add("/gates/guardrails/"+strconv.Itoa(i), "must be a guardrail key")
		} else if slices.Index(p.Gates.Guardrails, g) < i {
			add("/gates/guardrails/"+strconv.Itoa(i), "%q is listed twice", g)
		}
	}
	if p.Gates.MinSample < 0 {
		add("/gates/min_sample", "must not be negative")
	}
	if p.Experiment {
		for i, s := range p.Steps {
			if s.Weight > Space/2 && s.Weight <= Space {
				add("/steps/"+strconv.Itoa(i)+"/weight", "must be at most %d basis points (50%%) in an experiment, whose arms are of equal size: at %d the control group would only get %d",
					Space/2, s.Weight, ControlWeight(s.Weight))
			}
		}
	}
	if len(fs) > 0 {
		return solstice.Invalid(fmt.Sprintf("invalid rollout plan %q", p.ID), fs...)
	}
	return nil
}

// NOTE: the transitions below are pure: they return the next plan (its
// Version unchanged; the store bumps it) or a KindConflict error, and the
// runner stores the result with a compare-and-swap on the version. The
// history entry of a transition that writes the flag gets its revision when
// the write finishes.

// pendingID names the change a plan claims in the version it is stored at.
func pendingID(p Plan) string {
	return fmt.Sprintf("plan/%s/%s/%d", p.Environment, p.ID, p.Version+1)
}

func (p Plan) move(to Status, now time.Time, by solstice.Actor, reason string, late time.Duration) (Plan, error) {
	if err := Transition(p.Status, to); err != nil {
		return p, err
	}
	next := p
	next.History = append(slices.Clone(p.History), HistoryEntry{
		Time: now, From: p.Status, To: to, Actor: by.Name, Reason: reason, Late: Duration(max(late, 0)),
	})
	next.Status, next.Reason = to, reason
	return next, nil
}

func (p *Plan) stepEntry() {
	e := &p.History[len(p.History)-1]
	e.Step = p.Step
	if s, ok := p.Current(); ok {
		e.Weight = s.Weight
	}
}

func (p Plan) claim(kind PendingKind, head int64, by string, now time.Time) Plan {
	p.Pending = &Pending{ID: pendingID(p), Kind: kind, Step: p.Step, Head: head, ClaimedBy: by, ClaimedAt: now}
	return p
}

// Schedule returns p scheduled to start at at. It returns a KindConflict
// error unless p is a draft.
func (p Plan) Schedule(at, now time.Time, by solstice.Actor) (Plan, error) {
	next, err := p.move(StatusScheduled, now, by, "scheduled by "+by.Name+" to start at "+at.UTC().Format(time.RFC3339), 0)
	if err != nil {
		return p, err
	}
	at = at.UTC()
	next.StartAt = &at
	return next, nil
}

// Unschedule returns a scheduled p back in draft. It returns a KindConflict
// error unless p is scheduled.
func (p Plan) Unschedule(now time.Time, by solstice.Actor) (Plan, error) {
	next, err := p.move(StatusDraft, now, by, "unscheduled by "+by.Name, 0)
	if err != nil {
		return p, err
	}
	next.StartAt = nil
	return next, nil
}

// Begin returns p running its first step as of now, with that step's
// configuration pending, claimed by the scheduler instance claimant. late
// is how long after its due time the start happens. It returns a
// KindConflict error unless p is a draft or scheduled.
func (p Plan) Begin(now time.Time, by solstice.Actor, reason string, late time.Duration, head int64, claimant string) (Plan, error) {
	next, err := p.move(StatusRunning, now, by, reason, late)
	if err != nil {
		return p, err
	}
	next.Step, next.StepStarted, next.Approvals = 0, now, nil
	next.stepEntry()
	return next.claim(PendingStep, head, claimant, now), nil
}

// Advance returns p moved to its next step as of now (with that step's
// configuration pending), or completed after its last step. It returns a
// KindConflict error unless p is running without a pending change.
func (p Plan) Advance(now time.Time, by solstice.Actor, reason string, late time.Duration, head int64, claimant string) (Plan, error) {
	if p.Status == StatusRunning && p.Pending != nil {
		return p, solstice.Errorf(solstice.KindConflict, "rollout %s: its change %s is still being applied", p.ID, p.Pending.ID)
	}
	if p.Status == StatusRunning && p.Step+1 >= len(p.Steps) {
		next, err := p.move(StatusCompleted, now, by, reason, late)
		if err != nil {
			return p, err
		}
		next.stepEntry()
		return next, nil
	}
	next, err := p.move(StatusRunning, now, by, reason, late)
	if err != nil {
		return p, err
	}
	next.Step++
	next.StepStarted = now
	next.stepEntry()
	return next.claim(PendingStep, head, claimant, now), nil
}

// Pause returns p paused. It returns a KindConflict error unless p is
// running.
func (p Plan) Pause(now time.Time, by solstice.Actor, reason string) (Plan, error) {
	next, err := p.move(StatusPaused, now, by, reason, 0)
	if err != nil {
		return p, err
	}
	next.stepEntry()
	return next, nil
}

// Resume returns a paused p running again: its current step starts over as
// of now and its configuration is applied again. It returns a KindConflict
// error unless p is paused.
func (p Plan) Resume(now time.Time, by solstice.Actor, head int64, claimant string) (Plan, error) {
	if p.Status != StatusPaused {
		// draft → running is a legal transition, but it is Start's: a plan
		// that never ran has no step to start over.
		return p, solstice.Errorf(solstice.KindConflict, "rollout %s is %s: only a paused plan resumes", p.ID, p.Status)
	}
	next, err := p.move(StatusRunning, now, by, "resumed by "+by.Name+": the step starts over", 0)
	if err != nil {
		return p, err
	}
	next.StepStarted = now
	next.stepEntry()
	return next.claim(PendingStep, head, claimant, now), nil
}

// RollBack returns p rolled back, with the configuration that serves the
// baseline to its audience pending. It returns a KindConflict error unless
// p is running or paused.
func (p Plan) RollBack(now time.Time, by solstice.Actor, reason string, head int64, claimant string) (Plan, error) {
	next, err := p.move(StatusRolledBack, now, by, reason, 0)
	if err != nil {
		return p, err
	}
	next.stepEntry()
	return next.claim(PendingRollback, head, claimant, now), nil
}

// Cancel returns p cancelled; a pending change is dropped (an event's end,
// which cancels its plans, sets the flag back itself). It returns a
// KindConflict error when p is finished.
func (p Plan) Cancel(now time.Time, by solstice.Actor, reason string) (Plan, error) {
	next, err := p.move(StatusCancelled, now, by, reason, 0)
	if err != nil {
		return p, err
	}
	next.stepEntry()
	next.Pending = nil
	return next, nil
}

// Approve returns p with step approved by by. It returns a KindConflict
// error unless p is running or paused at that step and the step asks for
// an approval.
func (p Plan) Approve(step int, now time.Time, by solstice.Actor) (Plan, error) {
	if p.Status != StatusRunning && p.Status != StatusPaused {
		return p, solstice.Errorf(solstice.KindConflict, "rollout %s is %s: only a running or paused plan's step can be approved", p.ID, p.Status)
	}
	if step != p.Step {
		return p, solstice.Errorf(solstice.KindConflict, "rollout %s is at step %d, not %d: reload it and approve the step it is at", p.ID, p.Step+1, step+1)
	}
	if !p.Steps[step].Approval {
		return p, solstice.Errorf(solstice.KindConflict, "step %d of rollout %s does not ask for an approval", step+1, p.ID)
	}
	if p.Approved(step) {
		return p, solstice.Errorf(solstice.KindConflict, "step %d of rollout %s is already approved", step+1, p.ID)
	}
	next := p
	next.Approvals = append(slices.Clone(p.Approvals), Approval{Step: step, By: by.Name, At: now})
	return next, nil
}

// finish returns p with its pending change done: the revision that applied
// it (0 when none was needed) is recorded in the latest history entry.
func (p Plan) finish(rev int64, note string) Plan {
	p.Pending = nil
	p.History = slices.Clone(p.History)
	if rev > 0 {
		p.Revision = rev
		if n := len(p.History); n > 0 {
			p.History[n-1].Revision = rev
		}
	}
	if note != "" {
		p.Reason = note
	}
	return p
}
