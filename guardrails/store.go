package guardrails

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/webhook"
)

// Definition is a stored guardrail: its rule with the version that is its
// ETag.
type Definition struct {
	Rule
	// Version counts the definition's writes: 1 when created, one more
	// per update. It is the ETag of the API.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// definitionMeta is what a Definition adds to its rule on the wire.
type definitionMeta struct {
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MarshalJSON writes the rule's fields (see Rule.MarshalJSON) with
// version, created_at and updated_at. Without it, the rule's MarshalJSON,
// promoted from the embedded Rule, would leave them out.
func (d Definition) MarshalJSON() ([]byte, error) {
	rule, err := d.Rule.MarshalJSON()
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(definitionMeta{Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt})
	if err != nil {
		return nil, err
	}
	return append(append(rule[:len(rule)-1:len(rule)-1], ','), meta[1:]...), nil
}

// UnmarshalJSON reads what MarshalJSON writes, as strictly as
// Rule.UnmarshalJSON.
func (d *Definition) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	var meta definitionMeta
	for name, dst := range map[string]any{"version": &meta.Version, "created_at": &meta.CreatedAt, "updated_at": &meta.UpdatedAt} {
		if raw, ok := fields[name]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("definition %s: %w", name, err)
			}
			delete(fields, name)
		}
	}
	rule, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	if err := d.Rule.UnmarshalJSON(rule); err != nil {
		return err
	}
	d.Version, d.CreatedAt, d.UpdatedAt = meta.Version, meta.CreatedAt, meta.UpdatedAt
	return nil
}

// Record is a stored incident: what the job raised, what carrying it out
// did, and what people did about it since.
type Record struct {
	// Number is the incident's public id, assigned by the store: 1, 2, 3...
	// over the whole installation.
	Number int64 `json:"number"`
	Incident
	// Revision is the revision that carried out a rollback (0: none).
	Revision int64 `json:"revision,omitempty"`
	// Outcome says what carrying the incident out did, in one sentence
	// ("rolled winter-festival back to control in revision 42").
	Outcome string `json:"outcome"`
	// RecordedAt is when the incident was carried out and stored.
	RecordedAt time.Time `json:"recorded_at"`
	// AckedBy and AckedAt are the person who acknowledged it and when
	// (nil: not yet).
	AckedBy *solstice.Actor `json:"acked_by,omitempty"`
	AckedAt *time.Time      `json:"acked_at,omitempty"`
}

// IncidentFilter selects incidents; zero fields match everything.
type IncidentFilter struct {
	Environment string
	Flag        string
	Guardrail   string // the guardrail's key; only with Flag
	Events      []Event
	// Unacked keeps only incidents nobody acknowledged.
	Unacked bool
	// BeforeNumber pages: only incidents with Number < BeforeNumber.
	BeforeNumber int64
	Limit        int // 0: a default of 50
}

// Announce returns the webhook messages that announce the stored record
// rec, or the error that prevents it (nothing is then stored).
type Announce func(rec Record) ([]webhook.Message, error)

// Store persists guardrail definitions, their states and their incidents.
// It is implemented by package store. Errors are *solstice.Error values:
// KindNotFound for a missing row, KindConflict for a duplicate,
// KindPreconditionFailed for a failed expectation.
type Store interface {
	RuleSource // every defined guardrail, sorted by Ref
	StateStore

	// ListGuardrails returns the definitions of env (and of flag, unless
	// flag is ""), sorted by Ref.
	ListGuardrails(ctx context.Context, env, flag string) ([]Definition, error)
	GetGuardrail(ctx context.Context, ref Ref) (Definition, error)
	// PutGuardrail stores d.Rule (which the caller validated), if the
	// stored version is expect (0: it must not exist yet; -1: any), with
	// the audit entry, atomically, and returns the stored definition with
	// its new version and times. The environment and the flag must exist
	// (KindNotFound otherwise).
	PutGuardrail(ctx context.Context, r Rule, expect int64, audit solstice.AuditEntry) (Definition, error)
	// DeleteGuardrail removes the definition and its state, if the stored
	// version is expect (-1: any), with the audit entry, atomically. The
	// guardrail's incidents stay.
	DeleteGuardrail(ctx context.Context, ref Ref, expect int64, audit solstice.AuditEntry) error

	// RecordIncident stores rec (Number and RecordedAt are assigned) with
	// the webhook messages that announce it (the outbox), atomically:
	// announce, if not nil, is called with the record as stored, number
	// included, and its messages are stored in the same transaction. It is
	// idempotent per rec.ID: a second call stores nothing and returns the
	// stored record, with created false.
	RecordIncident(ctx context.Context, rec Record, announce Announce) (stored Record, created bool, err error)
	// Incident returns the incident with the given ID (Incident.ID), or a
	// KindNotFound error.
	Incident(ctx context.Context, id string) (Record, error)
	GetIncident(ctx context.Context, number int64) (Record, error)
	// ListIncidents returns the incidents f selects, newest first.
	ListIncidents(ctx context.Context, f IncidentFilter) ([]Record, error)
	// AckIncident records that by acknowledged the incident at the given
	// time, with the audit entry. Acknowledging it again changes nothing
	// and returns the stored record.
	AckIncident(ctx context.Context, number int64, by solstice.Actor, at time.Time, audit solstice.AuditEntry) (Record, error)
}
