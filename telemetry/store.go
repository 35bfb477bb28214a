package telemetry

import (
	"cmp"
	"context"
	"slices"
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
	// Ingest applies w atomically. If w.BatchID was already stored for
	// w.Environment with the same Digest, it stores nothing and reports a
	// duplicate; with another digest it stores nothing and returns a
	// KindConflict error. Concurrent Ingests of one batch store it once.
	//
	// A player of w.Exposures is first exposed to its flag and variant
	// unless an earlier batch exposed them already; Ingest adds the first
	// exposures to the counters' Exposures of their minute and records the
	// player in the cohort of that minute. Activity updates the first and
	// last active minute of each player and day. The reporting server's
	// Through and LastActivity only grow.
	Ingest(ctx context.Context, w Write) (Ingested, error)

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

	Counters  []CounterDelta // one per flag, variant and minute, sorted
	Rejects   []NamedDelta   // by reason, sorted; only non-zero
	Custom    []NamedDelta   // by counter name, sorted; only non-zero
	Exposures []Exposure     // one per flag, variant and player, sorted
	Activity  []ActiveDay    // one per player and day, sorted by day then player
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
}

// ActiveDay is a player's first and last active minute of a UTC day
// (0 to 1439).
type ActiveDay struct {
	Player      string
	Day         int64
	First, Last int16
}

// Ingested is what Store.Ingest did.
type Ingested struct {
	Duplicate    bool  // the batch was stored before; nothing changed
	NewExposures int64 // players first exposed to a variant by this batch
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

// sort puts w's slices into the order Write documents: the order in which
// the store takes row locks, so that concurrent batches cannot deadlock.
func (w *Write) sort() {
	slices.SortFunc(w.Counters, func(a, b CounterDelta) int {
		return cmp.Or(cmp.Compare(a.Flag, b.Flag), cmp.Compare(a.Variant, b.Variant), cmp.Compare(a.Minute, b.Minute))
	})
	named := func(a, b NamedDelta) int {
		return cmp.Or(cmp.Compare(a.Flag, b.Flag), cmp.Compare(a.Variant, b.Variant), cmp.Compare(a.Minute, b.Minute), cmp.Compare(a.Name, b.Name))
	}
	slices.SortFunc(w.Rejects, named)
	slices.SortFunc(w.Custom, named)
	slices.SortFunc(w.Exposures, func(a, b Exposure) int {
		return cmp.Or(cmp.Compare(a.Flag, b.Flag), cmp.Compare(a.Variant, b.Variant), cmp.Compare(a.Player, b.Player))
	})
	slices.SortFunc(w.Activity, func(a, b ActiveDay) int {
		return cmp.Or(cmp.Compare(a.Day, b.Day), cmp.Compare(a.Player, b.Player))
	})
}
