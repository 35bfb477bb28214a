package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"gorm.io/gorm"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/migrations"
	"github.com/solsticehq/solstice/telemetry"
)

var _ telemetry.Store = (*DB)(nil)

// Telemetry storage (tables of migrations 00002_telemetry and
// 00006_telemetry_recent):
//
//   - telemetry_batches: one row per ingested batch, the idempotency record,
//     inserted first in the batch's transaction so that a concurrent repeat
//     waits on the primary key and then finds it.
//   - telemetry_counters, telemetry_rejects, telemetry_custom: counters per
//     environment, flag, variant and minute, incremented by upserts.
//   - telemetry_players: the player dictionary, player key → a dense 32-bit
//     id, so that sets of players are compact roaring bitmaps.
//   - telemetry_seen: per environment, flag and variant, the players ever
//     exposed, as one roaring bitmap per 65,536 ids (a "chunk"): a
//     transaction reads only the chunks of its own players, at most 8 KiB
//     each.
//   - telemetry_cohorts: per environment, flag, variant and hour, the players
//     first exposed in that hour, as a 64-bit roaring bitmap of
//     minute-of-hour<<32 | player id: the first-exposure minute of each.
//   - telemetry_seen_recent, telemetry_cohorts_recent: the players added
//     lately to each of those sets, folded into it once they pass
//     recentFoldBytes, so that a transaction rewrites a small bitmap rather
//     than the set. A set's players are its row's united with its recent
//     row's.
//   - telemetry_activity: per environment, UTC day and player, the first and
//     last active minute of the day. NOTE: rows, not bitmaps: every batch
//     moves the last active minute of every player it saw, and a row update
//     costs one row where a bitmap of "last minutes" would be rewritten whole.
//   - telemetry_servers, telemetry_watermarks: what each server delivered,
//     and the environment's watermark, which only grows.
//
// Batches are stored in groups, one transaction for the batches that
// arrive together (Ingest, in telemetry_ingest.go); a transaction takes its
// row locks in one order (the batch records, players, recent seen rows,
// recent cohort rows, counters, rejects, custom counters, activity, the
// servers; within each table by primary key) so that concurrent groups on
// PostgreSQL cannot deadlock.

// seenChunkBits is log2 of the ids per chunk of telemetry_seen.
const seenChunkBits = 16

func decodeCohort(blob []byte) (*roaring64.Bitmap, error) {
	b := roaring64.New()
	if len(blob) > 0 {
		if err := b.UnmarshalBinary(blob); err != nil {
			return nil, fmt.Errorf("decode cohort: %w", err)
		}
	}
	return b, nil
}

// customPlans makes PostgreSQL plan each statement of the transaction for
// its parameters.
//
// NOTE: pgx prepares statements and PostgreSQL switches a prepared
// statement to a generic plan after five executions. Planned while a
// telemetry table is new and has no statistics, the generic plan of
// "player_key IN ($2, …, $201)" scans the whole table, and the connection
// keeps that plan until the next ANALYZE: 15 ms per lookup at 10,000 players
// in the tests, growing with the table. A custom plan costs a fraction of a
// millisecond.
func (db *DB) customPlans(tx *gorm.DB) error {
	if db.dialect != migrations.Postgres {
		return nil
	}
	if err := tx.Exec("SET LOCAL plan_cache_mode = force_custom_plan").Error; err != nil {
		return internal("set plan cache mode", err)
	}
	return nil
}

