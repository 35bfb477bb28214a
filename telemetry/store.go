package telemetry

import (
	"context"
	"time"
)

// Minute is a whole minute of UTC time: the minutes since the Unix epoch.
// Counters are kept per minute, and the zero Minute (1970-01-01T00:00Z,
// long before any accepted data) means "none".
type Minute int64

// MinuteOf returns the minute that holds t.
func MinuteOf(t time.Time) Minute {
	s := t.Unix()
	if s < 0 {
		return Minute((s - 59) / 60)
	}
	return Minute(s / 60)
}

// Time returns the first instant of m, in UTC.
func (m Minute) Time() time.Time { return time.Unix(int64(m)*60, 0).UTC() }

// Day returns the UTC day of m: the days since the Unix epoch.
func (m Minute) Day() int64 { return int64(m) / minutesPerDay }

// ceilMinute returns the first minute that starts at or after t.
func ceilMinute(t time.Time) Minute {
	m := MinuteOf(t)
	if m.Time().Before(t) {
		m++
	}
	return m
}

// Store keeps telemetry. It is implemented by package store (gorm on
// SQLite or PostgreSQL). Errors are *solstice.Error values.
type Store interface {
	// Ingest applies the writes ws, each atomically, and returns what it
	// did with each, in the order of ws. It may store them together in one
	// transaction (group commit), but one write's failure must not fail
	// the others: each Ingested carries its own error.
	//
	// If a write's BatchID was already stored for its Environment with the
	// same Digest (earlier, or by a write before it in ws), Ingest stores
	// nothing of it and reports a duplicate; with another digest it stores
	// nothing of it and its error is KindConflict. Concurrent Ingests of
	// one batch store it once.
	//
	// A player of w.Exposures is first exposed to its flag and variant
	// unless an earlier batch (or an earlier write of ws) exposed them
	// already; Ingest adds the first exposures to the counters' Exposures
	// of their minute and records the player in the cohort of that minute.
	// Activity widens the first and last active minute of each player and
	// day. The reporting server's Through and LastActivity only grow.
	Ingest(ctx context.Context, ws []Write) []Ingested

	// Reporting returns the stored watermark of env (0 if none) and the
	// state of every server that ever reported in env.
	Reporting(ctx context.Context, env string) (Reporting, error)
	// AdvanceWatermark stores m as env's watermark if it is later than the
	// stored one, and returns the stored watermark after that.
	AdvanceWatermark(ctx context.Context, env string, m Minute) (Minute, error)

	// Sums adds up the counters of the given variants of flag over the
	// minutes [from, to), by variant; a variant without data is missing
	// from the map.
	Sums(ctx context.Context, env, flag string, variants []string, from, to Minute) (map[string]Sums, error)
	// RejectReasons adds up the rejected actions of flag's variant by
	// reason over the minutes [from, to).
	RejectReasons(ctx context.Context, env, flag, variant string, from, to Minute) (map[string]int64, error)
	// Cohort returns the players first exposed to flag's variant in the
	// minutes [from, to), with the minute of their first exposure.
	Cohort(ctx context.Context, env, flag, variant string, from, to Minute) ([]FirstExposure, error)
	// ActiveDays returns the first and last active minute of each of the
	// players on each of the days on which they were active.
	ActiveDays(ctx context.Context, env string, days []int64, players []uint32) ([]PlayerDay, error)
}

// Write is the effect of one valid batch, aggregated for the store.
type Write struct {
	Environment     string
	BatchID         string
	Digest          []byte // SHA-256 of the batch's normalized content
	ServerID        string
	SnapshotVersion int64
	ReceivedAt      time.Time
	// Through is the end of what the server has delivered (0: this batch
	// moves nothing); LastActivity its newest activity minute (0: none).
	Through      Minute
	LastActivity Minute

	// The slices are in no particular order: the store orders what it
	// writes. Exposures and Activity may leave out what the caller knows
	// to change nothing: a player already exposed to the variant, activity
	// inside the minutes already recorded for the player and day.
	Counters  []CounterDelta // one per flag, variant and minute
	Rejects   []NamedDelta   // by reason; only non-zero
	Custom    []NamedDelta   // by counter name; only non-zero
	Exposures []Exposure     // one per flag, variant and player
	Activity  []ActiveDay    // one per player and day
}

// CounterDelta is what a batch adds to the counters of one flag, variant
// and minute.
type CounterDelta struct {
	Flag, Variant string
	Minute        Minute
	Accepted      int64
	Rejected      int64
	Sessions      SessionSums
}

// SessionSums are per-session sums: Sessions sessions with n actions and x
// rejects each.
type SessionSums struct {
	Sessions   int64
	N, X       int64   // Σn, Σx
	NN, XX, NX float64 // Σn², Σx², Σn·x
}

// NamedDelta is what a batch adds to a reject reason's or a custom
// counter's count for one flag, variant and minute.
type NamedDelta struct {
	Flag, Variant string
	Minute        Minute
	Name          string
	Value         int64
}

// Exposure is a reported exposure of a player to a flag's variant: the
// earliest in the batch.
type Exposure struct {
	Flag, Variant, Player string
	Minute                Minute
	// ID is the player's id in the store's player dictionary if the caller
	// knows it, 0 if not.
	ID uint32
}

// ActiveDay is a player's first and last active minute of a UTC day
// (0 to 1439).
type ActiveDay struct {
	Player      string
	ID          uint32 // the player's dictionary id, if known (0: not known)
	Day         int64
	First, Last int16
}

// Ingested is what Store.Ingest did with one write.
type Ingested struct {
	Duplicate    bool  // the batch was stored before; nothing changed
	NewExposures int64 // players first exposed to a variant by this batch
	// Players holds the dictionary ids of the write's players whose ID was
	// 0, when the write was stored.
	Players map[string]uint32
	// Err is nil when the write was stored or was a duplicate; otherwise
	// nothing of it was stored, and Err says why: KindConflict for a batch
	// id stored with another digest, KindNotFound for an unknown
	// environment, KindInvalid for a malformed write, KindInternal when
	// the database fails.
	Err error
}

// Reporting is the state of an environment's reporting servers.
type Reporting struct {
	Watermark Minute
	Servers   []Server
}

// Server is a reporting game server.
type Server struct {
	ID              string
	Through         Minute // the newest window end it delivered
	LastActivity    Minute
	SnapshotVersion int64
	LastSeen        time.Time // when its latest batch was received
}

// Sums are the counters of one variant over a range of minutes.
type Sums struct {
	Accepted, Rejected, Exposures int64
	Sessions                      SessionSums
	Custom                        map[string]int64
	// First is the earliest minute with data, LastExposure and LastAction
	// the newest with exposures and with actions, LastCustom the newest
	// with a positive count of each custom counter (0: none).
	First, LastExposure, LastAction Minute
	LastCustom                      map[string]Minute
}

// FirstExposure is a player's first exposure to a variant: the player's id
// in the store's player dictionary and the minute.
type FirstExposure struct {
	Player uint32
	Minute Minute
}

// PlayerDay is a player's first and last active minute of a day (0 to
// 1439).
type PlayerDay struct {
	Player      uint32
	Day         int64
	First, Last int16
}
