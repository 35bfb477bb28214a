package solstice

import (
	"context"
	"encoding/json"
	"time"
)

// Actor is who or what made a change: a person through the UI, an API token,
// the CLI, or a background job such as the guardrail evaluator.
type Actor struct {
	Name    string `json:"name"` // "alice", "token:ci-deploy", "guardrail:reject-rate"
	Kind    string `json:"kind"` // "user", "token", "cli", "system"
	TokenID string `json:"token_id,omitempty"`
	Address string `json:"address,omitempty"` // remote address of the request, if any
}

// System returns the actor for a background job of the control plane.
func System(name string) Actor { return Actor{Name: name, Kind: "system"} }

type actorKey struct{}

// WithActor returns a context that carries a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor carried by ctx, or an "anonymous" system actor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return System("anonymous")
}

// AuditEntry records one mutation: who, what, when, from where. Every write
// path records one in the same transaction as the change itself.
type AuditEntry struct {
	ID          int64           `json:"id"`
	Time        time.Time       `json:"time"`
	Actor       Actor           `json:"actor"`
	Action      string          `json:"action"` // "flag.create", "flag_config.update", "revision.revert", "token.create", ...
	Environment string          `json:"environment,omitempty"`
	Resource    string          `json:"resource"` // "flag/winter-drops", "token/tok_abc", ...
	Revision    int64           `json:"revision,omitempty"`
	Details     json.RawMessage `json:"details,omitempty"`
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	Environment string
	Resource    string
	Action      string
	Actor       string
	Since       time.Time
	Until       time.Time
	BeforeID    int64 // for paging: only entries with ID < BeforeID
	Limit       int
}

// Clock tells the time. Production uses the wall clock; tests and simulations
// inject their own.
type Clock interface{ Now() time.Time }

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now implements Clock.
func (f ClockFunc) Now() time.Time { return f() }

// WallClock is the real clock.
var WallClock Clock = ClockFunc(time.Now)
