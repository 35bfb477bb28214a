package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"gorm.io/gorm"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/migrations"
	"github.com/solsticehq/solstice/telemetry"
)

var _ telemetry.Store = (*DB)(nil)

// Telemetry storage (tables of migration 00002_telemetry):
//
//   - telemetry_batches: one row per ingested batch, the idempotency record,
//     inserted first in the batch's transaction so that a concurrent repeat
//     waits on the primary key and then finds it.
//   - telemetry_counters, telemetry_rejects, telemetry_custom: counters per
//     environment, flag, variant and minute, incremented by upserts.
//   - telemetry_players: the player dictionary, player key → a dense 32-bit
//     id, so that sets of players are compact roaring bitmaps.
//   - telemetry_seen: per environment, flag and variant, the players ever
//     exposed, as one roaring bitmap per 65,536 ids (a "chunk"): a batch
//     reads, locks and rewrites only the chunks of its own players, at most
//     8 KiB each.
//   - telemetry_cohorts: per environment, flag, variant and hour, the players
//     first exposed in that hour, as a 64-bit roaring bitmap of
//     minute-of-hour<<32 | player id: the first-exposure minute of each.
//   - telemetry_activity: per environment, UTC day and player, the first and
//     last active minute of the day. NOTE: rows, not bitmaps: every batch
//     moves the last active minute of every player it saw, and a row update
//     costs one row where a bitmap of "last minutes" would be rewritten whole.
//   - telemetry_servers, telemetry_watermarks: what each server delivered,
//     and the environment's watermark, which only grows.
//
// A batch's transaction takes its row locks in one order (the batch record,
// players, seen chunks, cohorts, counters, rejects, custom counters,
// activity, the server; within each table by primary key) so that
// concurrent batches on PostgreSQL cannot deadlock.

// seenChunkBits is log2 of the ids per chunk of telemetry_seen.
const seenChunkBits = 16

// Ingest implements telemetry.Store: it applies w in one transaction.
//
// Errors: KindInvalid for a malformed w; KindNotFound for an unknown
// environment; KindConflict for a batch ID stored with another digest;
// KindInternal otherwise.
func (db *DB) Ingest(ctx context.Context, w telemetry.Write) (telemetry.Ingested, error) {
	if w.Environment == "" || w.BatchID == "" || w.ServerID == "" || len(w.Digest) != sha256.Size {
		return telemetry.Ingested{}, solstice.Errorf(solstice.KindInvalid, "telemetry write without an environment, batch id, server id or digest")
	}
	var out telemetry.Ingested
	err := db.transaction(ctx, "ingest telemetry", func(tx *gorm.DB) error {
		if err := db.customPlans(tx); err != nil {
			return err
		}
		dup, err := claimBatch(tx, w, dbTime(w.ReceivedAt))
		if err != nil || dup {
			out.Duplicate = dup
			return err
		}
		ids, err := playerIDs(tx, w)
		if err != nil {
			return err
		}
		fresh, err := db.firstExposures(tx, w, ids)
		if err != nil {
			return err
		}
		for _, n := range fresh {
			out.NewExposures += n
		}
		if err := addCounters(tx, w, fresh); err != nil {
			return err
		}
		if err := addNamed(tx, "telemetry_rejects", "reason", "rejects", w.Environment, w.Rejects); err != nil {
			return err
		}
		if err := addNamed(tx, "telemetry_custom", "name", "value", w.Environment, w.Custom); err != nil {
			return err
		}
		if err := db.addActivity(tx, w, ids); err != nil {
			return err
		}
		return db.touchServer(tx, w)
	})
	if err != nil {
		return telemetry.Ingested{}, err
	}
	return out, nil
}

