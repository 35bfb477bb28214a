package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
)

// Store persists plans, events and the records of scheduled changes. It is
// implemented by package store. Errors are *solstice.Error values:
// KindNotFound for a missing row (never a zero value with a nil error),
// KindConflict for a duplicate, KindPreconditionFailed for a failed version
// expectation, KindInvalid for a malformed argument.
type Store interface {
	// ListPlans returns the plans f selects, sorted by environment and ID.
	ListPlans(ctx context.Context, f PlanFilter) ([]Plan, error)
	// GetPlan returns one plan.
	GetPlan(ctx context.Context, env, id string) (Plan, error)
	// PutPlan stores p if the stored plan's version is expect (0: it must
	// not exist yet, KindConflict if it does; flags.AnyVersion: any stored
	// version), with the audit entries, atomically. It returns the plan as
	// stored: Version one more than before, UpdatedAt (and on creation
	// CreatedAt) set by the store. The environment and the flag must exist
	// (KindNotFound).
	PutPlan(ctx context.Context, p Plan, expect int64, audit []solstice.AuditEntry) (Plan, error)
	// DeletePlan removes a plan if its version is expect (or any with
	// flags.AnyVersion), with the audit entry, atomically.
	DeletePlan(ctx context.Context, env, id string, expect int64, audit solstice.AuditEntry) error

	// ListEvents returns the events f selects, sorted by environment and
	// start.
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)
	// GetEvent returns one event.
	GetEvent(ctx context.Context, env, key string) (Event, error)
	// PutEvent stores e like PutPlan stores a plan. The environment must
	// exist (KindNotFound); e.UID must be unique (KindConflict).
	PutEvent(ctx context.Context, e Event, expect int64, audit []solstice.AuditEntry) (Event, error)
	// DeleteEvent removes an event like DeletePlan removes a plan. The
	// records of its scheduled changes stay.
	DeleteEvent(ctx context.Context, env, key string, expect int64, audit solstice.AuditEntry) error

	// ClaimChange claims the scheduled change r.ID for r.ClaimedBy: it
	// stores r (Status StatusClaimed, Attempt 1) when no record of that ID
	// exists, or takes over a record still claimed whose ClaimedAt is
	// before staleBefore (Attempt one more, ClaimedBy and ClaimedAt from r;
	// its other fields kept), and returns the stored record and true. It
	// returns the stored record and false when the change is finished or
	// claimed by someone else since staleBefore. Of several processes
	// claiming one change, exactly one gets true.
	ClaimChange(ctx context.Context, r Record, staleBefore time.Time) (Record, bool, error)
	// FinishChange stores r (its Status finished, AppliedAt, Late, Writes
	// and Outcome) over the record of r.ID if that record is still claimed
	// at r.Attempt, with the audit entries, atomically; otherwise it
	// returns a KindConflict error (the claim was lost) and stores nothing.
	// Finishing an event's end (KindEventEnd) closes the event: EventFilter
	// Open no longer selects it.
	FinishChange(ctx context.Context, r Record, audit []solstice.AuditEntry) (Record, error)
	// ListChanges returns the records f selects, sorted by due time and ID.
	ListChanges(ctx context.Context, f RecordFilter) ([]Record, error)
}

// PlanFilter selects plans; zero fields match everything.
type PlanFilter struct {
	Environment string
	Flag        string
	// Active keeps the plans the scheduler may have to act on: scheduled,
	// running or paused, or with a pending change.
	Active bool
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	Environment string
	// Open keeps the events whose end has not been recorded yet.
	Open bool
	// From and To keep the events whose window [start, end) overlaps
	// [From, To) (a zero bound is open).
	From, To time.Time
}

// RecordFilter selects records of scheduled changes; zero fields match
// everything.
type RecordFilter struct {
	Environment string
	EventUID    string // the records of one event
	// From and To keep the records due in [From, To) (a zero bound is
	// open).
	From, To time.Time
}

// Flags is the flags domain service every change goes through, so that a
// scheduled change is a revision with an audit entry like a person's edit.
// *flags.Service implements it.
type Flags interface {
	GetConfig(ctx context.Context, env, key string) (flags.FlagConfig, error)
	PutConfig(ctx context.Context, env, key string, c flags.Config, expect int64, message string) (flags.Revision, error)
	Set(ctx context.Context, env string) (flags.Set, error)
	Heads(ctx context.Context) (map[string]int64, error)
	ListRevisions(ctx context.Context, env string, f flags.RevisionFilter) ([]flags.Revision, error)
	GetRevision(ctx context.Context, env string, n int64) (flags.Revision, error)
}

var _ Flags = (*flags.Service)(nil)

// Guardrails reads the guardrails of a flag and their states, and starts a
// new test on new data when a rollout step starts. package store implements
// it (guardrails.Store).
type Guardrails interface {
	// ListGuardrails returns the definitions of env's flag.
	ListGuardrails(ctx context.Context, env, flag string) ([]guardrails.Definition, error)
	guardrails.StateStore
}

