package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/migrations"
	"github.com/solsticehq/solstice/telemetry"
)

// Ingest implements telemetry.Store: it stores the writes ws in one
// transaction (a group commit), each write all or nothing.
//
// Per-write outcomes are decided inside the transaction: a repeated batch
// id (already stored, or earlier in ws) is a duplicate with the same
// digest and a KindConflict error with another, and stores nothing. What
// the stored writes add is merged first (counters of one key summed,
// activity of one player and day widened), so that each row is written
// once per group, by statements of fixed text (bulk.run).
//
// If the transaction fails as a whole (an unknown environment's foreign
// key, a database error), each write is tried again alone, so that one
// bad write cannot fail the others; a write that fails alone gets the
// error: KindInvalid for a malformed write; KindNotFound for an unknown
// environment; KindInternal otherwise.
//
// NOTE: it uses database/sql under gorm directly: a group writes thousands
// of values, and gorm's per-value reflection and statement building cost
// more than the database did.
func (db *DB) Ingest(ctx context.Context, ws []telemetry.Write) []telemetry.Ingested {
	out := make([]telemetry.Ingested, len(ws))
	idx := make([]int, 0, len(ws))
	for i, w := range ws {
		if w.Environment == "" || w.BatchID == "" || w.ServerID == "" || len(w.Digest) != sha256.Size {
			out[i].Err = solstice.Errorf(solstice.KindInvalid, "telemetry write without an environment, batch id, server id or digest")
			continue
		}
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return out
	}
	err := db.ingestGroup(ctx, ws, idx, out)
	switch {
	case err == nil:
		return out
	case len(idx) == 1:
		out[idx[0]] = telemetry.Ingested{Err: err}
		return out
	}
	for _, i := range idx {
		out[i] = telemetry.Ingested{}
		if err := db.ingestGroup(ctx, ws, []int{i}, out); err != nil {
			out[i] = telemetry.Ingested{Err: err}
		}
	}
	return out
}

// ingestGroup stores the writes ws[idx] in one transaction, setting their
// outcomes in out. Per-write errors (conflicts) go to out; an error
// returned means that the transaction failed and stored nothing.
//
// The transaction takes its row locks in one order (batch records,
// players, recent seen rows, recent cohort rows, counters, rejects, custom
// counters, activity, servers; within each table by key) so that
// concurrent groups on PostgreSQL cannot deadlock.
func (db *DB) ingestGroup(ctx context.Context, ws []telemetry.Write, idx []int, out []telemetry.Ingested) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return internal("begin telemetry transaction", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback() // the error that made us roll back is the one worth returning
		}
	}()
	// NOTE: no customPlans: the statements of a group take their keys as
	// arrays (unnest, = ANY) or look players up one index probe at a time,
	// and a generic plan of them is as good as a custom one.
	t := &ingestTx{ctx: ctx, tx: tx, pg: db.dialect == migrations.Postgres}
	stored, err := t.claim(ws, idx, out)
	if err != nil {
		return err
	}
	if len(stored) > 0 {
		ids, created, err := t.playerIDs(ws, stored, out)
		if err != nil {
			return err
		}
		fresh, err := t.firstExposures(ws, stored, ids, created, out)
		if err != nil {
			return err
		}
		for _, step := range []func() error{
			func() error { return t.addCounters(ws, stored, fresh) },
			func() error {
				return t.addNamed("telemetry_rejects", "reason", "rejects", ws, stored, func(w telemetry.Write) []telemetry.NamedDelta { return w.Rejects })
			},
			func() error {
				return t.addNamed("telemetry_custom", "name", "value", ws, stored, func(w telemetry.Write) []telemetry.NamedDelta { return w.Custom })
			},
			func() error { return t.addActivity(ws, stored, ids) },
			func() error { return t.touchServers(ws, stored) },
		} {
			if err := step(); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return internal("commit telemetry", err)
	}
	committed = true
	return nil
}

// ingestTx is a telemetry transaction on the database/sql connection.
type ingestTx struct {
	ctx context.Context
	tx  *sql.Tx
	pg  bool
}

// rebind turns the ? placeholders of q into PostgreSQL's $n.
func (t *ingestTx) rebind(q string) string {
	if !t.pg || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b.WriteByte(q[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

func (t *ingestTx) exec(op, q string, args ...any) error {
	if _, err := t.tx.ExecContext(t.ctx, t.rebind(q), args...); err != nil {
		return internal(op, err)
	}
	return nil
}

// query runs q and calls scan for each row.
func (t *ingestTx) query(op, q string, args []any, scan func(*sql.Rows) error) error {
	rows, err := t.tx.QueryContext(t.ctx, t.rebind(q), args...)
	if err != nil {
		return internal(op, err)
	}
	if err := scanAll(rows, scan); err != nil {
		return internal(op, err)
	}
	return nil
}

// scanAll calls scan for each of rows, and closes them.
func scanAll(rows *sql.Rows, scan func(*sql.Rows) error) error {
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// inStrings returns "IN (…)" on SQLite and "= ANY(?)" on PostgreSQL for
// the values vs, appending them to args: on SQLite as one JSON array, so
// that the text of the statement does not depend on their number (a list
// of keys parses fast; see bulk.run for rows).
func (t *ingestTx) inStrings(vs []string, args []any) (string, []any) {
	if t.pg {
		return "= ANY(?)", append(args, vs)
	}
	buf := []byte{'['}
	for i, v := range vs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, v)
	}
	return "IN (SELECT value FROM json_each(?))", append(args, string(append(buf, ']')))
}

// inInts is inStrings for integers.
func (t *ingestTx) inInts(vs []int64, args []any) (string, []any) {
	if t.pg {
		return "= ANY(?)", append(args, vs)
	}
	buf := []byte{'['}
	for i, v := range vs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, v, 10)
	}
	return "IN (SELECT value FROM json_each(?))", append(args, string(append(buf, ']')))
}

