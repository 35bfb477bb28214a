package webhook

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/solsticehq/solstice"
)

// fakeOutbox is an in-memory Outbox with the semantics documented on the
// interface, and the edge behaviour package store documents: a limit below
// 1 or a negative lease is invalid, unknown IDs are not found, a second
// Delivered keeps the first time, and a Failed after the message was
// delivered or given up changes nothing.
type fakeOutbox struct {
	mu   sync.Mutex
	rows map[string]*fakeRow
}

type fakeRow struct {
	Pending
	Next        time.Time
	ClaimedAt   time.Time // zero: not claimed
	DeliveredAt time.Time
	GivenUpAt   time.Time
	Failures    []fakeFailure
	Deliveries  int // calls of Delivered
}

type fakeFailure struct {
	At     time.Time
	Reason string
	Next   time.Time
}

var _ Outbox = (*fakeOutbox)(nil)

func newFakeOutbox() *fakeOutbox { return &fakeOutbox{rows: map[string]*fakeRow{}} }

// add queues msgs, created and due at at.
func (o *fakeOutbox) add(at time.Time, msgs ...Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range msgs {
		if _, dup := o.rows[m.ID]; dup {
			panic("fakeOutbox: message " + m.ID + " queued twice")
		}
		o.rows[m.ID] = &fakeRow{Pending: Pending{Message: m, CreatedAt: at}, Next: at}
	}
}

// row returns a copy of the row of id.
func (o *fakeOutbox) row(id string) fakeRow {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.rows[id]
	if !ok {
		panic("fakeOutbox: no message " + id)
	}
	c := *r
	c.Failures = slices.Clone(r.Failures)
	return c
}

// open counts the messages neither delivered nor given up.
func (o *fakeOutbox) open() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.rows {
		if r.DeliveredAt.IsZero() && r.GivenUpAt.IsZero() {
			n++
		}
	}
	return n
}

func (o *fakeOutbox) Claim(_ context.Context, now time.Time, lease time.Duration, limit int) ([]Pending, error) {
	if limit < 1 || lease < 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "claim: limit %d and lease %s must be positive", limit, lease)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var due []*fakeRow
	for _, r := range o.rows {
		if r.DeliveredAt.IsZero() && r.GivenUpAt.IsZero() && !r.Next.After(now) &&
			(r.ClaimedAt.IsZero() || !r.ClaimedAt.After(now.Add(-lease))) {
			due = append(due, r)
		}
	}
	slices.SortFunc(due, func(a, b *fakeRow) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	due = due[:min(limit, len(due))]
	out := make([]Pending, len(due))
	for i, r := range due {
		r.ClaimedAt = now
		out[i] = r.Pending
	}
	return out, nil
}

func (o *fakeOutbox) Delivered(_ context.Context, id string, at time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.rows[id]
	if !ok {
		return solstice.Errorf(solstice.KindNotFound, "webhook message %q not found", id)
	}
	r.Deliveries++
	if r.DeliveredAt.IsZero() {
		r.DeliveredAt, r.ClaimedAt = at, time.Time{}
	}
	return nil
}

func (o *fakeOutbox) Failed(_ context.Context, id string, at time.Time, reason string, next time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.rows[id]
	if !ok {
		return solstice.Errorf(solstice.KindNotFound, "webhook message %q not found", id)
	}
	if !r.DeliveredAt.IsZero() || !r.GivenUpAt.IsZero() {
		return nil
	}
	r.Attempts++
	r.LastError = reason
	r.ClaimedAt = time.Time{}
	r.Failures = append(r.Failures, fakeFailure{At: at, Reason: reason, Next: next})
	if next.IsZero() {
		r.GivenUpAt = at
	} else {
		r.Next = next
	}
	return nil
}