// reading runs the reads of fn with custom plans: on PostgreSQL in a
// transaction that asks for them, on SQLite as they are (an SQLite
// transaction would take the write lock).
func (db *DB) reading(ctx context.Context, op string, fn func(tx *gorm.DB) error) error {
	if db.dialect != migrations.Postgres {
		return fn(db.gorm.WithContext(ctx))
	}
	return db.transaction(ctx, op, func(tx *gorm.DB) error {
		if err := db.customPlans(tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// minMax returns the names of the two-argument minimum and maximum
// functions of the dialect.
func (db *DB) minMax() (least, greatest string) {
	if db.dialect == migrations.Postgres {
		return "LEAST", "GREATEST"
	}
	return "min", "max"
}

// Reporting implements telemetry.Store. It returns a KindInternal error
// when the database fails.
func (db *DB) Reporting(ctx context.Context, env string) (telemetry.Reporting, error) {
	var out telemetry.Reporting
	var rows []struct {
		ServerID        string
		Through         int64
		LastActivity    int64
		SnapshotVersion int64
		LastSeen        time.Time
	}
	g := db.gorm.WithContext(ctx)
	err := g.Table("telemetry_servers").Select("server_id, through, last_activity, snapshot_version, last_seen").
		Where("environment = ?", env).Order("server_id").Find(&rows).Error
	if err != nil {
		return out, internal("read telemetry servers", err)
	}
	for _, r := range rows {
		out.Servers = append(out.Servers, telemetry.Server{
			ID: r.ServerID, Through: telemetry.Minute(r.Through), LastActivity: telemetry.Minute(r.LastActivity),
			SnapshotVersion: r.SnapshotVersion, LastSeen: r.LastSeen.UTC(),
		})
	}
	var wm []int64
	if err := g.Table("telemetry_watermarks").Where("environment = ?", env).Pluck("minute", &wm).Error; err != nil {
		return out, internal("read telemetry watermark", err)
	}
	if len(wm) == 1 {
		out.Watermark = telemetry.Minute(wm[0])
	}
	return out, nil
}

// AdvanceWatermark implements telemetry.Store. It returns a KindNotFound
// error for an unknown environment and a KindInternal error when the
// database fails.
func (db *DB) AdvanceWatermark(ctx context.Context, env string, m telemetry.Minute) (telemetry.Minute, error) {
	_, greatest := db.minMax()
	var out int64
	err := db.transaction(ctx, "advance telemetry watermark", func(tx *gorm.DB) error {
		err := tx.Exec(`INSERT INTO telemetry_watermarks (environment, minute) VALUES (?, ?)
ON CONFLICT (environment) DO UPDATE SET minute = `+greatest+`(telemetry_watermarks.minute, excluded.minute)`, env, int64(m)).Error
		switch {
		case err != nil && foreignKeyViolation(err):
			return solstice.Errorf(solstice.KindNotFound, "environment %q not found", env)
		case err != nil:
			return internal("advance telemetry watermark", err)
		}
		var wm []int64
		if err := tx.Table("telemetry_watermarks").Where("environment = ?", env).Pluck("minute", &wm).Error; err != nil || len(wm) != 1 {
			return internal("read telemetry watermark", cmp.Or(err, fmt.Errorf("%d rows", len(wm))))
		}
		out = wm[0]
		return nil
	})
	return telemetry.Minute(out), err
}

// Sums implements telemetry.Store. It returns a KindInternal error when the
// database fails.
func (db *DB) Sums(ctx context.Context, env, flag string, variants []string, from, to telemetry.Minute) (map[string]telemetry.Sums, error) {
	out := map[string]telemetry.Sums{}
	if len(variants) == 0 || to <= from {
		return out, nil
	}
	g := db.gorm.WithContext(ctx)
	var rows []struct {
		Variant                                                   string
		Accepted, Rejected, Exposures                             int64
		Sessions, SessionActions, SessionRejects                  int64
		SessionActionsSq, SessionRejectsSq, SessionActionsRejects float64
		First                                                     int64
		LastExposure, LastAction                                  *int64
	}
	err := g.Raw(`SELECT variant,
 CAST(SUM(accepted) AS BIGINT) AS accepted, CAST(SUM(rejected) AS BIGINT) AS rejected, CAST(SUM(exposures) AS BIGINT) AS exposures,
 CAST(SUM(sessions) AS BIGINT) AS sessions, CAST(SUM(session_actions) AS BIGINT) AS session_actions, CAST(SUM(session_rejects) AS BIGINT) AS session_rejects,
 SUM(session_actions_sq) AS session_actions_sq, SUM(session_rejects_sq) AS session_rejects_sq, SUM(session_actions_rejects) AS session_actions_rejects,
 MIN(minute) AS first,
 MAX(CASE WHEN exposures > 0 THEN minute END) AS last_exposure,
 MAX(CASE WHEN accepted + rejected > 0 THEN minute END) AS last_action
FROM telemetry_counters
WHERE environment = ? AND flag = ? AND variant IN ? AND minute >= ? AND minute < ?
GROUP BY variant`, env, flag, variants, int64(from), int64(to)).Scan(&rows).Error
	if err != nil {
		return nil, internal("sum telemetry counters", err)
	}
	for _, r := range rows {
		s := telemetry.Sums{
			Accepted: r.Accepted, Rejected: r.Rejected, Exposures: r.Exposures,
			Sessions: telemetry.SessionSums{
				Sessions: r.Sessions, N: r.SessionActions, X: r.SessionRejects,
				NN: r.SessionActionsSq, XX: r.SessionRejectsSq, NX: r.SessionActionsRejects,
			},
			First: telemetry.Minute(r.First),
		}
		if r.LastExposure != nil {
			s.LastExposure = telemetry.Minute(*r.LastExposure)
		}
		if r.LastAction != nil {
			s.LastAction = telemetry.Minute(*r.LastAction)
		}
		out[r.Variant] = s
	}
	var custom []struct {
		Variant, Name string
		Total         int64
		Last          *int64
	}
	err = g.Raw(`SELECT variant, name, CAST(SUM(value) AS BIGINT) AS total, MAX(CASE WHEN value > 0 THEN minute END) AS last
FROM telemetry_custom
WHERE environment = ? AND flag = ? AND variant IN ? AND minute >= ? AND minute < ?
GROUP BY variant, name`, env, flag, variants, int64(from), int64(to)).Scan(&custom).Error
	if err != nil {
		return nil, internal("sum telemetry custom counters", err)
	}
	for _, c := range custom {
		s := out[c.Variant]
		if s.Custom == nil {
			s.Custom, s.LastCustom = map[string]int64{}, map[string]telemetry.Minute{}
		}
		s.Custom[c.Name] = c.Total
		if c.Last != nil {
			s.LastCustom[c.Name] = telemetry.Minute(*c.Last)
		}
		out[c.Variant] = s
	}
	return out, nil
}

// RejectReasons implements telemetry.Store. It returns a KindInternal
// error when the database fails.
func (db *DB) RejectReasons(ctx context.Context, env, flag, variant string, from, to telemetry.Minute) (map[string]int64, error) {
	out := map[string]int64{}
	if to <= from {
		return out, nil
	}
	var rows []struct {
		Reason string
		Total  int64
	}
	err := db.gorm.WithContext(ctx).Raw(`SELECT reason, CAST(SUM(rejects) AS BIGINT) AS total FROM telemetry_rejects
WHERE environment = ? AND flag = ? AND variant = ? AND minute >= ? AND minute < ?
GROUP BY reason`, env, flag, variant, int64(from), int64(to)).Scan(&rows).Error
	if err != nil {
		return nil, internal("sum reject reasons", err)
	}
	for _, r := range rows {
		out[r.Reason] = r.Total
	}
	return out, nil
}

// Cohort implements telemetry.Store. It returns a KindInternal error when
// the database fails or holds a malformed bitmap.
//
// An hour's players are its set row united with its recent row
// (telemetry_cohorts_recent), read in one statement so that a fold of the
// one into the other, committed meanwhile, cannot hide a player.
func (db *DB) Cohort(ctx context.Context, env, flag, variant string, from, to telemetry.Minute) ([]telemetry.FirstExposure, error) {
	if to <= from {
		return nil, nil
	}
	var rows []struct {
		Hour    int64
		Players []byte
	}
	lo, hi := int64(from)/60, int64(to-1)/60
	err := db.gorm.WithContext(ctx).Raw(`SELECT hour, players FROM telemetry_cohorts
WHERE environment = ? AND flag = ? AND variant = ? AND hour >= ? AND hour <= ?
UNION ALL SELECT hour, players FROM telemetry_cohorts_recent
WHERE environment = ? AND flag = ? AND variant = ? AND hour >= ? AND hour <= ?
ORDER BY hour`, env, flag, variant, lo, hi, env, flag, variant, lo, hi).Scan(&rows).Error
	if err != nil {
		return nil, internal("read cohorts", err)
	}
	var out []telemetry.FirstExposure
	for i := 0; i < len(rows); {
		hour := rows[i].Hour
		b := roaring64.New()
		for ; i < len(rows) && rows[i].Hour == hour; i++ {
			part, err := decodeCohort(rows[i].Players)
			if err != nil {
				return nil, internal("read cohorts", err)
			}
			b.Or(part)
		}
		for it := b.Iterator(); it.HasNext(); {
			v := it.Next()
			m := telemetry.Minute(hour*60 + int64(v>>32))
			if m >= from && m < to {
				out = append(out, telemetry.FirstExposure{Player: uint32(v), Minute: m}) //nolint:gosec // the low 32 bits are the id
			}
		}
	}
	return out, nil
}

// ActiveDays implements telemetry.Store. It returns a KindInternal error
// when the database fails.
func (db *DB) ActiveDays(ctx context.Context, env string, days []int64, players []uint32) ([]telemetry.PlayerDay, error) {
	if len(days) == 0 || len(players) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(players))
	for i, p := range players {
		ids[i] = int64(p)
	}
	var out []telemetry.PlayerDay
	err := db.reading(ctx, "read activity", func(tx *gorm.DB) error {
		for chunk := range slices.Chunk(ids, 500) {
			var rows []struct {
				Day, PlayerID           int64
				FirstMinute, LastMinute int64
			}
			err := tx.Table("telemetry_activity").Select("day, player_id, first_minute, last_minute").
				Where("environment = ? AND day IN ? AND player_id IN ?", env, days, chunk).Find(&rows).Error
			if err != nil {
				return internal("read activity", err)
			}
			for _, r := range rows {
				out = append(out, telemetry.PlayerDay{Player: uint32(r.PlayerID), Day: r.Day, First: int16(r.FirstMinute), Last: int16(r.LastMinute)}) //nolint:gosec // ids and minutes of the day checked by the schema
			}
		}
		return nil
	})
	return out, err
}