// colType is the type of a column of a bulk statement.
type colType int

const (
	colText colType = iota
	colInt
	colReal
	colBlob
	colTime
)

var colTypes = map[string]colType{"text": colText, "int": colInt, "real": colReal, "blob": colBlob, "time": colTime}

// bulk collects the rows of an INSERT of many rows, column by column (see
// run).
type bulk struct {
	table string
	names []string
	types []colType
	cols  []column
	rows  int
}

// column holds the values of one column of a bulk, in the slice of its
// type.
type column struct {
	text  []string
	ints  []int64
	reals []float64
	blobs [][]byte
	times []time.Time
}

// newBulk starts a bulk insert into table of the named columns, given as
// "name type" with type text, int, real, blob or time.
func newBulk(table string, columns ...string) *bulk {
	b := &bulk{table: table, cols: make([]column, len(columns))}
	for _, c := range columns {
		name, typ, _ := strings.Cut(c, " ")
		t, ok := colTypes[typ]
		if !ok {
			panic("store: bulk column " + c + " has no known type") // a programming error
		}
		b.names = append(b.names, name)
		b.types = append(b.types, t)
	}
	return b
}

// add appends a row: one value per column, of the column's Go type
// (string, int64, float64, []byte, time.Time).
func (b *bulk) add(vals ...any) {
	for i, v := range vals {
		c := &b.cols[i]
		switch b.types[i] {
		case colText:
			c.text = append(c.text, v.(string)) //nolint:forcetypeassert // the callers pass the declared types
		case colInt:
			c.ints = append(c.ints, v.(int64)) //nolint:forcetypeassert // idem
		case colReal:
			c.reals = append(c.reals, v.(float64)) //nolint:forcetypeassert // idem
		case colBlob:
			c.blobs = append(c.blobs, v.([]byte)) //nolint:forcetypeassert // idem
		case colTime:
			c.times = append(c.times, v.(time.Time)) //nolint:forcetypeassert // idem
		}
	}
	b.rows++
}

func (b *bulk) array(col int) (any, string) {
	c := &b.cols[col]
	switch b.types[col] {
	case colInt:
		return c.ints, "bigint[]"
	case colReal:
		return c.reals, "double precision[]"
	case colBlob:
		return c.blobs, "bytea[]"
	case colTime:
		return c.times, "timestamptz[]"
	}
	return c.text, "text[]"
}

// run inserts the rows, with tail after them (ON CONFLICT …, RETURNING …);
// scan, if not nil, reads the rows that RETURNING returns.
//
// NOTE: the text of the statements does not depend on the number of rows.
// On PostgreSQL the rows are arrays, one per column, that unnest turns
// back into rows: one statement, prepared once per connection by pgx. On
// SQLite, which runs in the process, statements of a few rows are executed
// as many times as it takes (runEach): a statement of a few hundred VALUES
// rows took longer to prepare than to run, and rows passed as one JSON
// document (json_each) were encoded, then parsed again for each column:
// twice the work of binding them for the counters, six times for the
// bitmap rows, whose blobs travelled in hexadecimal.
func (b *bulk) run(t *ingestTx, op, tail string, scan func(*sql.Rows) error) error {
	if b.rows == 0 {
		return nil
	}
	if !t.pg {
		return b.runEach(t, op, tail, scan, nil)
	}
	args := make([]any, len(b.cols))
	casts := make([]string, len(b.cols))
	for i := range b.cols {
		var typ string
		args[i], typ = b.array(i)
		casts[i] = "?::" + typ
	}
	q := "INSERT INTO " + b.table + " (" + strings.Join(b.names, ", ") + ") SELECT * FROM unnest(" + strings.Join(casts, ", ") + ") " + tail
	if scan != nil {
		return t.query(op, q, args, scan)
	}
	return t.exec(op, q, args...)
}

// runEach is run on SQLite: it inserts the rows with statements of fixed
// text, each prepared once: one of several rows (eachValues values or so)
// for as many rows as it can, one of a single row for the rest. With scan or
// affected it executes each row alone: scan reads what RETURNING returns,
// affected is told the number of rows that each row's execution changed
// (cheaper than RETURNING).
func (b *bulk) runEach(t *ingestTx, op, tail string, scan func(*sql.Rows) error, affected func(row int, n int64)) error {
	prepare := func(rows int) (*sql.Stmt, error) {
		row := "(?" + strings.Repeat(", ?", len(b.cols)-1) + ")"
		q := "INSERT INTO " + b.table + " (" + strings.Join(b.names, ", ") + ") VALUES " + row + strings.Repeat(", "+row, rows-1) + " " + tail //nolint:gosec // the table, columns and tail are this file's constants; the values are bound
		stmt, err := t.tx.PrepareContext(t.ctx, q)
		if err != nil {
			return nil, internal(op, err)
		}
		return stmt, nil
	}
	var many, one *sql.Stmt
	defer func() {
		for _, s := range []*sql.Stmt{many, one} {
			if s != nil {
				_ = s.Close() // nothing to lose: the statement only read
			}
		}
	}()
	// per rows per execution of many; for fewer than twice as many rows,
	// many is not worth preparing.
	per := 1
	if scan == nil && affected == nil && b.rows >= 2*eachValues/len(b.cols) {
		per = max(1, eachValues/len(b.cols))
	}
	args := make([]any, 0, per*len(b.cols))
	for r := 0; r < b.rows; {
		n := 1
		if b.rows-r >= per {
			n = per
		}
		args = args[:0]
		for row := r; row < r+n; row++ {
			for i := range b.cols {
				c := &b.cols[i]
				switch b.types[i] {
				case colText:
					args = append(args, c.text[row])
				case colInt:
					args = append(args, c.ints[row])
				case colReal:
					args = append(args, c.reals[row])
				case colBlob:
					args = append(args, c.blobs[row])
				case colTime:
					args = append(args, c.times[row])
				}
			}
		}
		stmt := &one
		if n > 1 {
			stmt = &many
		}
		if *stmt == nil {
			var err error
			if *stmt, err = prepare(n); err != nil {
				return err
			}
		}
		if scan != nil {
			rows, err := (*stmt).QueryContext(t.ctx, args...)
			if err != nil {
				return internal(op, err)
			}
			if err := scanAll(rows, scan); err != nil {
				return internal(op, err)
			}
		} else {
			res, err := (*stmt).ExecContext(t.ctx, args...)
			if err != nil {
				return internal(op, err)
			}
			if affected != nil {
				k, err := res.RowsAffected()
				if err != nil {
					return internal(op, err)
				}
				affected(r, k)
			}
		}
		r += n
	}
	return nil
}