// EvidenceSource reads what an experiment's decision rests on: a
// guardrail evaluated now, with its counters, estimate, confidence
// sequence and p-value (guardrails.Detail), and the incidents it raised.
// *guardrails.Service implements it; cmd wires it with WithEvidence.
type EvidenceSource interface {
	// Status evaluates guardrail ref now without changing anything. It
	// returns KindNotFound for an unknown guardrail; counters that cannot
	// be read show as a hold in the verdict.
	Status(ctx context.Context, ref guardrails.Ref) (guardrails.Detail, error)
	// Incidents lists the incidents f selects, newest first.
	Incidents(ctx context.Context, f guardrails.IncidentFilter) ([]guardrails.Record, error)
}

var _ EvidenceSource = (*guardrails.Service)(nil)

// Sample is the size of both arms of a ramp: exposed units (players or
// sessions) since the current step started.
type Sample struct {
	Treatment int64 `json:"treatment"`
	Control   int64 `json:"control"`
}

// SampleSource measures the arms of a running plan for its minimum-sample
// gate. CounterSample adapts the guardrails' counters.
type SampleSource interface {
	// Sample returns the exposures of p's treatment and control variants
	// counted since the given time, or the error that prevented it (the
	// gate then does not pass).
	Sample(ctx context.Context, p Plan, since time.Time) (Sample, error)
}

// CounterSample returns a SampleSource that reads the exposures of the arms
// from the guardrails' telemetry counters.
func CounterSample(src guardrails.CounterSource) SampleSource { return counterSample{src} }

type counterSample struct{ src guardrails.CounterSource }

// Sample implements SampleSource. It returns the counter source's error.
func (c counterSample) Sample(ctx context.Context, p Plan, since time.Time) (Sample, error) {
	r := guardrails.Rule{
		Ref:       guardrails.Ref{Environment: p.Environment, Flag: p.Flag, Key: "rollout-" + p.ID},
		Metric:    guardrails.RejectRate(),
		Treatment: p.Treatment, Control: p.Control,
	}
	cs, err := c.src.Counters(ctx, r, since)
	if err != nil {
		return Sample{}, fmt.Errorf("sample of rollout %s: %w", p.ID, err)
	}
	return Sample{Treatment: cs.Treatment.Exposures, Control: cs.Control.Exposures}, nil
}

// RecordKind names what a scheduled change of an event does.
type RecordKind string

// Record kinds.
const (
	KindPhaseStart RecordKind = "phase_start" // a phase's changes are applied
	KindEventEnd   RecordKind = "event_end"   // the event's flags are set back or to their end state
)

// RecordStatus is where a scheduled change stands.
type RecordStatus string

// Record statuses. Only StatusClaimed is not final.
const (
	StatusClaimed RecordStatus = "claimed" // a scheduler is applying it
	StatusDone    RecordStatus = "done"    // applied
	StatusFailed  RecordStatus = "failed"  // could not be applied (see Outcome); not retried
	StatusSkipped RecordStatus = "skipped" // deliberately not applied (see Outcome)
)

// Record is the stored execution of one scheduled change of an event: the
// claim that makes it happen once, then what it did.
type Record struct {
	// ID names the change: "event/{env}/{uid}/phase/{name}" or
	// "event/{env}/{uid}/end". Revisions written by the change carry it
	// in their message, in brackets, which is how a retry after a crash
	// finds what was already written.
	ID          string     `json:"id"`
	Environment string     `json:"environment"`
	EventUID    string     `json:"event_uid"`
	Event       string     `json:"event"` // the event's key
	Kind        RecordKind `json:"kind"`
	Phase       string     `json:"phase,omitempty"`
	Due         time.Time  `json:"due"`

	Status    RecordStatus `json:"status"`
	Attempt   int          `json:"attempt"` // claims so far; the compare-and-swap token
	ClaimedBy string       `json:"claimed_by"`
	ClaimedAt time.Time    `json:"claimed_at"`
	// Head is the environment's head revision when the change was first
	// claimed: a retry looks for its revisions after it.
	Head int64 `json:"head"`

	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Late is how long after Due the change was applied (0 when on time).
	Late    Duration `json:"late,omitempty"`
	Writes  []Write  `json:"writes,omitempty"`
	Outcome string   `json:"outcome,omitempty"`
}

// Write is what a scheduled change did to one flag.
type Write struct {
	Flag string `json:"flag"`
	// Revision is the revision it appended (0: the configuration already
	// was as wanted, or it failed).
	Revision int64 `json:"revision,omitempty"`
	// Before is the flag's configuration just before the change, at
	// BeforeRevision: what the event's end sets back.
	Before         *flags.Config `json:"before,omitempty"`
	BeforeRevision int64         `json:"before_revision,omitempty"`
	Note           string        `json:"note,omitempty"`
	Error          string        `json:"error,omitempty"`
}

// Duration is a time.Duration written in JSON as a Go duration string such
// as "36h0m0s" (and read from one, such as "36h").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. It returns an error
// for text that time.ParseDuration does not accept.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"30m\" or \"24h\"", b)
	}
	*d = Duration(v)
	return nil
}

// String returns the duration as time.Duration prints it.
func (d Duration) String() string { return time.Duration(d).String() }
