// Package review implements four-eyes approval for protected environments:
// a change to a protected environment is not written but proposed as a
// change request, with its diff; a different user with the approver role
// approves it, which applies it through flags.Service as one revision, or
// rejects it. Nothing about a change request bypasses the flags service: the
// applied revision is validated, audited and published like any other.
//
// Persistence is behind the Store interface declared here and implemented by
// package store.
package review

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
)

// Kind is what a change request changes.
type Kind string

// Change request kinds.
const (
	KindConfig Kind = "config" // replace one flag's configuration in the environment
	KindRevert Kind = "revert" // restore the environment's content as of a revision
)

// Status is where a change request is in its life: open, then exactly one
// of the others, which are final.
type Status string

// Statuses.
const (
	StatusOpen      Status = "open"
	StatusApproved  Status = "approved" // and applied as AppliedRevision
	StatusRejected  Status = "rejected"
	StatusWithdrawn Status = "withdrawn" // by its author
)

// ChangeRequest is a proposed change to a protected environment.
type ChangeRequest struct {
	ID          int64  `json:"id"`
	Environment string `json:"environment"`
	Kind        Kind   `json:"kind"`
	// Flag is the flag whose configuration changes (KindConfig).
	Flag string `json:"flag,omitempty"`
	// TargetRevision is the revision a KindRevert restores.
	TargetRevision int64 `json:"target_revision,omitempty"`
	// BaseRevision is what the proposal was made against: the flag
	// configuration's revision (KindConfig) or the environment's head
	// (KindRevert). If it moved, the request is stale and cannot be applied
	// as reviewed.
	BaseRevision int64 `json:"base_revision"`
	// Before and After are the flag's state (a flags.FlagState document)
	// when proposed and as proposed (KindConfig).
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`

	Message   string    `json:"message"`
	Author    string    `json:"author"`
	Status    Status    `json:"status"`
	CreatedAt time.Time `json:"created_at"`

	DecidedBy       string     `json:"decided_by,omitempty"`
	DecidedAt       *time.Time `json:"decided_at,omitempty"`
	Comment         string     `json:"comment,omitempty"` // the decider's
	AppliedRevision int64      `json:"applied_revision,omitempty"`
}

// Filter selects change requests; zero fields match everything.
type Filter struct {
	Environment string
	Flag        string
	Author      string
	Status      Status
	BeforeID    int64 // paging: only IDs below it
	Limit       int   // 0: 100
}

// Store persists change requests. It is implemented by package store.
// Errors are *solstice.Error values (KindNotFound, KindConflict).
type Store interface {
	// CreateChangeRequest stores cr (its ID is assigned) with audit, in one
	// transaction, and returns the new ID.
	CreateChangeRequest(ctx context.Context, cr ChangeRequest, audit solstice.AuditEntry) (int64, error)
	GetChangeRequest(ctx context.Context, id int64) (ChangeRequest, error)
	// ListChangeRequests returns the matching requests, newest first.
	ListChangeRequests(ctx context.Context, f Filter) ([]ChangeRequest, error)
	// UpdateChangeRequest stores cr's status and decision fields if the
	// stored status is still from, and records audit (when not nil) in the
	// same transaction; otherwise it returns KindConflict.
	UpdateChangeRequest(ctx context.Context, cr ChangeRequest, from Status, audit *solstice.AuditEntry) error
}

// Users looks up the user behind an actor.
type Users interface {
	GetUser(ctx context.Context, username string) (accounts.User, error)
}

// Service proposes, decides and applies change requests.
type Service struct {
	store Store
	flags *flags.Service
	users Users
	clock solstice.Clock
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock of timestamps.
func WithClock(c solstice.Clock) Option { return func(s *Service) { s.clock = c } }

// NewService returns a Service that stores requests in store and applies
// them through fs; users says who may decide.
func NewService(store Store, fs *flags.Service, users Users, opts ...Option) *Service {
	s := &Service{store: store, flags: fs, users: users, clock: solstice.WallClock}
	for _, o := range opts {
		o(s)
	}
	return s
}

// MaxMessageLength bounds the message and comment of a change request.
const MaxMessageLength = 2000

// actingUser returns the user the context's actor is, with at least role
// need in env. It returns KindForbidden otherwise.
func (s *Service) actingUser(ctx context.Context, env string, need accounts.Role) (accounts.User, error) {
	a := solstice.ActorFrom(ctx)
	if a.Kind != "user" {
		return accounts.User{}, solstice.Errorf(solstice.KindForbidden, "change requests are made and decided by people logged in to the UI, not by %s", a.Name)
	}
	u, err := s.users.GetUser(ctx, a.Name)
	if solstice.IsKind(err, solstice.KindNotFound) {
		return accounts.User{}, solstice.Errorf(solstice.KindForbidden, "unknown user %q", a.Name)
	}
	if err != nil {
		return accounts.User{}, err
	}
	if !u.Can(env, need) {
		return accounts.User{}, solstice.Errorf(solstice.KindForbidden, "this needs the %s role in %s; %s has %s", need, env, u.Username, u.Role(env))
	}
	return u, nil
}

func (s *Service) audit(ctx context.Context, action string, cr ChangeRequest, details any) solstice.AuditEntry {
	e := solstice.AuditEntry{
		Time: s.clock.Now().UTC(), Actor: solstice.ActorFrom(ctx), Action: action,
		Environment: cr.Environment, Resource: fmt.Sprintf("change_request/%d", cr.ID),
	}
	if details != nil {
		if b, err := json.Marshal(details); err == nil {
			e.Details = b
		}
	}
	return e
}

func checkMessage(ptr, msg string) error {
	if len(msg) > MaxMessageLength {
		return solstice.Invalid("invalid change request", solstice.FieldError{Pointer: ptr, Message: fmt.Sprintf("must be at most %d bytes", MaxMessageLength)})
	}
	return nil
}

// ProposeConfig proposes c as flag key's configuration in env, based on the
// configuration's revision base (flags.AnyVersion: whatever is current).
// The proposal is validated exactly as flags.Service.PutConfig would
// validate it. It returns KindForbidden unless the actor is a user with the
// editor role in env, KindNotFound, KindPreconditionFailed when the
// configuration is no longer at base, KindInvalid (field errors point into
// the configuration), or KindConflict when c changes nothing.
func (s *Service) ProposeConfig(ctx context.Context, env, key string, c flags.Config, base int64, message string) (ChangeRequest, error) {
	author, err := s.actingUser(ctx, env, accounts.RoleEditor)
	if err != nil {
		return ChangeRequest{}, err
	}
	if err := checkMessage("/message", message); err != nil {
		return ChangeRequest{}, err
	}
	cur, err := s.flags.GetConfig(ctx, env, key)
	if err != nil {
		return ChangeRequest{}, err
	}
	if base != flags.AnyVersion && cur.Revision != base {
		return ChangeRequest{}, solstice.Errorf(solstice.KindPreconditionFailed, "flag %q in %s is at revision %d, not %d: reload and retry", key, env, cur.Revision, base)
	}
	segs, err := s.flags.ListSegments(ctx, env)
	if err != nil {
		return ChangeRequest{}, err
	}
	known := make(map[string]bool, len(segs))
	for _, sv := range segs {
		known[sv.Segment.Key] = true
	}
	if err := flags.ValidateConfig(cur.Flag, c, known); err != nil {
		return ChangeRequest{}, err
	}
	before, err := StateOf(cur.Flag, cur.Config)
	if err != nil {
		return ChangeRequest{}, err
	}
	after, err := StateOf(cur.Flag, c)
	if err != nil {
		return ChangeRequest{}, err
	}
	if string(before) == string(after) {
		return ChangeRequest{}, solstice.Errorf(solstice.KindConflict, "the proposed configuration of %q is the one %s already has", key, env)
	}
	if message == "" {
		message = "Update flag " + key
	}
	cr := ChangeRequest{
		Environment: env, Kind: KindConfig, Flag: key, BaseRevision: cur.Revision, Before: before, After: after,
		Message: message, Author: author.Username, Status: StatusOpen, CreatedAt: s.clock.Now().UTC(),
	}
	return s.create(ctx, cr)
}

// StateOf returns the canonical flags.FlagState document of flag f with
// configuration c, its variant values canonical too, as revisions store it.
// It returns KindInvalid for a variant value that is not JSON.
func StateOf(f flags.Flag, c flags.Config) (json.RawMessage, error) {
	vs := make([]flags.Variant, len(c.Variants))
	for i, v := range c.Variants {
		if len(v.Value) > 0 {
			cv, err := flags.Canonical(v.Value)
			if err != nil {
				return nil, err
			}
			v.Value = cv
		}
		vs[i] = v
	}
	c.Variants = vs
	return flags.CanonicalOf(flags.FlagState{Key: f.Key, Type: f.Type, Config: c})
}

// ProposeRevert proposes restoring env's content as of revision n. It
// returns KindForbidden unless the actor is a user with the editor role in
// env, KindNotFound for an unknown environment or revision, or KindConflict
// when env already has that content.
func (s *Service) ProposeRevert(ctx context.Context, env string, n int64, message string) (ChangeRequest, error) {
	author, err := s.actingUser(ctx, env, accounts.RoleEditor)
	if err != nil {
		return ChangeRequest{}, err
	}
	if err := checkMessage("/message", message); err != nil {
		return ChangeRequest{}, err
	}
	e, err := s.flags.Store().GetEnvironment(ctx, env)
	if err != nil {
		return ChangeRequest{}, err
	}
	if n < 1 || n > e.Head {
		return ChangeRequest{}, solstice.Errorf(solstice.KindNotFound, "revision %d of %q not found (head is %d)", n, env, e.Head)
	}
	changes, err := s.flags.DiffRevisions(ctx, env, e.Head, n)
	if err != nil {
		return ChangeRequest{}, err
	}
	if len(changes) == 0 {
		return ChangeRequest{}, solstice.Errorf(solstice.KindConflict, "%s already has the content of revision %d: nothing to revert", env, n)
	}
	if message == "" {
		message = fmt.Sprintf("Revert to revision %d", n)
	}
	cr := ChangeRequest{
		Environment: env, Kind: KindRevert, TargetRevision: n, BaseRevision: e.Head,
		Message: message, Author: author.Username, Status: StatusOpen, CreatedAt: s.clock.Now().UTC(),
	}
	return s.create(ctx, cr)
}

func (s *Service) create(ctx context.Context, cr ChangeRequest) (ChangeRequest, error) {
	details := map[string]any{"kind": cr.Kind, "base_revision": cr.BaseRevision}
	if cr.Flag != "" {
		details["flag"] = cr.Flag
	}
	if cr.TargetRevision > 0 {
		details["target_revision"] = cr.TargetRevision
	}
	id, err := s.store.CreateChangeRequest(ctx, cr, s.audit(ctx, "change_request.create", cr, details))
	if err != nil {
		return ChangeRequest{}, err
	}
	return s.store.GetChangeRequest(ctx, id)
}

// Get returns change request id, or KindNotFound.
func (s *Service) Get(ctx context.Context, id int64) (ChangeRequest, error) {
	return s.store.GetChangeRequest(ctx, id)
}

// List returns the change requests f selects, newest first.
func (s *Service) List(ctx context.Context, f Filter) ([]ChangeRequest, error) {
	return s.store.ListChangeRequests(ctx, f)
}

// Stale reports whether cr, if open, can no longer be applied as reviewed:
// what it was based on has changed since it was proposed.
func (s *Service) Stale(ctx context.Context, cr ChangeRequest) (bool, error) {
	if cr.Status != StatusOpen {
		return false, nil
	}
	cur, err := s.base(ctx, cr)
	if err != nil {
		return false, err
	}
	return cur != cr.BaseRevision, nil
}

// base returns the current value of what cr's BaseRevision records.
func (s *Service) base(ctx context.Context, cr ChangeRequest) (int64, error) {
	if cr.Kind == KindRevert {
		e, err := s.flags.Store().GetEnvironment(ctx, cr.Environment)
		return e.Head, err
	}
	o, err := s.flags.Store().GetObject(ctx, cr.Environment, flags.KindFlag, cr.Flag)
	return o.Revision, err
}

// Approve approves change request id and applies it as one revision,
// through the flags service and as the approving user. It returns
// KindForbidden unless the actor is a user other than the author with the
// approver role in the environment, KindConflict when the request is no
// longer open or is stale (what it was based on changed since: it stays
// open, to be rejected or withdrawn), KindInvalid when the change no longer
// validates (a segment it uses was deleted since), or KindNotFound.
func (s *Service) Approve(ctx context.Context, id int64, comment string) (ChangeRequest, error) {
	cr, err := s.store.GetChangeRequest(ctx, id)
	if err != nil {
		return ChangeRequest{}, err
	}
	approver, err := s.decider(ctx, cr, comment)
	if err != nil {
		return ChangeRequest{}, err
	}
	open := cr
	now := s.clock.Now().UTC()
	cr.Status, cr.DecidedBy, cr.DecidedAt, cr.Comment = StatusApproved, approver.Username, &now, comment
	// Claim the request first, so that two approvers cannot both apply it.
	// NOTE: if the process dies between the claim and the write, the request
	// reads approved with no applied revision; the audit log and the history
	// show that nothing was applied.
	if err := s.store.UpdateChangeRequest(ctx, cr, StatusOpen, nil); err != nil {
		return ChangeRequest{}, err
	}
	rev, err := s.apply(ctx, cr, approver)
	if err != nil {
		if uerr := s.store.UpdateChangeRequest(ctx, open, StatusApproved, nil); uerr != nil {
			return ChangeRequest{}, fmt.Errorf("reopen change request %d after a failed apply (%w): %w", id, err, uerr)
		}
		return ChangeRequest{}, err
	}
	cr.AppliedRevision = rev.Number
	audit := s.audit(ctx, "change_request.approve", cr, map[string]any{"applied_revision": rev.Number, "author": cr.Author})
	audit.Revision = rev.Number
	if err := s.store.UpdateChangeRequest(ctx, cr, StatusApproved, &audit); err != nil {
		return ChangeRequest{}, err
	}
	return s.store.GetChangeRequest(ctx, id)
}

func (s *Service) apply(ctx context.Context, cr ChangeRequest, approver accounts.User) (flags.Revision, error) {
	msg := fmt.Sprintf("%s (change request #%d by %s, approved by %s)", cr.Message, cr.ID, cr.Author, approver.Username)
	stale := func(cur int64) error {
		return solstice.Errorf(solstice.KindConflict, "change request #%d was based on revision %d, but %s has changed since (now %d): it cannot be applied as reviewed; reject it and propose the change again", cr.ID, cr.BaseRevision, cr.Environment, cur)
	}
	switch cr.Kind {
	case KindConfig:
		var st flags.FlagState
		if err := json.Unmarshal(cr.After, &st); err != nil {
			return flags.Revision{}, fmt.Errorf("decode change request %d: %w", cr.ID, err)
		}
		rev, err := s.flags.PutConfig(ctx, cr.Environment, cr.Flag, st.Config, cr.BaseRevision, msg)
		if solstice.IsKind(err, solstice.KindPreconditionFailed) {
			cur, berr := s.base(ctx, cr)
			if berr != nil {
				return flags.Revision{}, berr
			}
			return flags.Revision{}, stale(cur)
		}
		if err != nil {
			return flags.Revision{}, err
		}
		return rev, nil // with an empty diff when someone made the same change meanwhile: rev is the head
	case KindRevert:
		cur, err := s.base(ctx, cr)
		if err != nil {
			return flags.Revision{}, err
		}
		if cur != cr.BaseRevision {
			return flags.Revision{}, stale(cur)
		}
		return s.flags.Revert(ctx, cr.Environment, cr.TargetRevision, msg)
	}
	return flags.Revision{}, fmt.Errorf("change request %d has unknown kind %q", cr.ID, cr.Kind)
}

// decider checks that the actor may decide cr: an open request, another
// user than its author, with the approver role in its environment.
func (s *Service) decider(ctx context.Context, cr ChangeRequest, comment string) (accounts.User, error) {
	if err := checkMessage("/comment", comment); err != nil {
		return accounts.User{}, err
	}
	if cr.Status != StatusOpen {
		return accounts.User{}, solstice.Errorf(solstice.KindConflict, "change request #%d is already %s", cr.ID, cr.Status)
	}
	u, err := s.actingUser(ctx, cr.Environment, accounts.RoleApprover)
	if err != nil {
		return accounts.User{}, err
	}
	if u.Username == cr.Author {
		return accounts.User{}, solstice.Errorf(solstice.KindForbidden, "you proposed change request #%d: another approver must decide it (you can withdraw it)", cr.ID)
	}
	return u, nil
}

// Reject rejects change request id. It returns KindForbidden unless the
// actor is a user other than the author with the approver role in the
// environment, KindConflict when the request is no longer open, or
// KindNotFound.
func (s *Service) Reject(ctx context.Context, id int64, comment string) (ChangeRequest, error) {
	cr, err := s.store.GetChangeRequest(ctx, id)
	if err != nil {
		return ChangeRequest{}, err
	}
	u, err := s.decider(ctx, cr, comment)
	if err != nil {
		return ChangeRequest{}, err
	}
	now := s.clock.Now().UTC()
	cr.Status, cr.DecidedBy, cr.DecidedAt, cr.Comment = StatusRejected, u.Username, &now, comment
	audit := s.audit(ctx, "change_request.reject", cr, nil)
	if err := s.store.UpdateChangeRequest(ctx, cr, StatusOpen, &audit); err != nil {
		return ChangeRequest{}, err
	}
	return s.store.GetChangeRequest(ctx, id)
}

// Withdraw withdraws change request id. It returns KindForbidden unless the
// actor is its author, KindConflict when it is no longer open, or
// KindNotFound.
func (s *Service) Withdraw(ctx context.Context, id int64) (ChangeRequest, error) {
	cr, err := s.store.GetChangeRequest(ctx, id)
	if err != nil {
		return ChangeRequest{}, err
	}
	a := solstice.ActorFrom(ctx)
	if a.Kind != "user" || a.Name != cr.Author {
		return ChangeRequest{}, solstice.Errorf(solstice.KindForbidden, "only %s, who proposed change request #%d, can withdraw it", cr.Author, cr.ID)
	}
	if cr.Status != StatusOpen {
		return ChangeRequest{}, solstice.Errorf(solstice.KindConflict, "change request #%d is already %s", cr.ID, cr.Status)
	}
	now := s.clock.Now().UTC()
	cr.Status, cr.DecidedBy, cr.DecidedAt = StatusWithdrawn, a.Name, &now
	audit := s.audit(ctx, "change_request.withdraw", cr, nil)
	if err := s.store.UpdateChangeRequest(ctx, cr, StatusOpen, &audit); err != nil {
		return ChangeRequest{}, err
	}
	return s.store.GetChangeRequest(ctx, id)
}