// eachValues is about the number of values that runEach inserts per
// execution: 16 rows of 3 columns, 3 of 13. A statement of more took longer
// to prepare than its fewer executions saved, and one of many rows is
// worth preparing only for twice as many rows.
const eachValues = 48

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c < 0x20:
			buf = append(buf, `\u00`...)
			buf = append(buf, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}

// batchRef names a batch.
type batchRef struct{ env, id string }

func compareBatches(a, b batchRef) int {
	return cmp.Or(cmp.Compare(a.env, b.env), cmp.Compare(a.id, b.id))
}

// claim records the batches of ws[idx] and returns the indexes of those to
// store, in the order of idx. The others are duplicates or conflicts,
// whose outcome it sets in out.
func (t *ingestTx) claim(ws []telemetry.Write, idx []int, out []telemetry.Ingested) ([]int, error) {
	first := make(map[batchRef]int, len(idx))
	for _, i := range idx {
		r := batchRef{ws[i].Environment, ws[i].BatchID}
		if _, ok := first[r]; !ok {
			first[r] = i
		}
	}
	refs := slices.SortedFunc(maps.Keys(first), compareBatches)
	b := newBulk("telemetry_batches", "environment text", "batch_id text", "digest blob", "server_id text", "received_at time")
	for _, r := range refs {
		w := ws[first[r]]
		b.add(w.Environment, w.BatchID, w.Digest, w.ServerID, dbTime(w.ReceivedAt))
	}
	claimed := make(map[batchRef]bool, len(refs))
	const op, tail = "record telemetry batches", "ON CONFLICT (environment, batch_id) DO NOTHING"
	var err error
	if t.pg {
		err = b.run(t, op, tail+" RETURNING environment, batch_id", func(rows *sql.Rows) error {
			var r batchRef
			err := rows.Scan(&r.env, &r.id)
			claimed[r] = true
			return err
		})
	} else {
		err = b.runEach(t, op, tail, nil, func(row int, n int64) { claimed[refs[row]] = n > 0 })
	}
	if err != nil {
		if foreignKeyViolation(err) {
			envs := map[string]bool{}
			for _, r := range refs {
				envs[r.env] = true
			}
			if len(envs) == 1 {
				return nil, solstice.Errorf(solstice.KindNotFound, "environment %q not found", refs[0].env)
			}
			return nil, solstice.Errorf(solstice.KindNotFound, "an environment of the telemetry group was not found")
		}
		return nil, err
	}
	recorded := make(map[batchRef][]byte, len(refs))
	for _, r := range refs {
		if claimed[r] {
			recorded[r] = ws[first[r]].Digest
			continue
		}
		var digest []byte
		err := t.query("read telemetry batch", "SELECT digest FROM telemetry_batches WHERE environment = ? AND batch_id = ?",
			[]any{r.env, r.id}, func(rows *sql.Rows) error { return rows.Scan(&digest) })
		if err != nil {
			return nil, err
		}
		if digest == nil {
			return nil, solstice.Errorf(solstice.KindInternal, "telemetry batch %q neither recorded nor found", r.id)
		}
		recorded[r] = digest
	}
	var stored []int
	for _, i := range idx {
		r := batchRef{ws[i].Environment, ws[i].BatchID}
		switch {
		case claimed[r] && first[r] == i:
			stored = append(stored, i)
		case bytes.Equal(recorded[r], ws[i].Digest):
			out[i].Duplicate = true
		default:
			out[i].Err = solstice.Errorf(solstice.KindConflict,
				"batch %q was already received with other content; a batch id names one batch: send new data under a new id", ws[i].BatchID)
		}
	}
	return stored, nil
}

// playerRef names a player of an environment.
type playerRef struct{ env, key string }

