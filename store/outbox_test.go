package store_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/store/storetest"
	"github.com/solsticehq/solstice/webhook"
)

// settableClock is a clock that tests move.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settableClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// outboxDialects runs f against both databases, with a clock that starts
// at t0 and that f may move.
func outboxDialects(t *testing.T, f func(t *testing.T, db *store.DB, clock *settableClock)) {
	t.Helper()
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			clock := &settableClock{t: t0}
			open := storetest.Open
			if dialect == "postgres" {
				open = storetest.OpenPostgres
			}
			f(t, open(t, storetest.WithClock(clock)), clock)
		})
	}
}

// queue records an incident with n messages at the clock's time.
func queue(t *testing.T, db *store.DB, id string, n int) []webhook.Message {
	t.Helper()
	msgs := messages(id, n)
	if _, _, err := db.RecordIncident(t.Context(), incident(id, ref("production", "winter", "rejects"), guardrails.EventTrip), announceAll(msgs)); err != nil {
		t.Fatalf("RecordIncident(%s): %v", id, err)
	}
	return msgs
}

// ids returns the IDs of pending, nil when there are none.
func ids(pending []webhook.Pending) []string {
	var out []string
	for _, p := range pending {
		out = append(out, p.ID)
	}
	return out
}

func TestOutboxClaim(t *testing.T) {
	outboxDialects(t, func(t *testing.T, db *store.DB, clock *settableClock) {
		ctx := t.Context()
		createEnv(t, db, "production")
		clock.Set(t0.Add(time.Second))
		queue(t, db, "b", 2) // older, though its ids sort after a's
		clock.Set(t0.Add(2 * time.Second))
		queue(t, db, "a", 1)
		base := t0.Add(2 * time.Second)

		const lease = time.Minute
		for _, step := range []struct {
			name  string
			now   time.Time
			limit int
			want  []string
		}{
			{"not yet due", t0.Add(time.Second - time.Microsecond), 10, nil},
			{"the older incident is due", t0.Add(time.Second), 10, []string{"b@hook-0", "b@hook-1"}},
			{"claimed ones wait out the lease", base, 10, []string{"a@hook-0"}},
			{"nothing left within the lease", t0.Add(time.Second + lease - time.Microsecond), 10, nil},
			{"the lease ran out: oldest first, up to the limit", t0.Add(time.Second + lease), 1, []string{"b@hook-0"}},
			{"the rest", base.Add(lease), 10, []string{"b@hook-1", "a@hook-0"}},
		} {
			got, err := db.Claim(ctx, step.now, lease, step.limit)
			if err != nil {
				t.Fatalf("%s: Claim: %v", step.name, err)
			}
			if diff := cmp.Diff(step.want, ids(got)); diff != "" {
				t.Errorf("%s: claimed (-want +got):\n%s", step.name, diff)
			}
		}

		for _, tc := range []struct {
			name  string
			lease time.Duration
			limit int
		}{
			{"zero limit", lease, 0},
			{"negative limit", lease, -1},
			{"negative lease", -time.Second, 1},
		} {
			_, err := db.Claim(ctx, base, tc.lease, tc.limit)
			if got := solstice.ErrorKind(err); got != solstice.KindInvalid {
				t.Errorf("%s: error kind = %q (%v), want %q", tc.name, got, err, solstice.KindInvalid)
			}
		}
	})
}

