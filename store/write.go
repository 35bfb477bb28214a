package store

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// batchSize bounds the rows of one multi-row statement, well under the
// bind-parameter limits of both databases.
const batchSize = 200

// Write applies w in one transaction, in this order: it creates and updates
// environments, creates, updates and deletes flag definitions, appends the
// revisions and records the audit entries. Either all of it is stored or
// none of it.
//
// For each RevisionWrite it checks every object's Expect against the stored
// object, computes the diff against the stored content and appends revision
// head+1 with the object_versions and objects rows, its audit entries
// stamped with the environment and number. Objects whose new content equals
// the stored content byte for byte are left out of the diff. A
// RevisionWrite that changes nothing appends no revision and records none of
// its audit entries: its result has Number = the environment's current head,
// an empty Diff and a zero CreatedAt.
//
// Concurrent Writes to one environment are serialized (a row lock on
// PostgreSQL, the database write lock on SQLite): each gets the next
// number, or fails if its expectations no longer hold.
//
// Errors: KindInvalid for a malformed w (a flag version that does not follow
// its expectation, an object that is not JSON or written twice in one
// revision); KindNotFound for an unknown environment or flag; KindConflict
// for an environment or flag that already exists; KindPreconditionFailed
// when a stored flag version or object revision differs from the expected
// one, with a message saying both; KindInternal otherwise.
func (db *DB) Write(ctx context.Context, w flags.Write) ([]flags.Revision, error) {
	if err := checkWrite(w); err != nil {
		return nil, err
	}
	now := db.now()
	var revisions []flags.Revision
	err := db.transaction(ctx, "write", func(tx *gorm.DB) error {
		revisions = make([]flags.Revision, 0, len(w.Revisions))
		for _, e := range w.CreateEnvironments {
			if err := createEnvironment(tx, e); err != nil {
				return err
			}
		}
		heads, err := lockEnvironments(tx, w)
		if err != nil {
			return err
		}
		for _, e := range w.UpdateEnvironments {
			if err := updateEnvironment(tx, e); err != nil {
				return err
			}
		}
		for _, f := range w.CreateFlags {
			if err := createFlag(tx, f); err != nil {
				return err
			}
		}
		for _, u := range w.UpdateFlags {
			if err := updateFlag(tx, u); err != nil {
				return err
			}
		}
		for _, d := range w.DeleteFlags {
			if err := deleteFlag(tx, d); err != nil {
				return err
			}
		}
		for _, rw := range w.Revisions {
			rev, err := appendRevision(tx, rw, heads[rw.Environment], now)
			if err != nil {
				return err
			}
			heads[rw.Environment] = rev.Number
			revisions = append(revisions, rev)
		}
		return insertAudit(tx, w.Audit, now)
	})
	if err != nil {
		return nil, err
	}
	return revisions, nil
}

// checkWrite rejects what no database state could make valid.
func checkWrite(w flags.Write) error {
	for _, e := range w.CreateEnvironments {
		if e.Name == "" {
			return solstice.Errorf(solstice.KindInvalid, "environment name is empty")
		}
	}
	for _, f := range w.CreateFlags {
		if f.Key == "" {
			return solstice.Errorf(solstice.KindInvalid, "flag key is empty")
		}
		if f.Version != 1 {
			return solstice.Errorf(solstice.KindInvalid, "new flag %q has version %d, want 1", f.Key, f.Version)
		}
	}
	for _, u := range w.UpdateFlags {
		if u.Expect < 1 || u.Flag.Version != u.Expect+1 {
			return solstice.Errorf(solstice.KindInvalid, "update of flag %q from version %d sets version %d, want %d",
				u.Flag.Key, u.Expect, u.Flag.Version, u.Expect+1)
		}
	}
	for _, d := range w.DeleteFlags {
		if d.Expect < 1 && d.Expect != flags.AnyVersion {
			return solstice.Errorf(solstice.KindInvalid, "delete of flag %q expects version %d", d.Key, d.Expect)
		}
	}
	for _, rw := range w.Revisions {
		if rw.Environment == "" {
			return solstice.Errorf(solstice.KindInvalid, "revision without an environment")
		}
		seen := make(map[objectID]bool, len(rw.Objects))
		for _, o := range rw.Objects {
			id := objectID{o.Kind, o.Key}
			switch {
			case o.Kind != flags.KindFlag && o.Kind != flags.KindSegment:
				return solstice.Errorf(solstice.KindInvalid, "unknown object kind %q", o.Kind)
			case o.Key == "":
				return solstice.Errorf(solstice.KindInvalid, "%s key is empty", o.Kind)
			case o.Expect < 0 && o.Expect != flags.AnyVersion:
				return solstice.Errorf(solstice.KindInvalid, "%s %q expects revision %d", o.Kind, o.Key, o.Expect)
			case o.Content != nil && !json.Valid(o.Content):
				return solstice.Errorf(solstice.KindInvalid, "content of %s %q is not valid JSON", o.Kind, o.Key)
			case seen[id]:
				return solstice.Errorf(solstice.KindInvalid, "revision of environment %q writes %s %q twice", rw.Environment, o.Kind, o.Key)
			}
			seen[id] = true
		}
		if err := checkAudit(rw.Audit); err != nil {
			return err
		}
	}
	return checkAudit(w.Audit)
}