// playerIDs returns the dictionary ids of the players of ws[stored] whose
// ID is 0, adding the missing ones, and sets the Players of the writes'
// outcomes to them. created holds the ids it added: players new to the
// dictionary, exposed to nothing yet.
//
// NOTE: it looks the keys up before inserting, rather than inserting every
// key with ON CONFLICT DO NOTHING: each conflicting insert would use up an
// id (PostgreSQL's identity sequence and SQLite's AUTOINCREMENT alike),
// and the ids would stop being dense. The callers know the ids of most
// players (telemetry's memory), so the lookup is of few keys.
func (t *ingestTx) playerIDs(ws []telemetry.Write, stored []int, out []telemetry.Ingested) (ids map[playerRef]uint32, created map[uint32]bool, err error) {
	ids = map[playerRef]uint32{} // of the players whose id a write did not know
	created = map[uint32]bool{}
	need := map[playerRef]bool{}
	for _, i := range stored {
		for _, e := range ws[i].Exposures {
			if e.ID == 0 {
				need[playerRef{ws[i].Environment, e.Player}] = true
			}
		}
		for _, a := range ws[i].Activity {
			if a.ID == 0 {
				need[playerRef{ws[i].Environment, a.Player}] = true
			}
		}
	}
	if len(need) > 0 {
		missing := slices.SortedFunc(maps.Keys(need), func(a, b playerRef) int { return cmp.Or(cmp.Compare(a.env, b.env), cmp.Compare(a.key, b.key)) })
		if err := t.lookUpPlayers(missing, ids); err != nil {
			return nil, nil, err
		}
		add := t.addPlayersPostgres
		if !t.pg {
			add = t.addPlayersSQLite
		}
		if err := add(missing, ids, created); err != nil {
			return nil, nil, err
		}
	}
	for _, i := range stored {
		w := ws[i]
		var players map[string]uint32
		learn := func(key string, id uint32) {
			if id == 0 {
				if players == nil {
					players = map[string]uint32{}
				}
				players[key] = ids[playerRef{w.Environment, key}]
			}
		}
		for _, e := range w.Exposures {
			learn(e.Player, e.ID)
		}
		for _, a := range w.Activity {
			learn(a.Player, a.ID)
		}
		out[i].Players = players
	}
	return ids, created, nil
}

// addPlayersPostgres adds the players of refs that ids lacks to the
// dictionary, their ids to ids and, of those it added, to created.
// Another transaction may add some of them meanwhile: they are looked up
// again.
func (t *ingestTx) addPlayersPostgres(refs []playerRef, ids map[playerRef]uint32, created map[uint32]bool) error {
	add := newBulk("telemetry_players", "environment text", "player_key text")
	for _, r := range refs {
		if _, ok := ids[r]; !ok {
			add.add(r.env, r.key)
		}
	}
	added := map[playerRef]uint32{}
	err := add.run(t, "add players", "ON CONFLICT (environment, player_key) DO NOTHING RETURNING id, environment, player_key",
		func(rows *sql.Rows) error { return scanPlayer(rows, added) })
	if err != nil {
		return err
	}
	for r, id := range added {
		ids[r] = id
		created[id] = true
	}
	var known []playerRef // added by another transaction meanwhile
	for _, r := range refs {
		if _, ok := ids[r]; !ok {
			known = append(known, r)
		}
	}
	if err := t.lookUpPlayers(known, ids); err != nil {
		return err
	}
	for _, r := range refs {
		if _, ok := ids[r]; !ok {
			return solstice.Errorf(solstice.KindInternal, "add players: %q has no id after insertion", r.key)
		}
	}
	return nil
}

// addPlayersSQLite adds the players of refs that ids lacks to the
// dictionary, and their ids to ids and created.
//
// NOTE: SQLite's transaction holds the database's write lock from its
// start (_txlock=immediate), so no other transaction can add a player
// between lookUpPlayers and this insert, or take the ids that follow the
// highest assigned: it numbers the new players itself, as AUTOINCREMENT
// would, and inserts them without RETURNING, whose rows (three columns
// each, read through cgo) cost as much as the insert. The ids stay dense;
// should a key exist after all, the insert fails on the unique key and the
// transaction with it, rather than assign a wrong id.
func (t *ingestTx) addPlayersSQLite(refs []playerRef, ids map[playerRef]uint32, created map[uint32]bool) error {
	var last int64
	err := t.query("number players", `SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'telemetry_players'), 0),
 coalesce((SELECT max(id) FROM telemetry_players), 0))`, nil, func(rows *sql.Rows) error { return rows.Scan(&last) })
	if err != nil {
		return err
	}
	add := newBulk("telemetry_players", "id int", "environment text", "player_key text")
	added := make([]playerRef, 0, len(refs))
	for _, r := range refs {
		if _, ok := ids[r]; ok {
			continue
		}
		last++
		if last > math.MaxUint32 {
			return solstice.Errorf(solstice.KindInternal, "add players: the dictionary is full (%d ids)", int64(math.MaxUint32))
		}
		add.add(last, r.env, r.key)
		added = append(added, r)
	}
	if err := add.run(t, "add players", "", nil); err != nil {
		return err
	}
	first := last - int64(len(added))
	for i, r := range added {
		id := uint32(first + 1 + int64(i)) //nolint:gosec // checked against math.MaxUint32 above
		ids[r] = id
		created[id] = true
	}
	return nil
}

// lookUpPlayers adds the ids of the stored players of refs (sorted by
// environment) to ids.
func (t *ingestTx) lookUpPlayers(refs []playerRef, ids map[playerRef]uint32) error {
	for len(refs) > 0 {
		env := refs[0].env
		n := 1
		for n < len(refs) && refs[n].env == env {
			n++
		}
		keys := make([]string, n)
		for i, r := range refs[:n] {
			keys[i] = r.key
		}
		refs = refs[n:]
		q := "SELECT id, environment, player_key FROM telemetry_players WHERE environment = ? AND player_key "
		in, args := t.inStrings(keys, []any{env})
		q += in
		if t.pg {
			// NOTE: one index probe per key, whatever the statistics
			// say: with a few hundred keys in = ANY(…) the planner
			// estimates a sequential scan cheaper, and on a table of
			// 50,000 players it takes four times as long.
			q = `SELECT p.id, p.environment, p.player_key FROM unnest(?::text[]) AS k(key)
 CROSS JOIN LATERAL (SELECT id, environment, player_key FROM telemetry_players
  WHERE environment = ? AND player_key = k.key LIMIT 1) AS p`
			args = []any{keys, env}
		}
		err := t.query("look up players", q, args, func(rows *sql.Rows) error { return scanPlayer(rows, ids) })
		if err != nil {
			return err
		}
	}
	return nil
}

