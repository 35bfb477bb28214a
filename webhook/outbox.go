package webhook

import (
	"context"
	"encoding/json"
	"time"
)

// Message is one webhook delivery to one endpoint. It is queued in the same
// transaction as the change it announces (the transactional outbox) and
// sent by a Dispatcher, again and again, until it is delivered or given up.
type Message struct {
	// ID is unique per delivery and stable across retries: it is the
	// webhook-id header of Standard Webhooks, which receivers use to drop
	// duplicates.
	ID       string          `json:"id"`
	Endpoint string          `json:"endpoint"` // the configured endpoint's name
	Event    string          `json:"event"`    // "guardrail.trip", "guardrail.hold"...
	Payload  json.RawMessage `json:"payload"`  // the JSON body sent
}

// Pending is a queued message with its delivery history.
type Pending struct {
	Message
	CreatedAt time.Time `json:"created_at"`
	Attempts  int       `json:"attempts"` // failed attempts so far
	LastError string    `json:"last_error,omitempty"`
}

// Outbox is the durable queue of messages. It is implemented by package
// store; several dispatchers (one per control-plane replica) may share one.
type Outbox interface {
	// Claim returns up to limit messages that are due at now (neither
	// delivered nor given up, next attempt at or before now, and not
	// claimed by anyone since now-lease), oldest first, and marks them
	// claimed at now, so that no other dispatcher sends them for lease.
	Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Pending, error)
	// Delivered records that the message was delivered at the given time.
	Delivered(ctx context.Context, id string, at time.Time) error
	// Failed records a failed attempt at the given time with its error,
	// and when to try again; the zero next means give up.
	Failed(ctx context.Context, id string, at time.Time, reason string, next time.Time) error
}