func checkAudit(entries []solstice.AuditEntry) error {
	for _, e := range entries {
		if len(e.Details) > 0 && !json.Valid(e.Details) {
			return solstice.Errorf(solstice.KindInvalid, "details of audit entry %q are not valid JSON", e.Action)
		}
	}
	return nil
}

func createEnvironment(tx *gorm.DB, e flags.Environment) error {
	row := environmentRow{
		Name:        e.Name,
		Description: e.Description,
		Protected:   e.Protected,
		CreatedAt:   dbTime(e.CreatedAt),
	}
	if err := tx.Create(&row).Error; err != nil {
		if uniqueViolation(err) {
			return solstice.Errorf(solstice.KindConflict, "environment %q already exists", e.Name)
		}
		return internal("create environment", err)
	}
	return nil
}

// lockEnvironments locks the rows of the environments that w updates or
// appends revisions to, in name order so that two Writes cannot deadlock,
// and returns their heads. Holding the lock until the transaction ends is
// what makes "read the head, append head+1" safe against concurrent Writes
// on PostgreSQL (FOR NO KEY UPDATE still lets foreign-key checks of other
// tables read the row). SQLite ignores the clause: an immediate transaction
// already holds the database's write lock.
func lockEnvironments(tx *gorm.DB, w flags.Write) (map[string]int64, error) {
	var names []string
	for _, e := range w.UpdateEnvironments {
		names = append(names, e.Name)
	}
	for _, rw := range w.Revisions {
		names = append(names, rw.Environment)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	heads := make(map[string]int64, len(names))
	if len(names) == 0 {
		return heads, nil
	}
	var rows []environmentRow
	err := tx.Clauses(clause.Locking{Strength: "NO KEY UPDATE"}).
		Where("name IN ?", names).Order("name").Find(&rows).Error
	if err != nil {
		return nil, internal("lock environments", err)
	}
	for _, r := range rows {
		heads[r.Name] = r.Head
	}
	for _, name := range names {
		if _, ok := heads[name]; !ok {
			return nil, solstice.Errorf(solstice.KindNotFound, "environment %q not found", name)
		}
	}
	return heads, nil
}

// updateEnvironment updates an environment that lockEnvironments found.
func updateEnvironment(tx *gorm.DB, e flags.Environment) error {
	err := tx.Model(&environmentRow{}).Where("name = ?", e.Name).
		Updates(map[string]any{"description": e.Description, "protected": e.Protected}).Error
	if err != nil {
		return internal("update environment", err)
	}
	return nil
}

func createFlag(tx *gorm.DB, f flags.Flag) error {
	row, err := flagToRow(f)
	if err != nil {
		return internal("create flag", err)
	}
	if err := tx.Create(&row).Error; err != nil {
		if uniqueViolation(err) {
			return solstice.Errorf(solstice.KindConflict, "flag %q already exists", f.Key)
		}
		return internal("create flag", err)
	}
	return nil
}

// updateFlag replaces a flag definition, but never its type or creation
// time, if the stored version is the expected one.
func updateFlag(tx *gorm.DB, u flags.FlagUpdate) error {
	row, err := flagToRow(u.Flag)
	if err != nil {
		return internal("update flag", err)
	}
	res := tx.Model(&flagRow{}).Where("key = ? AND version = ?", row.Key, u.Expect).Updates(map[string]any{
		"name":        row.Name,
		"description": row.Description,
		"tags":        row.Tags,
		"schema":      row.Schema,
		"version":     row.Version,
		"updated_at":  row.UpdatedAt,
	})
	if res.Error != nil {
		return internal("update flag", res.Error)
	}
	if res.RowsAffected == 0 {
		return flagVersionMismatch(tx, row.Key, u.Expect)
	}
	return nil
}

func deleteFlag(tx *gorm.DB, d flags.FlagDelete) error {
	q := tx.Where("key = ?", d.Key)
	if d.Expect != flags.AnyVersion {
		q = q.Where("version = ?", d.Expect)
	}
	res := q.Delete(&flagRow{})
	if res.Error != nil {
		return internal("delete flag", res.Error)
	}
	if res.RowsAffected == 0 {
		return flagVersionMismatch(tx, d.Key, d.Expect)
	}
	return nil
}

// flagVersionMismatch explains why a conditional change of flag key
// touched no row.
func flagVersionMismatch(tx *gorm.DB, key string, expect int64) error {
	var row flagRow
	if err := tx.Select("version").Where("key = ?", key).Take(&row).Error; err != nil {
		if notFound(err) {
			return solstice.Errorf(solstice.KindNotFound, "flag %q not found", key)
		}
		return internal("get flag version", err)
	}
	return solstice.Errorf(solstice.KindPreconditionFailed,
		"flag %q: expected version %d, stored version is %d", key, expect, row.Version)
}

// objectID names an object within an environment.
type objectID struct {
	Kind flags.ObjectKind
	Key  string
}

// appendRevision appends rw to its environment, whose head (locked by the
// caller) is head.
func appendRevision(tx *gorm.DB, rw flags.RevisionWrite, head int64, now time.Time) (flags.Revision, error) {
	current, err := currentObjects(tx, rw.Environment, rw.Objects)
	if err != nil {
		return flags.Revision{}, err
	}
	diff := make([]flags.Change, 0, len(rw.Objects))
	for _, o := range rw.Objects {
		stored, exists := current[objectID{o.Kind, o.Key}]
		if err := checkExpect(rw.Environment, o, stored, exists); err != nil {
			return flags.Revision{}, err
		}
		var before json.RawMessage
		if exists {
			before = json.RawMessage(stored.Content)
		}
		// Neither side is ever empty but not nil (stored content is
		// NOT NULL JSON; checkWrite rejected empty content), so equal
		// bytes mean an unchanged object or the removal of a missing one.
		if bytes.Equal(before, o.Content) {
			continue
		}
		diff = append(diff, flags.Change{Kind: o.Kind, Key: o.Key, Before: before, After: o.Content})
	}
	rev := flags.Revision{
		Environment: rw.Environment,
		Number:      head,
		Author:      rw.Author,
		Message:     rw.Message,
		Diff:        diff,
	}
	if len(diff) == 0 {
		return rev, nil
	}
	rev.Number = head + 1
	rev.CreatedAt = now
	if err := insertRevision(tx, rev); err != nil {
		return flags.Revision{}, err
	}
	res := tx.Model(&environmentRow{}).Where("name = ? AND head = ?", rev.Environment, head).Update("head", rev.Number)
	if res.Error != nil {
		return flags.Revision{}, internal("advance environment head", res.Error)
	}
	if res.RowsAffected != 1 {
		// Unreachable while the environment row is locked; a loud failure
		// beats a lost update if that ever stops being true.
		return flags.Revision{}, solstice.Errorf(solstice.KindInternal,
			"advance head of environment %q: it moved from %d during the write", rev.Environment, head)
	}
	audit := make([]solstice.AuditEntry, len(rw.Audit))
	for i, e := range rw.Audit {
		e.Environment = rev.Environment
		e.Revision = rev.Number
		audit[i] = e
	}
	if err := insertAudit(tx, audit, now); err != nil {
		return flags.Revision{}, err
	}
	return rev, nil
}

// currentObjects returns the stored objects among writes, by kind and key.
func currentObjects(tx *gorm.DB, env string, writes []flags.ObjectWrite) (map[objectID]objectRow, error) {
	keys := make([]string, 0, len(writes))
	for _, o := range writes {
		keys = append(keys, o.Key)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	current := make(map[objectID]objectRow, len(writes))
	for chunk := range slices.Chunk(keys, batchSize) {
		var rows []objectRow
		if err := tx.Where("environment = ? AND key IN ?", env, chunk).Find(&rows).Error; err != nil {
			return nil, internal("read objects", err)
		}
		for _, r := range rows {
			current[objectID{flags.ObjectKind(r.Kind), r.Key}] = r
		}
	}
	return current, nil
}

// checkExpect compares an object write's expectation with what is stored.
func checkExpect(env string, o flags.ObjectWrite, stored objectRow, exists bool) error {
	switch {
	case o.Expect == flags.AnyVersion:
		return nil
	case o.Expect == 0 && exists:
		return solstice.Errorf(solstice.KindPreconditionFailed,
			"%s %q in environment %q: expected it not to exist, stored revision is %d", o.Kind, o.Key, env, stored.Revision)
	case o.Expect > 0 && !exists:
		return solstice.Errorf(solstice.KindPreconditionFailed,
			"%s %q in environment %q: expected revision %d, it does not exist", o.Kind, o.Key, env, o.Expect)
	case o.Expect > 0 && stored.Revision != o.Expect:
		return solstice.Errorf(solstice.KindPreconditionFailed,
			"%s %q in environment %q: expected revision %d, stored revision is %d", o.Kind, o.Key, env, o.Expect, stored.Revision)
	}
	return nil
}

// insertRevision stores rev, its object versions and the objects' new
// current state.
func insertRevision(tx *gorm.DB, rev flags.Revision) error {
	diff, err := marshalDiff(rev.Diff)
	if err != nil {
		return internal("encode revision diff", err)
	}
	row := revisionRow{
		Environment: rev.Environment,
		Number:      rev.Number,
		Author:      rev.Author,
		Message:     rev.Message,
		CreatedAt:   rev.CreatedAt,
		Diff:        diff,
	}
	if err := tx.Create(&row).Error; err != nil {
		return internal("insert revision", err)
	}
	versions := make([]objectVersionRow, len(rev.Diff))
	var upserts []objectRow
	for i, c := range rev.Diff {
		versions[i] = objectVersionRow{
			Environment: rev.Environment,
			Kind:        string(c.Kind),
			Key:         c.Key,
			Revision:    rev.Number,
			Content:     optionalJSON(c.After),
		}
		if c.After != nil {
			upserts = append(upserts, objectRow{
				Environment: rev.Environment,
				Kind:        string(c.Kind),
				Key:         c.Key,
				Revision:    rev.Number,
				Content:     string(c.After),
			})
		}
	}
	if err := tx.CreateInBatches(versions, batchSize).Error; err != nil {
		return internal("insert object versions", err)
	}
	if len(upserts) > 0 {
		err := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "environment"}, {Name: "kind"}, {Name: "key"}},
			DoUpdates: clause.AssignmentColumns([]string{"revision", "content"}),
		}).CreateInBatches(upserts, batchSize).Error
		if err != nil {
			return internal("store objects", err)
		}
	}
	for _, c := range rev.Diff {
		if c.After != nil {
			continue
		}
		err := tx.Where("environment = ? AND kind = ? AND key = ?", rev.Environment, c.Kind, c.Key).Delete(&objectRow{}).Error
		if err != nil {
			return internal("delete object", err)
		}
	}
	return nil
}

// marshalDiff encodes a diff without escaping HTML characters, so that the
// contents it carries read back byte for byte as they were written
// (json.Marshal would turn "<" into "\u003c").
func marshalDiff(diff []flags.Change) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(diff); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// insertAudit records entries, stamping those without a time with now.
func insertAudit(tx *gorm.DB, entries []solstice.AuditEntry, now time.Time) error {
	if len(entries) == 0 {
		return nil
	}
	rows := make([]auditRow, len(entries))
	for i, e := range entries {
		if e.Time.IsZero() {
			e.Time = now
		}
		rows[i] = auditToRow(e)
	}
	if err := tx.CreateInBatches(rows, batchSize).Error; err != nil {
		return internal("insert audit entries", err)
	}
	return nil
}