func scanPlayer(rows *sql.Rows, ids map[playerRef]uint32) error {
	var id int64
	var r playerRef
	if err := rows.Scan(&id, &r.env, &r.key); err != nil {
		return err
	}
	if id < 1 || id > math.MaxUint32 {
		return fmt.Errorf("player id %d is out of the 32-bit range: the dictionary is full", id)
	}
	ids[r] = uint32(id)
	return nil
}

// seriesRef is a flag's variant in an environment.
type seriesRef struct{ env, flag, variant string }

// minuteRef is a series' minute.
type minuteRef struct {
	seriesRef
	minute telemetry.Minute
}

// chunkRef names a row of telemetry_seen (n: chunk) or telemetry_cohorts
// (n: hour).
type chunkRef struct {
	seriesRef
	n int64
}

func compareSeries(a, b seriesRef) int {
	return cmp.Or(cmp.Compare(a.env, b.env), cmp.Compare(a.flag, b.flag), cmp.Compare(a.variant, b.variant))
}

func compareChunks(a, b chunkRef) int {
	return cmp.Or(compareSeries(a.seriesRef, b.seriesRef), cmp.Compare(a.n, b.n))
}

// recentFoldBytes is the size at which a recent bitmap is folded into its
// set (migration 00006_telemetry_recent): the recent bitmap is read and
// rewritten by every transaction that adds to the set, the set only when
// the recent one is folded into it.
const recentFoldBytes = 1024