// claimBatch records the batch, or reports that it was recorded before.
func claimBatch(tx *gorm.DB, w telemetry.Write, now time.Time) (duplicate bool, err error) {
	res := tx.Exec(`INSERT INTO telemetry_batches (environment, batch_id, digest, server_id, received_at)
VALUES (?, ?, ?, ?, ?) ON CONFLICT (environment, batch_id) DO NOTHING`,
		w.Environment, w.BatchID, w.Digest, w.ServerID, now)
	switch {
	case res.Error != nil && foreignKeyViolation(res.Error):
		return false, solstice.Errorf(solstice.KindNotFound, "environment %q not found", w.Environment)
	case res.Error != nil:
		return false, internal("record telemetry batch", res.Error)
	case res.RowsAffected == 1:
		return false, nil
	}
	var stored struct{ Digest []byte }
	err = tx.Table("telemetry_batches").Select("digest").
		Where("environment = ? AND batch_id = ?", w.Environment, w.BatchID).Take(&stored).Error
	if err != nil {
		return false, internal("read telemetry batch", err)
	}
	if !bytes.Equal(stored.Digest, w.Digest) {
		return false, solstice.Errorf(solstice.KindConflict,
			"batch %q was already received with other content; a batch id names one batch: send new data under a new id", w.BatchID)
	}
	return true, nil
}