func TestOutboxDeliveredAndFailed(t *testing.T) {
	outboxDialects(t, func(t *testing.T, db *store.DB, clock *settableClock) {
		ctx := t.Context()
		createEnv(t, db, "production")
		msgs := queue(t, db, "i", 3)
		const lease = time.Minute
		claimed, err := db.Claim(ctx, t0, lease, 10)
		if err != nil || len(claimed) != 3 {
			t.Fatalf("Claim = %v, %v; want 3 messages", ids(claimed), err)
		}

		// 0 is delivered, 1 fails and is retried at t0+10s, 2 is given up.
		if err := db.Delivered(ctx, msgs[0].ID, t0.Add(time.Second)); err != nil {
			t.Fatalf("Delivered: %v", err)
		}
		if err := db.Failed(ctx, msgs[1].ID, t0.Add(time.Second), "503 Service Unavailable", t0.Add(10*time.Second)); err != nil {
			t.Fatalf("Failed: %v", err)
		}
		if err := db.Failed(ctx, msgs[2].ID, t0.Add(time.Second), "410 Gone", time.Time{}); err != nil {
			t.Fatalf("Failed (give up): %v", err)
		}

		got, err := db.Claim(ctx, t0.Add(10*time.Second-time.Microsecond), lease, 10)
		if err != nil || len(got) != 0 {
			t.Errorf("Claim before the retry is due = %v, %v; want nothing", ids(got), err)
		}
		// Due again although the lease has not run out: Failed released
		// the claim.
		got, err = db.Claim(ctx, t0.Add(10*time.Second), lease, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := []webhook.Pending{{Message: msgs[1], CreatedAt: t0us, Attempts: 1, LastError: "503 Service Unavailable"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Claim of the retry (-want +got):\n%s", diff)
		}

		// A late report does not undo a delivery or a give-up; a second
		// failure counts.
		if err := db.Failed(ctx, msgs[0].ID, t0.Add(time.Hour), "late", t0.Add(time.Hour)); err != nil {
			t.Errorf("Failed after delivery: %v", err)
		}
		if err := db.Delivered(ctx, msgs[0].ID, t0.Add(time.Hour)); err != nil {
			t.Errorf("second Delivered: %v", err)
		}
		long := strings.Repeat("é", 1500) + "\xff"
		if err := db.Failed(ctx, msgs[1].ID, t0.Add(20*time.Second), long, t0.Add(30*time.Second)); err != nil {
			t.Errorf("second Failed: %v", err)
		}
		got, err = db.Claim(ctx, t0.Add(24*time.Hour), lease, 10)
		if err != nil || len(got) != 1 || got[0].ID != msgs[1].ID || got[0].Attempts != 2 {
			t.Fatalf("Claim a day later = %+v, %v; want only %s after 2 attempts", got, err, msgs[1].ID)
		}
		if e := got[0].LastError; len(e) > 2000 || !utf8.ValidString(e) || !strings.HasPrefix(long, e) {
			t.Errorf("last error of %d bytes (valid UTF-8 %t), want at most 2000 bytes of valid UTF-8 from the start of the reason", len(e), utf8.ValidString(e))
		}

		for name, err := range map[string]error{
			"Delivered": db.Delivered(ctx, "nope", t0),
			"Failed":    db.Failed(ctx, "nope", t0, "x", t0),
		} {
			if got := solstice.ErrorKind(err); got != solstice.KindNotFound {
				t.Errorf("%s of an unknown message: error kind = %q (%v), want %q", name, got, err, solstice.KindNotFound)
			}
		}
	})
}

func TestOutboxConcurrentClaims(t *testing.T) {
	outboxDialects(t, func(t *testing.T, db *store.DB, _ *settableClock) {
		ctx := t.Context()
		createEnv(t, db, "production")
		var all []string
		for i := range 10 {
			for _, m := range queue(t, db, fmt.Sprintf("i-%d", i), 10) {
				all = append(all, m.ID)
			}
		}
		const claimers = 8
		results, errs := parallel(claimers, func(int) ([]string, error) {
			var claimed []string
			for range 5 {
				got, err := db.Claim(ctx, t0, time.Minute, 7)
				if err != nil {
					return claimed, err
				}
				claimed = append(claimed, ids(got)...)
			}
			return claimed, nil
		})
		seen := map[string]int{}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("claimer %d: %v", i, err)
			}
			for _, id := range results[i] {
				if j, dup := seen[id]; dup {
					t.Errorf("claimers %d and %d both claimed %s", j, i, id)
				}
				seen[id] = i
			}
		}
		// Whatever a claimer skipped is still there for the next Claim.
		rest, err := db.Claim(ctx, t0, time.Minute, store.MaxClaimLimit)
		if err != nil {
			t.Fatal(err)
		}
		got := ids(rest)
		for id := range seen {
			got = append(got, id)
		}
		slices.Sort(got)
		slices.Sort(all)
		if diff := cmp.Diff(all, got); diff != "" {
			t.Errorf("claimed messages (-want +got):\n%s", diff)
		}
	})
}