// firstExposures finds the players of the stored writes' exposures never
// exposed to their series before, adds them to its seen set and to the
// cohort of their minute, counts them in the outcome of the first write
// (in group order) that exposed them, and returns their number per series
// and minute.
//
// A seen chunk or a cohort hour is a set row and a recent row (see
// recentFoldBytes); the transaction locks the recent rows (PostgreSQL; on
// SQLite it holds the database's write lock), which are written by every
// transaction that adds to their set, and reads and writes the set rows
// under that lock.
//
// NOTE: a group holds thousands of exposures of a few dozen series, so it
// numbers the series and keys its maps with integers: series<<32 | id,
// series<<32 | chunk, series<<32 | minute, series<<32 | hour.
func (t *ingestTx) firstExposures(ws []telemetry.Write, stored []int, ids map[playerRef]uint32, created map[uint32]bool, out []telemetry.Ingested) (map[minuteRef]int64, error) {
	type candidate struct {
		key    uint64 // series<<32 | id
		write  int
		minute telemetry.Minute
	}
	var series []seriesRef
	index := map[seriesRef]uint64{}
	var candidates []candidate
	taken := map[uint64]bool{}
	chunks := map[uint64]bool{} // true: its set row must be read
	for _, i := range stored {
		w := ws[i]
		var last seriesRef
		var si uint64
		for j, e := range w.Exposures {
			if j == 0 || e.Flag != last.flag || e.Variant != last.variant {
				last = seriesRef{w.Environment, e.Flag, e.Variant}
				n, ok := index[last]
				if !ok {
					n = uint64(len(series))
					index[last] = n
					series = append(series, last)
				}
				si = n
			}
			id := e.ID
			if id == 0 {
				id = ids[playerRef{w.Environment, e.Player}]
			}
			key := si<<32 | uint64(id)
			if taken[key] {
				continue
			}
			taken[key] = true
			candidates = append(candidates, candidate{key, i, e.Minute})
			chunk := si<<32 | uint64(id>>seenChunkBits)
			chunks[chunk] = chunks[chunk] || !created[id]
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	keyOf := func(r chunkRef) uint64 { return index[r.seriesRef]<<32 | uint64(r.n) } //nolint:gosec // chunks and hours are positive
	refOf := func(key uint64) chunkRef { return chunkRef{series[key>>32], int64(key & math.MaxUint32)} }
	seenKeys := make([]chunkRef, 0, len(chunks))
	var setKeys []chunkRef
	for k, read := range chunks {
		seenKeys = append(seenKeys, refOf(k))
		if read {
			setKeys = append(setKeys, refOf(k))
		}
	}
	slices.SortFunc(seenKeys, compareChunks)
	slices.SortFunc(setKeys, compareChunks)
	seen, err := t.readSets("telemetry_seen", "chunk", seenKeys, setKeys, keyOf)
	if err != nil {
		return nil, err
	}

	// NOTE: Contains, then one union per bitmap: stored bitmaps are
	// run-optimized, and adding to a run container one id at a time
	// recomputes its cardinality and form each time.
	freshByKey := map[uint64]int64{} // series<<32 | minute
	cohorts := map[uint64][]uint64{} // series<<32 | hour → minute of the hour<<32 | id
	added := map[uint64][]uint32{}   // series<<32 | chunk → ids
	for _, c := range candidates {
		si, id := c.key>>32, uint32(c.key) //nolint:gosec // the low 32 bits are the id
		chunk := si<<32 | uint64(id>>seenChunkBits)
		if !created[id] && seen[chunk].contains(uint64(id)) {
			continue // exposed by an earlier batch
		}
		added[chunk] = append(added[chunk], id)
		out[c.write].NewExposures++
		freshByKey[si<<32|uint64(c.minute)]++ //nolint:gosec // minutes since the epoch are positive and fit 32 bits
		hour := int64(c.minute) / 60
		cohorts[si<<32|uint64(hour)] = append(cohorts[si<<32|uint64(hour)], uint64(int64(c.minute)-hour*60)<<32|uint64(id)) //nolint:gosec // idem; a minute of the hour, 0 to 59
	}
	if len(freshByKey) == 0 {
		return nil, nil
	}
	changed := make([]chunkRef, 0, len(added))
	for _, k := range seenKeys {
		if ids := added[keyOf(k)]; len(ids) > 0 {
			ids64 := make([]uint64, len(ids))
			for i, id := range ids {
				ids64[i] = uint64(id)
			}
			seen[keyOf(k)].add(ids64)
			changed = append(changed, k)
		}
	}
	if err := t.writeSets("telemetry_seen", "chunk", changed, seen, keyOf); err != nil {
		return nil, err
	}

	hours := make([]chunkRef, 0, len(cohorts))
	for k := range cohorts {
		hours = append(hours, refOf(k))
	}
	slices.SortFunc(hours, compareChunks)
	sets, err := t.readSets("telemetry_cohorts", "hour", hours, nil, keyOf)
	if err != nil {
		return nil, err
	}
	for _, k := range hours {
		sets[keyOf(k)].add(cohorts[keyOf(k)])
	}
	if err := t.writeSets("telemetry_cohorts", "hour", hours, sets, keyOf); err != nil {
		return nil, err
	}
	fresh := make(map[minuteRef]int64, len(freshByKey))
	for k, n := range freshByKey {
		fresh[minuteRef{series[k>>32], telemetry.Minute(k & math.MaxUint32)}] = n
	}
	return fresh, nil
}

// playerSet is a players set of telemetry_seen (32-bit ids) or
// telemetry_cohorts (64-bit: minute of the hour << 32 | id) as the
// transaction holds it: the set row's bitmap (read only when needed) and
// the recent row's.
type playerSet struct {
	wide           bool // 64-bit
	set, recent    *roaring.Bitmap
	set64, recent6 *roaring64.Bitmap
	hasSet         bool // set or set64 was read
}

func (p *playerSet) contains(v uint64) bool {
	if p == nil {
		return false
	}
	if p.wide {
		return p.recent6.Contains(v) || p.set64.Contains(v)
	}
	return p.recent.Contains(uint32(v)) || p.set.Contains(uint32(v)) //nolint:gosec // 32-bit sets hold 32-bit ids
}

// add adds vs to the recent bitmap.
func (p *playerSet) add(vs []uint64) {
	if p.wide {
		p.recent6.Or(roaring64.BitmapOf(vs...))
		return
	}
	ids := make([]uint32, len(vs))
	for i, v := range vs {
		ids[i] = uint32(v) //nolint:gosec // 32-bit sets hold 32-bit ids
	}
	p.recent.Or(roaring.BitmapOf(ids...))
}

func decodeSet(wide bool, blob []byte) (*roaring.Bitmap, *roaring64.Bitmap, error) {
	if wide {
		b, err := decodeCohort(blob)
		return nil, b, err
	}
	b := roaring.New()
	if len(blob) > 0 {
		if err := b.UnmarshalBinary(blob); err != nil {
			return nil, nil, fmt.Errorf("decode seen chunk: %w", err)
		}
	}
	return b, nil, nil
}

// readSets locks and reads the recent rows of keys (sorted) of table
// (telemetry_seen or telemetry_cohorts, whose column names the set: chunk
// or hour), and the set rows of setKeys (sorted, a subset of keys): those
// of telemetry_seen whose members decide first exposures. (A player added
// to the dictionary by the transaction was exposed to nothing yet: the
// chunks of only such players need no set row.) The sets are keyed by
// keyOf.
func (t *ingestTx) readSets(table, column string, keys, setKeys []chunkRef, keyOf func(chunkRef) uint64) (map[uint64]*playerSet, error) {
	wide := table == "telemetry_cohorts"
	sets := make(map[uint64]*playerSet, len(keys))
	for _, k := range keys {
		p := &playerSet{wide: wide}
		if wide {
			p.set64, p.recent6 = roaring64.New(), roaring64.New()
		} else {
			p.set, p.recent = roaring.New(), roaring.New()
		}
		sets[keyOf(k)] = p
	}
	err := t.readChunks(table+"_recent", column, keys, true, func(k chunkRef, blob []byte) error {
		p := sets[keyOf(k)]
		var err error
		p.recent, p.recent6, err = decodeSet(wide, blob)
		return err
	})
	if err != nil || len(setKeys) == 0 {
		return sets, err
	}
	return sets, t.readSetRows(table, column, setKeys, sets, keyOf)
}

// readSetRows reads the set rows of keys into sets.
func (t *ingestTx) readSetRows(table, column string, keys []chunkRef, sets map[uint64]*playerSet, keyOf func(chunkRef) uint64) error {
	return t.readChunks(table, column, keys, false, func(k chunkRef, blob []byte) error {
		p := sets[keyOf(k)]
		var err error
		p.set, p.set64, err = decodeSet(p.wide, blob)
		p.hasSet = true
		return err
	})
}

// writeSets writes the recent rows of keys (sorted), and folds those grown
// to recentFoldBytes into their set rows.
func (t *ingestTx) writeSets(table, column string, keys []chunkRef, sets map[uint64]*playerSet, keyOf func(chunkRef) uint64) error {
	cols := []string{"environment text", "flag text", "variant text", column + " int", "players blob"}
	recent, fold := newBulk(table+"_recent", cols...), newBulk(table, cols...)
	var folding []chunkRef
	for _, k := range keys {
		p := sets[keyOf(k)]
		var size uint64
		if p.wide {
			size = p.recent6.GetSerializedSizeInBytes()
		} else {
			size = p.recent.GetSerializedSizeInBytes()
		}
		if size >= recentFoldBytes {
			folding = append(folding, k)
		}
	}
	// Set rows not read yet (all cohort set rows) are read to fold into
	// them.
	var unread []chunkRef
	for _, k := range folding {
		if !sets[keyOf(k)].hasSet {
			unread = append(unread, k)
		}
	}
	if err := t.readSetRows(table, column, unread, sets, keyOf); err != nil {
		return err
	}
	for _, k := range keys {
		p := sets[keyOf(k)]
		if len(folding) > 0 && folding[0] == k {
			folding = folding[1:]
			var blob []byte
			var err error
			if p.wide {
				p.set64.Or(p.recent6)
				p.set64.RunOptimize()
				blob, err = p.set64.ToBytes()
				p.recent6 = roaring64.New()
			} else {
				p.set.Or(p.recent)
				p.set.RunOptimize()
				blob, err = p.set.ToBytes()
				p.recent = roaring.New()
			}
			if err != nil {
				return internal("encode "+table, err)
			}
			fold.add(k.env, k.flag, k.variant, k.n, blob)
		}
		var blob []byte
		var err error
		if p.wide {
			p.recent6.RunOptimize()
			blob, err = p.recent6.ToBytes()
		} else {
			p.recent.RunOptimize()
			blob, err = p.recent.ToBytes()
		}
		if err != nil {
			return internal("encode "+table, err)
		}
		recent.add(k.env, k.flag, k.variant, k.n, blob)
	}
	upsert := "ON CONFLICT (environment, flag, variant, " + column + ") DO UPDATE SET players = excluded.players"
	if err := recent.run(t, "store "+table+"_recent", upsert, nil); err != nil {
		return err
	}
	return fold.run(t, "store "+table, upsert, nil)
}

// readChunks reads the rows keys (sorted) of a bitmap table, calling f for
// those that exist with the row's bitmap, valid until f returns. With lock, on PostgreSQL, it first creates the missing
// rows empty and locks them all FOR UPDATE, so that two transactions adding
// the first players of a set cannot both start from nothing; SQLite's
// transactions hold the database's write lock already.
//
// NOTE: it selects flag IN (…) AND n IN (…), a superset of keys whose other
// rows it skips (and, on PostgreSQL, locks too), rather than an OR of one
// term per key or a row-value IN list: SQLite takes milliseconds to plan
// either with a few hundred keys, more than the extra rows cost while the
// flags' variants share their chunks, as they do in practice.
func (t *ingestTx) readChunks(table, column string, keys []chunkRef, lock bool, f func(chunkRef, []byte) error) error {
	if lock && t.pg {
		empty := newBulk(table, "environment text", "flag text", "variant text", column+" int", "players blob")
		for _, k := range keys {
			empty.add(k.env, k.flag, k.variant, k.n, []byte{})
		}
		if err := empty.run(t, "create "+table+" rows", "ON CONFLICT (environment, flag, variant, "+column+") DO NOTHING", nil); err != nil {
			return err
		}
	}
	want := make(map[chunkRef]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	for len(keys) > 0 {
		env := keys[0].env
		n := 1
		for n < len(keys) && keys[n].env == env {
			n++
		}
		var flagNames []string
		var ns []int64
		for _, k := range keys[:n] {
			flagNames = append(flagNames, k.flag)
			ns = append(ns, k.n)
		}
		keys = keys[n:]
		slices.Sort(flagNames)
		slices.Sort(ns)
		flagIn, args := t.inStrings(slices.Compact(flagNames), []any{env})
		nIn, args := t.inInts(slices.Compact(ns), args)
		q := "SELECT flag, variant, " + column + ", players FROM " + table + " WHERE environment = ? AND flag " + flagIn + " AND " + column + " " + nIn +
			" ORDER BY flag, variant, " + column
		if lock && t.pg {
			q += " FOR UPDATE"
		}
		err := t.query("read "+table, q, args, func(rows *sql.Rows) error {
			k := chunkRef{seriesRef: seriesRef{env: env}}
			var blob sql.RawBytes // not copied: f decodes it before the next row
			if err := rows.Scan(&k.flag, &k.variant, &k.n, &blob); err != nil {
				return err
			}
			if !want[k] {
				return nil
			}
			return f(k, blob)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// counterRow is what a group adds to a row of telemetry_counters.
type counterRow struct {
	accepted, rejected, exposures int64
	sessions                      telemetry.SessionSums
}

func compareMinutes(a, b minuteRef) int {
	return cmp.Or(compareSeries(a.seriesRef, b.seriesRef), cmp.Compare(a.minute, b.minute))
}

// addCounters adds the stored writes' counters and the first exposures to
// the minute rows.
func (t *ingestTx) addCounters(ws []telemetry.Write, stored []int, fresh map[minuteRef]int64) error {
	rows := map[minuteRef]*counterRow{}
	row := func(k minuteRef) *counterRow {
		r := rows[k]
		if r == nil {
			r = &counterRow{}
			rows[k] = r
		}
		return r
	}
	for _, i := range stored {
		for _, c := range ws[i].Counters {
			r := row(minuteRef{seriesRef{ws[i].Environment, c.Flag, c.Variant}, c.Minute})
			r.accepted += c.Accepted
			r.rejected += c.Rejected
			s := &r.sessions
			s.Sessions += c.Sessions.Sessions
			s.N += c.Sessions.N
			s.X += c.Sessions.X
			s.NN += c.Sessions.NN
			s.XX += c.Sessions.XX
			s.NX += c.Sessions.NX
		}
	}
	for k, n := range fresh {
		row(k).exposures += n
	}
	b := newBulk("telemetry_counters", "environment text", "flag text", "variant text", "minute int", "accepted int", "rejected int", "exposures int",
		"sessions int", "session_actions int", "session_rejects int", "session_actions_sq real", "session_rejects_sq real", "session_actions_rejects real")
	for _, k := range slices.SortedFunc(maps.Keys(rows), compareMinutes) {
		r := rows[k]
		s := r.sessions
		b.add(k.env, k.flag, k.variant, int64(k.minute), r.accepted, r.rejected, r.exposures, s.Sessions, s.N, s.X, s.NN, s.XX, s.NX)
	}
	set := make([]string, 0, 9)
	for _, col := range b.names[4:] {
		set = append(set, col+" = telemetry_counters."+col+" + excluded."+col)
	}
	return b.run(t, "add counters", "ON CONFLICT (environment, flag, variant, minute) DO UPDATE SET "+strings.Join(set, ", "), nil)
}

// addNamed adds reject reasons or custom counters (deltas of a write).
func (t *ingestTx) addNamed(table, nameColumn, valueColumn string, ws []telemetry.Write, stored []int, deltas func(telemetry.Write) []telemetry.NamedDelta) error {
	type key struct {
		minuteRef
		name string
	}
	sums := map[key]int64{}
	for _, i := range stored {
		for _, d := range deltas(ws[i]) {
			sums[key{minuteRef{seriesRef{ws[i].Environment, d.Flag, d.Variant}, d.Minute}, d.Name}] += d.Value
		}
	}
	b := newBulk(table, "environment text", "flag text", "variant text", "minute int", nameColumn+" text", valueColumn+" int")
	for _, k := range slices.SortedFunc(maps.Keys(sums), func(a, b key) int {
		return cmp.Or(compareMinutes(a.minuteRef, b.minuteRef), cmp.Compare(a.name, b.name))
	}) {
		b.add(k.env, k.flag, k.variant, int64(k.minute), k.name, sums[k])
	}
	return b.run(t, "add "+table, "ON CONFLICT (environment, flag, variant, minute, "+nameColumn+") DO UPDATE SET "+
		valueColumn+" = "+table+"."+valueColumn+" + excluded."+valueColumn, nil)
}

// addActivity widens each player's active minutes of each day.
func (t *ingestTx) addActivity(ws []telemetry.Write, stored []int, ids map[playerRef]uint32) error {
	type key struct {
		env string
		day int64
		id  uint32
	}
	type span struct{ first, last int16 }
	spans := map[key]span{}
	for _, i := range stored {
		for _, a := range ws[i].Activity {
			id := a.ID
			if id == 0 {
				id = ids[playerRef{ws[i].Environment, a.Player}]
			}
			k := key{ws[i].Environment, a.Day, id}
			if s, ok := spans[k]; ok {
				spans[k] = span{min(s.first, a.First), max(s.last, a.Last)}
			} else {
				spans[k] = span{a.First, a.Last}
			}
		}
	}
	b := newBulk("telemetry_activity", "environment text", "day int", "player_id int", "first_minute int", "last_minute int")
	for _, k := range slices.SortedFunc(maps.Keys(spans), func(a, b key) int { // primary-key order
		return cmp.Or(cmp.Compare(a.env, b.env), cmp.Compare(a.day, b.day), cmp.Compare(a.id, b.id))
	}) {
		s := spans[k]
		b.add(k.env, k.day, int64(k.id), int64(s.first), int64(s.last))
	}
	least, greatest := t.minMax()
	return b.run(t, "add activity", "ON CONFLICT (environment, day, player_id) DO UPDATE SET first_minute = "+least+"(telemetry_activity.first_minute, excluded.first_minute), "+
		"last_minute = "+greatest+"(telemetry_activity.last_minute, excluded.last_minute)", nil)
}

// touchServers records what the stored writes' servers delivered; of two
// writes of one server, the later in the group sets the snapshot version.
func (t *ingestTx) touchServers(ws []telemetry.Write, stored []int) error {
	type server struct {
		through, lastActivity telemetry.Minute
		version               int64
		first, last           time.Time
	}
	servers := map[batchRef]*server{}
	for _, i := range stored {
		w := ws[i]
		at := dbTime(w.ReceivedAt)
		k := batchRef{w.Environment, w.ServerID}
		s := servers[k]
		if s == nil {
			servers[k] = &server{w.Through, w.LastActivity, w.SnapshotVersion, at, at}
			continue
		}
		s.through, s.lastActivity, s.version = max(s.through, w.Through), max(s.lastActivity, w.LastActivity), w.SnapshotVersion
		if at.Before(s.first) {
			s.first = at
		}
		if at.After(s.last) {
			s.last = at
		}
	}
	b := newBulk("telemetry_servers", "environment text", "server_id text", "through int", "last_activity int", "snapshot_version int", "first_seen time", "last_seen time")
	for _, k := range slices.SortedFunc(maps.Keys(servers), compareBatches) {
		s := servers[k]
		b.add(k.env, k.id, int64(s.through), int64(s.lastActivity), s.version, s.first, s.last)
	}
	_, greatest := t.minMax()
	return b.run(t, "record telemetry servers", `ON CONFLICT (environment, server_id) DO UPDATE SET
 through = `+greatest+`(telemetry_servers.through, excluded.through),
 last_activity = `+greatest+`(telemetry_servers.last_activity, excluded.last_activity),
 snapshot_version = excluded.snapshot_version,
 last_seen = `+greatest+`(telemetry_servers.last_seen, excluded.last_seen)`, nil)
}

// minMax returns the names of the two-argument minimum and maximum
// functions of the dialect.
func (t *ingestTx) minMax() (least, greatest string) {
	if t.pg {
		return "LEAST", "GREATEST"
	}
	return "min", "max"
}