// playerIDs returns the dictionary ids of the players of w, adding the
// missing ones. NOTE: it looks the keys up before inserting, rather than
// inserting every key with ON CONFLICT DO NOTHING: on PostgreSQL each
// conflicting insert would burn a value of the identity sequence, and the
// ids would stop being dense.
func playerIDs(tx *gorm.DB, w telemetry.Write) (map[string]uint32, error) {
	keys := make([]string, 0, len(w.Exposures)+len(w.Activity))
	for _, e := range w.Exposures {
		keys = append(keys, e.Player)
	}
	for _, a := range w.Activity {
		keys = append(keys, a.Player)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	ids := make(map[string]uint32, len(keys))
	lookup := func(keys []string) error {
		for chunk := range slices.Chunk(keys, batchSize) {
			var rows []struct {
				ID        int64
				PlayerKey string
			}
			err := tx.Table("telemetry_players").Select("id, player_key").
				Where("environment = ? AND player_key IN ?", w.Environment, chunk).Find(&rows).Error
			if err != nil {
				return internal("look up players", err)
			}
			for _, r := range rows {
				if r.ID < 1 || r.ID > math.MaxUint32 {
					return internal("look up players", fmt.Errorf("player id %d is out of the 32-bit range: the dictionary is full", r.ID))
				}
				ids[r.PlayerKey] = uint32(r.ID)
			}
		}
		return nil
	}
	if err := lookup(keys); err != nil {
		return nil, err
	}
	var missing []string
	for _, k := range keys {
		if _, ok := ids[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return ids, nil
	}
	args := make([]any, 0, 2*len(missing))
	for _, k := range missing {
		args = append(args, w.Environment, k)
	}
	err := execRows(tx, "add players", "INSERT INTO telemetry_players (environment, player_key)",
		"ON CONFLICT (environment, player_key) DO NOTHING", 2, args)
	if err != nil {
		return nil, err
	}
	if err := lookup(missing); err != nil {
		return nil, err
	}
	if len(ids) != len(keys) {
		return nil, solstice.Errorf(solstice.KindInternal, "add players: %d of %d have no id after insertion", len(keys)-len(ids), len(keys))
	}
	return ids, nil
}

// series is a flag's variant.
type series struct{ flag, variant string }

// minuteKey is a series' minute.
type minuteKey struct {
	series
	minute telemetry.Minute
}

// chunkKey names a row of telemetry_seen (chunk) or telemetry_cohorts
// (hour).
type chunkKey struct {
	series
	n int64
}

func compareChunks(a, b chunkKey) int {
	return cmp.Or(cmp.Compare(a.flag, b.flag), cmp.Compare(a.variant, b.variant), cmp.Compare(a.n, b.n))
}

// firstExposures finds the players of w.Exposures never exposed to their
// series before, adds them to its seen set and to the cohort of their
// minute, and returns their number per series and minute.
//
// It reads the seen chunks of w's players without a lock first: a player
// found there was exposed before (the sets only grow), which is the common
// case of a returning player and takes no lock. Only the chunks of the
// remaining candidates are then locked, read again and rewritten.
func (db *DB) firstExposures(tx *gorm.DB, w telemetry.Write, ids map[string]uint32) (map[minuteKey]int64, error) {
	if len(w.Exposures) == 0 {
		return nil, nil
	}
	seenChunks := map[chunkKey]bool{}
	for _, e := range w.Exposures {
		seenChunks[chunkKey{series{e.Flag, e.Variant}, int64(ids[e.Player] >> seenChunkBits)}] = true
	}
	seen, err := db.readBitmaps(tx, "telemetry_seen", "chunk", w.Environment, slices.SortedFunc(maps.Keys(seenChunks), compareChunks), false)
	if err != nil {
		return nil, err
	}
	var candidates []telemetry.Exposure
	lock := map[chunkKey]bool{}
	for _, e := range w.Exposures {
		id := ids[e.Player]
		k := chunkKey{series{e.Flag, e.Variant}, int64(id >> seenChunkBits)}
		if b := seen[k]; b != nil && b.Contains(id) {
			continue
		}
		candidates = append(candidates, e)
		lock[k] = true
	}
	if len(candidates) == 0 {
		return nil, nil
	}

	locked := slices.SortedFunc(maps.Keys(lock), compareChunks)
	if seen, err = db.lockBitmaps(tx, "telemetry_seen", "chunk", w.Environment, locked); err != nil {
		return nil, err
	}
	fresh := map[minuteKey]int64{}
	cohorts := map[chunkKey][]uint64{}
	for _, e := range candidates {
		id := ids[e.Player]
		s := series{e.Flag, e.Variant}
		if !seen[chunkKey{s, int64(id >> seenChunkBits)}].CheckedAdd(id) {
			continue // another batch exposed the player meanwhile
		}
		fresh[minuteKey{s, e.Minute}]++
		hour := int64(e.Minute) / 60
		cohorts[chunkKey{s, hour}] = append(cohorts[chunkKey{s, hour}], uint64(int64(e.Minute)-hour*60)<<32|uint64(id)) //nolint:gosec // a minute of the hour, 0 to 59
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	if err := writeBitmaps(tx, "telemetry_seen", "chunk", w.Environment, locked, seen); err != nil {
		return nil, err
	}

	hours := slices.SortedFunc(maps.Keys(cohorts), compareChunks)
	stored, err := db.lockBitmaps64(tx, w.Environment, hours)
	if err != nil {
		return nil, err
	}
	for _, k := range hours {
		stored[k].AddMany(cohorts[k])
	}
	args := make([]any, 0, 5*len(hours))
	for _, k := range hours {
		b := stored[k]
		b.RunOptimize()
		blob, err := b.ToBytes()
		if err != nil {
			return nil, internal("encode cohort", err)
		}
		args = append(args, w.Environment, k.flag, k.variant, k.n, blob)
	}
	err = execRows(tx, "store cohorts", "INSERT INTO telemetry_cohorts (environment, flag, variant, hour, players)",
		"ON CONFLICT (environment, flag, variant, hour) DO UPDATE SET players = excluded.players", 5, args)
	if err != nil {
		return nil, err
	}
	return fresh, nil
}

// readBitmaps reads rows of a bitmap table (telemetry_seen by chunk),
// locking them with forUpdate on PostgreSQL. Missing rows are missing from
// the map.
func (db *DB) readBitmaps(tx *gorm.DB, table, column, env string, keys []chunkKey, forUpdate bool) (map[chunkKey]*roaring.Bitmap, error) {
	out := make(map[chunkKey]*roaring.Bitmap, len(keys))
	err := db.selectChunks(tx, table, column, env, keys, forUpdate, func(k chunkKey, blob []byte) error {
		b := roaring.New()
		if len(blob) > 0 {
			if err := b.UnmarshalBinary(blob); err != nil {
				return fmt.Errorf("decode %s %v: %w", table, k, err)
			}
		}
		out[k] = b
		return nil
	})
	return out, err
}

// lockBitmaps locks the rows keys of a 32-bit bitmap table, creating the
// missing ones empty, and returns their bitmaps.
func (db *DB) lockBitmaps(tx *gorm.DB, table, column, env string, keys []chunkKey) (map[chunkKey]*roaring.Bitmap, error) {
	if err := insertEmpty(tx, table, column, env, keys); err != nil {
		return nil, err
	}
	out, err := db.readBitmaps(tx, table, column, env, keys, true)
	if err != nil {
		return nil, err
	}
	if len(out) != len(keys) {
		return nil, solstice.Errorf(solstice.KindInternal, "lock %s: %d of %d rows missing after insertion", table, len(keys)-len(out), len(keys))
	}
	return out, nil
}

// lockBitmaps64 is lockBitmaps for telemetry_cohorts.
func (db *DB) lockBitmaps64(tx *gorm.DB, env string, keys []chunkKey) (map[chunkKey]*roaring64.Bitmap, error) {
	if err := insertEmpty(tx, "telemetry_cohorts", "hour", env, keys); err != nil {
		return nil, err
	}
	out := make(map[chunkKey]*roaring64.Bitmap, len(keys))
	err := db.selectChunks(tx, "telemetry_cohorts", "hour", env, keys, true, func(k chunkKey, blob []byte) error {
		b, err := decodeCohort(blob)
		out[k] = b
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(out) != len(keys) {
		return nil, solstice.Errorf(solstice.KindInternal, "lock telemetry_cohorts: %d of %d rows missing after insertion", len(keys)-len(out), len(keys))
	}
	return out, nil
}

func decodeCohort(blob []byte) (*roaring64.Bitmap, error) {
	b := roaring64.New()
	if len(blob) > 0 {
		if err := b.UnmarshalBinary(blob); err != nil {
			return nil, fmt.Errorf("decode cohort: %w", err)
		}
	}
	return b, nil
}

// insertEmpty creates the missing rows of keys in a bitmap table, so that
// they can be locked: two batches adding the first players of a chunk
// must not both start from nothing.
func insertEmpty(tx *gorm.DB, table, column, env string, keys []chunkKey) error {
	args := make([]any, 0, 5*len(keys))
	for _, k := range keys {
		args = append(args, env, k.flag, k.variant, k.n, []byte{})
	}
	return execRows(tx, "create "+table+" rows",
		"INSERT INTO "+table+" (environment, flag, variant, "+column+", players)",
		"ON CONFLICT (environment, flag, variant, "+column+") DO NOTHING", 5, args)
}

// selectChunks reads the rows keys of a bitmap table, in key order, locked
// FOR UPDATE on PostgreSQL if lock (SQLite's immediate transactions hold
// the database's write lock already).
//
// NOTE: it selects flag IN (…) AND n IN (…), a superset of keys whose other
// rows it skips (and, on PostgreSQL, locks too), rather than an OR of one
// term per key or a row-value IN list: SQLite takes milliseconds to plan
// either with a few hundred keys, more than the extra rows cost while the
// flags' variants share their chunks, as they do in practice.
func (db *DB) selectChunks(tx *gorm.DB, table, column, env string, keys []chunkKey, lock bool, f func(chunkKey, []byte) error) error {
	if len(keys) == 0 {
		return nil
	}
	want := make(map[chunkKey]bool, len(keys))
	var flagNames []string
	var ns []int64
	for _, k := range keys {
		want[k] = true
		flagNames = append(flagNames, k.flag)
		ns = append(ns, k.n)
	}
	slices.Sort(flagNames)
	slices.Sort(ns)
	flagNames, ns = slices.Compact(flagNames), slices.Compact(ns)
	q := "SELECT flag, variant, " + column + " AS n, players FROM " + table +
		" WHERE environment = ? AND flag IN ? AND " + column + " IN ? ORDER BY flag, variant, " + column
	if lock && db.dialect == migrations.Postgres {
		q += " FOR UPDATE"
	}
	var rows []struct {
		Flag, Variant string
		N             int64
		Players       []byte
	}
	if err := tx.Raw(q, env, flagNames, ns).Scan(&rows).Error; err != nil {
		return internal("read "+table, err)
	}
	for _, r := range rows {
		k := chunkKey{series{r.Flag, r.Variant}, r.N}
		if !want[k] {
			continue
		}
		if err := f(k, r.Players); err != nil {
			return internal("read "+table, err)
		}
	}
	return nil
}

// writeBitmaps stores the bitmaps of keys (rows locked by lockBitmaps).
func writeBitmaps(tx *gorm.DB, table, column, env string, keys []chunkKey, bitmaps map[chunkKey]*roaring.Bitmap) error {
	args := make([]any, 0, 5*len(keys))
	for _, k := range keys {
		b := bitmaps[k]
		b.RunOptimize()
		blob, err := b.ToBytes()
		if err != nil {
			return internal("encode "+table, err)
		}
		args = append(args, env, k.flag, k.variant, k.n, blob)
	}
	return execRows(tx, "store "+table, "INSERT INTO "+table+" (environment, flag, variant, "+column+", players)",
		"ON CONFLICT (environment, flag, variant, "+column+") DO UPDATE SET players = excluded.players", 5, args)
}

// addCounters adds w's counters and the first exposures to the minute
// rows.
func addCounters(tx *gorm.DB, w telemetry.Write, fresh map[minuteKey]int64) error {
	args := make([]any, 0, 13*len(w.Counters))
	for _, c := range w.Counters {
		s := c.Sessions
		args = append(args, w.Environment, c.Flag, c.Variant, int64(c.Minute), c.Accepted, c.Rejected,
			fresh[minuteKey{series{c.Flag, c.Variant}, c.Minute}],
			s.Sessions, s.N, s.X, s.NN, s.XX, s.NX)
	}
	set := make([]string, 0, 9)
	for _, col := range []string{"accepted", "rejected", "exposures", "sessions", "session_actions", "session_rejects",
		"session_actions_sq", "session_rejects_sq", "session_actions_rejects"} {
		set = append(set, col+" = telemetry_counters."+col+" + excluded."+col)
	}
	return execRows(tx, "add counters",
		`INSERT INTO telemetry_counters (environment, flag, variant, minute, accepted, rejected, exposures,
 sessions, session_actions, session_rejects, session_actions_sq, session_rejects_sq, session_actions_rejects)`,
		"ON CONFLICT (environment, flag, variant, minute) DO UPDATE SET "+strings.Join(set, ", "), 13, args)
}

// addNamed adds reject reasons or custom counters.
func addNamed(tx *gorm.DB, table, nameColumn, valueColumn, env string, deltas []telemetry.NamedDelta) error {
	args := make([]any, 0, 6*len(deltas))
	for _, d := range deltas {
		args = append(args, env, d.Flag, d.Variant, int64(d.Minute), d.Name, d.Value)
	}
	return execRows(tx, "add "+table,
		"INSERT INTO "+table+" (environment, flag, variant, minute, "+nameColumn+", "+valueColumn+")",
		"ON CONFLICT (environment, flag, variant, minute, "+nameColumn+") DO UPDATE SET "+
			valueColumn+" = "+table+"."+valueColumn+" + excluded."+valueColumn, 6, args)
}

// addActivity widens each player's active minutes of each day.
func (db *DB) addActivity(tx *gorm.DB, w telemetry.Write, ids map[string]uint32) error {
	if len(w.Activity) == 0 {
		return nil
	}
	rows := slices.Clone(w.Activity)
	slices.SortFunc(rows, func(a, b telemetry.ActiveDay) int { // primary-key order
		return cmp.Or(cmp.Compare(a.Day, b.Day), cmp.Compare(ids[a.Player], ids[b.Player]))
	})
	args := make([]any, 0, 5*len(rows))
	for _, a := range rows {
		args = append(args, w.Environment, a.Day, int64(ids[a.Player]), int64(a.First), int64(a.Last))
	}
	least, greatest := db.minMax()
	return execRows(tx, "add activity", "INSERT INTO telemetry_activity (environment, day, player_id, first_minute, last_minute)",
		"ON CONFLICT (environment, day, player_id) DO UPDATE SET first_minute = "+least+"(telemetry_activity.first_minute, excluded.first_minute), "+
			"last_minute = "+greatest+"(telemetry_activity.last_minute, excluded.last_minute)", 5, args)
}

// touchServer records what the batch's server delivered.
func (db *DB) touchServer(tx *gorm.DB, w telemetry.Write) error {
	_, greatest := db.minMax()
	now := dbTime(w.ReceivedAt)
	err := tx.Exec(`INSERT INTO telemetry_servers (environment, server_id, through, last_activity, snapshot_version, first_seen, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (environment, server_id) DO UPDATE SET
 through = `+greatest+`(telemetry_servers.through, excluded.through),
 last_activity = `+greatest+`(telemetry_servers.last_activity, excluded.last_activity),
 snapshot_version = excluded.snapshot_version,
 last_seen = `+greatest+`(telemetry_servers.last_seen, excluded.last_seen)`,
		w.Environment, w.ServerID, int64(w.Through), int64(w.LastActivity), w.SnapshotVersion, now, now).Error
	if err != nil {
		return internal("record telemetry server", err)
	}
	return nil
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
func (db *DB) Cohort(ctx context.Context, env, flag, variant string, from, to telemetry.Minute) ([]telemetry.FirstExposure, error) {
	if to <= from {
		return nil, nil
	}
	var rows []struct {
		Hour    int64
		Players []byte
	}
	err := db.gorm.WithContext(ctx).Table("telemetry_cohorts").Select("hour, players").
		Where("environment = ? AND flag = ? AND variant = ? AND hour >= ? AND hour <= ?",
			env, flag, variant, int64(from)/60, int64(to-1)/60).
		Order("hour").Find(&rows).Error
	if err != nil {
		return nil, internal("read cohorts", err)
	}
	var out []telemetry.FirstExposure
	for _, r := range rows {
		b, err := decodeCohort(r.Players)
		if err != nil {
			return nil, internal("read cohorts", err)
		}
		for it := b.Iterator(); it.HasNext(); {
			v := it.Next()
			m := telemetry.Minute(r.Hour*60 + int64(v>>32))
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

// execRows runs head VALUES (…), (…) tail with width arguments per row,
// batchSize rows per statement.
func execRows(tx *gorm.DB, op, head, tail string, width int, args []any) error {
	rows := len(args) / width
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", width), ", ") + ")"
	for start := 0; start < rows; start += batchSize {
		end := min(rows, start+batchSize)
		var q strings.Builder
		q.Grow(len(head) + len(tail) + (end-start)*(len(one)+2) + 16)
		q.WriteString(head)
		q.WriteString(" VALUES ")
		for i := start; i < end; i++ {
			if i > start {
				q.WriteString(", ")
			}
			q.WriteString(one)
		}
		q.WriteString(" ")
		q.WriteString(tail)
		if err := tx.Exec(q.String(), args[start*width:end*width]...).Error; err != nil {
			return internal(op, err)
		}
	}
	return nil
}
