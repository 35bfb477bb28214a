package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/guardrails"
)

var _ guardrails.Store = (*DB)(nil)

// Paging limits of ListIncidents.
const (
	DefaultIncidentLimit = 50
	MaxIncidentLimit     = 500
)

// anyVersion is the expectation of PutGuardrail and DeleteGuardrail that
// matches every stored version.
const anyVersion = -1

type guardrailRow struct {
	Environment string `gorm:"primaryKey"`
	Flag        string `gorm:"primaryKey"`
	Key         string `gorm:"primaryKey"`
	Rule        string // guardrails.Rule as canonical JSON
	Version     int64
	CreatedAt   time.Time `gorm:"autoCreateTime:false"`
	UpdatedAt   time.Time `gorm:"autoUpdateTime:false"`
}

func (guardrailRow) TableName() string { return "guardrails" }

func definitionFromRow(r guardrailRow) (guardrails.Definition, error) {
	var rule guardrails.Rule
	if err := json.Unmarshal([]byte(r.Rule), &rule); err != nil {
		return guardrails.Definition{}, err
	}
	rule.Ref = guardrails.Ref{Environment: r.Environment, Flag: r.Flag, Key: r.Key}
	return guardrails.Definition{
		Rule:      rule,
		Version:   r.Version,
		CreatedAt: r.CreatedAt.UTC(),
		UpdatedAt: r.UpdatedAt.UTC(),
	}, nil
}

type guardrailStateRow struct {
	Environment string `gorm:"primaryKey"`
	Flag        string `gorm:"primaryKey"`
	Key         string `gorm:"primaryKey"`
	Version     int64
	State       string // guardrails.State as JSON
}

func (guardrailStateRow) TableName() string { return "guardrail_states" }

type incidentRow struct {
	Number      int64  `gorm:"primaryKey;autoIncrement"`
	IncidentID  string `gorm:"column:id"`
	Environment string
	Flag        string
	Guardrail   string
	Event       string
	Action      string
	Test        int
	Time        time.Time
	Revision    int64
	Outcome     string
	RecordedAt  time.Time `gorm:"autoCreateTime:false"`
	AckedBy     *string   // solstice.Actor as JSON
	AckedAt     *time.Time
	Incident    string // guardrails.Incident as JSON
}

func (incidentRow) TableName() string { return "guardrail_incidents" }

func recordFromRow(r incidentRow) (guardrails.Record, error) {
	rec := guardrails.Record{
		Number:     r.Number,
		Revision:   r.Revision,
		Outcome:    r.Outcome,
		RecordedAt: r.RecordedAt.UTC(),
	}
	if err := json.Unmarshal([]byte(r.Incident), &rec.Incident); err != nil {
		return guardrails.Record{}, err
	}
	if r.AckedBy != nil {
		var by solstice.Actor
		if err := json.Unmarshal([]byte(*r.AckedBy), &by); err != nil {
			return guardrails.Record{}, err
		}
		rec.AckedBy = &by
	}
	if r.AckedAt != nil {
		at := r.AckedAt.UTC()
		rec.AckedAt = &at
	}
	return rec, nil
}

// checkRef rejects a Ref with an empty part, which no stored row has.
func checkRef(ref guardrails.Ref) error {
	if ref.Environment == "" || ref.Flag == "" || ref.Key == "" {
		return solstice.Errorf(solstice.KindInvalid, "guardrail %q: environment, flag and key must not be empty", ref.String())
	}
	return nil
}

// whereRef narrows tx to the row of ref.
func whereRef(tx *gorm.DB, ref guardrails.Ref) *gorm.DB {
	return tx.Where("environment = ? AND flag = ? AND key = ?", ref.Environment, ref.Flag, ref.Key)
}

func compareRefs(a, b guardrails.Ref) int {
	return cmp.Or(cmp.Compare(a.Environment, b.Environment), cmp.Compare(a.Flag, b.Flag), cmp.Compare(a.Key, b.Key))
}

// Rules returns every guardrail of every environment, sorted by
// environment, flag and key (bytewise, whatever the database's collation).
// It implements guardrails.RuleSource. It returns a KindInternal error if
// the database fails.
func (db *DB) Rules(ctx context.Context) ([]guardrails.Rule, error) {
	defs, err := listGuardrails(db.gorm.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	rules := make([]guardrails.Rule, len(defs))
	for i, d := range defs {
		rules[i] = d.Rule
	}
	return rules, nil
}

// ListGuardrails returns the definitions of env, and only those of flag
// unless flag is "", sorted by flag and key. It returns a KindInvalid error
// for an empty env, a KindNotFound error if env or flag does not exist and
// a KindInternal error if the database fails.
func (db *DB) ListGuardrails(ctx context.Context, env, flag string) ([]guardrails.Definition, error) {
	if env == "" {
		return nil, solstice.Errorf(solstice.KindInvalid, "list guardrails: the environment is empty")
	}
	q := db.gorm.WithContext(ctx).Where("environment = ?", env)
	if flag != "" {
		q = q.Where("flag = ?", flag)
	}
	defs, err := listGuardrails(q)
	if err != nil {
		return nil, err
	}
	if len(defs) == 0 {
		if err := db.environmentMissing(ctx, env); err != nil {
			return nil, err
		}
		if flag != "" {
			if err := flagMissing(db.gorm.WithContext(ctx), flag); err != nil {
				return nil, err
			}
		}
	}
	return defs, nil
}

// listGuardrails returns the definitions q selects, sorted by Ref. The sort
// is done here so that it is bytewise on PostgreSQL too, whose collation
// may ignore punctuation such as '-'.
func listGuardrails(q *gorm.DB) ([]guardrails.Definition, error) {
	var rows []guardrailRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, internal("list guardrails", err)
	}
	defs := make([]guardrails.Definition, len(rows))
	for i, r := range rows {
		d, err := definitionFromRow(r)
		if err != nil {
			return nil, internal("decode guardrail", err)
		}
		defs[i] = d
	}
	slices.SortFunc(defs, func(a, b guardrails.Definition) int { return compareRefs(a.Ref, b.Ref) })
	return defs, nil
}

// GetGuardrail returns the definition of the guardrail ref. It returns a
// KindNotFound error if there is none and a KindInternal error if the
// database fails.
func (db *DB) GetGuardrail(ctx context.Context, ref guardrails.Ref) (guardrails.Definition, error) {
	return getGuardrail(db.gorm.WithContext(ctx), ref)
}

func getGuardrail(tx *gorm.DB, ref guardrails.Ref) (guardrails.Definition, error) {
	var row guardrailRow
	if err := whereRef(tx, ref).Take(&row).Error; err != nil {
		if notFound(err) {
			return guardrails.Definition{}, solstice.Errorf(solstice.KindNotFound, "guardrail %s not found", ref)
		}
		return guardrails.Definition{}, internal("get guardrail", err)
	}
	d, err := definitionFromRow(row)
	if err != nil {
		return guardrails.Definition{}, internal("decode guardrail", err)
	}
	return d, nil
}

// flagMissing returns a KindNotFound error if the flag key does not exist,
// and nil if it does.
func flagMissing(tx *gorm.DB, key string) error {
	var n int64
	if err := tx.Model(&flagRow{}).Where("key = ?", key).Count(&n).Error; err != nil {
		return internal("get flag", err)
	}
	if n == 0 {
		return solstice.Errorf(solstice.KindNotFound, "flag %q not found", key)
	}
	return nil
}

// PutGuardrail stores r as its guardrail's definition if the stored version
// is expect: 0 creates it (version 1), a positive expect replaces version
// expect (the result is expect+1), -1 creates or replaces whatever is
// stored. It records audit, stamped with r's environment (and the store's
// clock if it has no time), in the same transaction, and returns the
// stored definition. The rule is stored as the caller validated it.
//
// Errors: KindInvalid for an empty environment, flag or key, an expect
// below -1, a rule that cannot be encoded (a NaN) or audit details that are
// not JSON; KindNotFound for an unknown environment or flag, or a positive
// expect for a guardrail that does not exist; KindConflict when expect is 0
// and the guardrail exists; KindPreconditionFailed when the stored version
// is not expect; KindInternal otherwise.
func (db *DB) PutGuardrail(ctx context.Context, r guardrails.Rule, expect int64, audit solstice.AuditEntry) (guardrails.Definition, error) {
	if err := checkRef(r.Ref); err != nil {
		return guardrails.Definition{}, err
	}
	if expect < anyVersion {
		return guardrails.Definition{}, solstice.Errorf(solstice.KindInvalid, "put guardrail %s: expected version %d", r.Ref, expect)
	}
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return guardrails.Definition{}, err
	}
	doc, err := flags.CanonicalOf(r)
	if err != nil {
		return guardrails.Definition{}, solstice.Errorf(solstice.KindInvalid, "guardrail %s cannot be stored: %v", r.Ref, err)
	}
	now := db.now()
	row := guardrailRow{
		Environment: r.Environment, Flag: r.Flag, Key: r.Key,
		Rule: string(doc), Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	var def guardrails.Definition
	err = db.transaction(ctx, "put guardrail", func(tx *gorm.DB) error {
		if _, err := getEnvironment(tx, r.Environment); err != nil {
			return err
		}
		if err := flagMissing(tx, r.Flag); err != nil {
			return err
		}
		var err error
		switch expect {
		case 0:
			err = tx.Create(&row).Error
		case anyVersion:
			err = tx.Clauses(clause.OnConflict{
				Columns: []clause.Column{{Name: "environment"}, {Name: "flag"}, {Name: "key"}},
				DoUpdates: clause.Assignments(map[string]any{
					"rule":       row.Rule,
					"version":    gorm.Expr("guardrails.version + 1"),
					"updated_at": now,
				}),
			}).Create(&row).Error
		default:
			res := whereRef(tx.Model(&guardrailRow{}), r.Ref).Where("version = ?", expect).Updates(map[string]any{
				"rule":       row.Rule,
				"version":    expect + 1,
				"updated_at": now,
			})
			if err = res.Error; err == nil && res.RowsAffected == 0 {
				return guardrailVersionMismatch(tx, r.Ref, expect)
			}
		}
		switch {
		case err == nil:
		case uniqueViolation(err):
			return solstice.Errorf(solstice.KindConflict, "guardrail %s already exists", r.Ref)
		case foreignKeyViolation(err):
			// Deleted since the checks above.
			return solstice.Errorf(solstice.KindNotFound, "environment %q or flag %q not found", r.Environment, r.Flag)
		default:
			return internal("put guardrail", err)
		}
		if def, err = getGuardrail(tx, r.Ref); err != nil {
			return err
		}
		audit.Environment = r.Environment
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
	if err != nil {
		return guardrails.Definition{}, err
	}
	return def, nil
}

// guardrailVersionMismatch explains why a conditional change of the
// guardrail ref touched no row.
func guardrailVersionMismatch(tx *gorm.DB, ref guardrails.Ref, expect int64) error {
	var row guardrailRow
	if err := whereRef(tx.Select("version"), ref).Take(&row).Error; err != nil {
		if notFound(err) {
			return solstice.Errorf(solstice.KindNotFound, "guardrail %s not found", ref)
		}
		return internal("get guardrail version", err)
	}
	return solstice.Errorf(solstice.KindPreconditionFailed,
		"guardrail %s: expected version %d, stored version is %d", ref, expect, row.Version)
}

// DeleteGuardrail removes the definition of the guardrail ref and its state
// if the stored version is expect (-1: any), and records audit, stamped
// with ref's environment, in the same transaction. Its incidents stay.
//
// Errors: KindInvalid for an empty part of ref, an expect that is neither
// -1 nor positive, or audit details that are not JSON; KindNotFound if the
// guardrail does not exist; KindPreconditionFailed when the stored version
// is not expect; KindInternal otherwise.
func (db *DB) DeleteGuardrail(ctx context.Context, ref guardrails.Ref, expect int64, audit solstice.AuditEntry) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	if expect != anyVersion && expect < 1 {
		return solstice.Errorf(solstice.KindInvalid, "delete guardrail %s: expected version %d", ref, expect)
	}
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "delete guardrail", func(tx *gorm.DB) error {
		q := whereRef(tx, ref)
		if expect != anyVersion {
			q = q.Where("version = ?", expect)
		}
		res := q.Delete(&guardrailRow{})
		if res.Error != nil {
			return internal("delete guardrail", res.Error)
		}
		if res.RowsAffected == 0 {
			return guardrailVersionMismatch(tx, ref, expect)
		}
		// The foreign key cascades too; saying it here keeps the
		// contract visible where it is kept.
		if err := whereRef(tx, ref).Delete(&guardrailStateRow{}).Error; err != nil {
			return internal("delete guardrail state", err)
		}
		audit.Environment = ref.Environment
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
}

// State returns the stored state of the guardrail ref. It implements
// guardrails.StateStore. It returns a KindNotFound error if none was ever
// stored (or the guardrail was deleted since) and a KindInternal error if
// the database fails.
func (db *DB) State(ctx context.Context, ref guardrails.Ref) (guardrails.State, error) {
	var row guardrailStateRow
	if err := whereRef(db.gorm.WithContext(ctx), ref).Take(&row).Error; err != nil {
		if notFound(err) {
			return guardrails.State{}, solstice.Errorf(solstice.KindNotFound, "guardrail %s has no state", ref)
		}
		return guardrails.State{}, internal("get guardrail state", err)
	}
	var st guardrails.State
	if err := json.Unmarshal([]byte(row.State), &st); err != nil {
		return guardrails.State{}, internal("decode guardrail state", err)
	}
	st.Guardrail, st.Version = ref, row.Version
	return st, nil
}

// SwapState stores next as the state of next.Guardrail if the stored
// state's version is old (0: none is stored), in one statement, so that of
// several processes swapping from the same version exactly one wins. It
// implements guardrails.StateStore.
//
// Errors: KindInvalid for an empty part of the Ref, a negative old, a
// next.Version not above old, or a state that cannot be encoded (a NaN in
// its verdict); KindConflict, storing nothing, when the stored version is
// not old; KindNotFound when the guardrail has no definition (states go
// with their definitions); KindInternal otherwise.
func (db *DB) SwapState(ctx context.Context, old int64, next guardrails.State) error {
	ref := next.Guardrail
	if err := checkRef(ref); err != nil {
		return err
	}
	if old < 0 || next.Version <= old {
		return solstice.Errorf(solstice.KindInvalid, "swap state of guardrail %s from version %d to version %d: versions must grow", ref, old, next.Version)
	}
	doc, err := json.Marshal(next)
	if err != nil {
		return solstice.Errorf(solstice.KindInvalid, "state of guardrail %s cannot be stored: %v", ref, err)
	}
	g := db.gorm.WithContext(ctx)
	if old == 0 {
		row := guardrailStateRow{Environment: ref.Environment, Flag: ref.Flag, Key: ref.Key, Version: next.Version, State: string(doc)}
		err := g.Create(&row).Error
		switch {
		case err == nil:
			return nil
		case uniqueViolation(err):
			return solstice.Errorf(solstice.KindConflict, "guardrail %s: expected no stored state, another writer stored one", ref)
		case foreignKeyViolation(err):
			return solstice.Errorf(solstice.KindNotFound, "guardrail %s not found", ref)
		default:
			return internal("store guardrail state", err)
		}
	}
	res := whereRef(g.Model(&guardrailStateRow{}), ref).Where("version = ?", old).
		Updates(map[string]any{"version": next.Version, "state": string(doc)})
	if res.Error != nil {
		return internal("store guardrail state", res.Error)
	}
	if res.RowsAffected == 0 {
		return solstice.Errorf(solstice.KindConflict, "guardrail %s: expected state version %d, %s", ref, old, storedStateVersion(g, ref))
	}
	return nil
}

// storedStateVersion describes the stored state's version for a conflict's
// message.
func storedStateVersion(g *gorm.DB, ref guardrails.Ref) string {
	var row guardrailStateRow
	switch err := whereRef(g.Select("version"), ref).Take(&row).Error; {
	case err == nil:
		return fmt.Sprintf("stored version is %d", row.Version)
	case notFound(err):
		return "no state is stored"
	default:
		return "the stored version is unknown"
	}
}

// RecordIncident stores rec, the audit entry that announces it and the
// webhook messages of the outbox, in one transaction. The store assigns
// rec.Number and rec.RecordedAt (its clock) and clears any
// acknowledgement; the messages are due at once. The audit entry has
// Action "incident.<event>", Resource "guardrail/<flag>/<key>", rec's
// actor, environment and revision, and the incident's number, id and
// reason in its details.
//
// It is idempotent per rec.ID: when an incident with that ID is stored,
// even by a concurrent call, it stores nothing and returns the stored
// record with created false.
//
// Errors: KindInvalid for an empty ID, event or part of the Ref, a negative
// revision, or a malformed message (empty ID, endpoint or event, a payload
// that is not JSON, an ID twice); KindNotFound for an unknown environment;
// KindConflict when a message ID is already queued; KindInternal
// otherwise.
func (db *DB) RecordIncident(ctx context.Context, rec guardrails.Record, announce guardrails.Announce) (stored guardrails.Record, created bool, err error) {
	if err := checkIncident(rec); err != nil {
		return guardrails.Record{}, false, err
	}
	now := db.now()
	rec.Number, rec.RecordedAt, rec.AckedBy, rec.AckedAt = 0, now, nil, nil
	rec.Time = dbTime(rec.Time)
	doc, err := json.Marshal(rec.Incident)
	if err != nil {
		return guardrails.Record{}, false, solstice.Errorf(solstice.KindInvalid, "incident %s cannot be stored: %v", rec.ID, err)
	}
	g := rec.Guardrail
	row := incidentRow{
		IncidentID: rec.ID, Environment: g.Environment, Flag: g.Flag, Guardrail: g.Key,
		Event: string(rec.Event), Action: string(rec.Action), Test: rec.Test, Time: rec.Time,
		Revision: rec.Revision, Outcome: rec.Outcome, RecordedAt: now, Incident: string(doc),
	}
	err = db.transaction(ctx, "record incident", func(tx *gorm.DB) error {
		stored, created = guardrails.Record{}, false
		existing, err := incidentWhere(tx, "id = ?", rec.ID)
		if err == nil {
			stored = existing
			return nil
		}
		if !solstice.IsKind(err, solstice.KindNotFound) {
			return err
		}
		if _, err := getEnvironment(tx, g.Environment); err != nil {
			return err
		}
		// NOTE: on PostgreSQL, of two calls racing past the read above
		// the second waits here for the first to commit and then inserts
		// nothing; its identity value is spent, so numbers may skip one.
		res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoNothing: true}).Create(&row)
		switch {
		case foreignKeyViolation(res.Error):
			return solstice.Errorf(solstice.KindNotFound, "environment %q not found", g.Environment)
		case res.Error != nil:
			return internal("insert incident", res.Error)
		case res.RowsAffected == 0:
			stored, err = incidentWhere(tx, "id = ?", rec.ID)
			return err
		}
		rec.Number = row.Number
		details, err := json.Marshal(map[string]any{"number": rec.Number, "id": rec.ID, "reason": rec.Reason})
		if err != nil {
			return internal("encode audit details", err)
		}
		entry := solstice.AuditEntry{
			Time:        now,
			Actor:       rec.Actor,
			Action:      "incident." + string(rec.Event),
			Environment: g.Environment,
			Resource:    "guardrail/" + g.Flag + "/" + g.Key,
			Revision:    rec.Revision,
			Details:     details,
		}
		if err := insertAudit(tx, []solstice.AuditEntry{entry}, now); err != nil {
			return err
		}
		if announce != nil {
			messages, err := announce(rec)
			if err != nil {
				return fmt.Errorf("announce incident %s: %w", rec.ID, err)
			}
			if err := checkMessages(messages); err != nil {
				return err
			}
			if err := insertMessages(tx, messages, now); err != nil {
				return err
			}
		}
		stored, created = rec, true
		return nil
	})
	if err != nil {
		return guardrails.Record{}, false, err
	}
	return stored, created, nil
}

// checkIncident rejects a record that no stored incident could match.
func checkIncident(rec guardrails.Record) error {
	switch {
	case rec.ID == "":
		return solstice.Errorf(solstice.KindInvalid, "incident without an id")
	case rec.Event == "":
		return solstice.Errorf(solstice.KindInvalid, "incident %s without an event", rec.ID)
	case rec.Revision < 0:
		return solstice.Errorf(solstice.KindInvalid, "incident %s has revision %d", rec.ID, rec.Revision)
	}
	if err := checkRef(rec.Guardrail); err != nil {
		return fmt.Errorf("incident %s: %w", rec.ID, err)
	}
	return nil
}

// Incident returns the incident whose Incident.ID is id. It returns a
// KindNotFound error if there is none and a KindInternal error if the
// database fails.
func (db *DB) Incident(ctx context.Context, id string) (guardrails.Record, error) {
	return incidentWhere(db.gorm.WithContext(ctx), "id = ?", id)
}

// GetIncident returns the incident number. It returns a KindNotFound error
// if there is none and a KindInternal error if the database fails.
func (db *DB) GetIncident(ctx context.Context, number int64) (guardrails.Record, error) {
	return incidentWhere(db.gorm.WithContext(ctx), "number = ?", number)
}

// incidentWhere returns the one incident that the condition selects.
func incidentWhere(tx *gorm.DB, cond string, arg any) (guardrails.Record, error) {
	var row incidentRow
	if err := tx.Where(cond, arg).Take(&row).Error; err != nil {
		if notFound(err) {
			return guardrails.Record{}, solstice.Errorf(solstice.KindNotFound, "incident %v not found", arg)
		}
		return guardrails.Record{}, internal("get incident", err)
	}
	rec, err := recordFromRow(row)
	if err != nil {
		return guardrails.Record{}, internal("decode incident", err)
	}
	return rec, nil
}

// ListIncidents returns the incidents that match every set field of f,
// newest (highest number) first: Environment, Flag and Guardrail (only
// with Flag) match exactly, Events lists the events kept, Unacked keeps
// those nobody acknowledged, BeforeNumber pages. At most f.Limit are
// returned (DefaultIncidentLimit when 0, at most MaxIncidentLimit).
//
// It returns a KindInvalid error for a negative limit or number or a
// Guardrail without a Flag, a KindNotFound error when it finds nothing in
// an environment that does not exist, and a KindInternal error if the
// database fails.
func (db *DB) ListIncidents(ctx context.Context, f guardrails.IncidentFilter) ([]guardrails.Record, error) {
	if f.Limit < 0 || f.BeforeNumber < 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "negative incident limit or number")
	}
	if f.Guardrail != "" && f.Flag == "" {
		return nil, solstice.Errorf(solstice.KindInvalid, "an incident filter by guardrail %q needs its flag", f.Guardrail)
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultIncidentLimit
	}
	limit = min(limit, MaxIncidentLimit)

	q := db.gorm.WithContext(ctx)
	if f.Environment != "" {
		q = q.Where("environment = ?", f.Environment)
	}
	if f.Flag != "" {
		q = q.Where("flag = ?", f.Flag)
	}
	if f.Guardrail != "" {
		q = q.Where("guardrail = ?", f.Guardrail)
	}
	if len(f.Events) > 0 {
		events := make([]string, len(f.Events))
		for i, e := range f.Events {
			events[i] = string(e)
		}
		q = q.Where("event IN ?", events)
	}
	if f.Unacked {
		q = q.Where("acked_at IS NULL")
	}
	if f.BeforeNumber > 0 {
		q = q.Where("number < ?", f.BeforeNumber)
	}
	var rows []incidentRow
	if err := q.Order("number DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, internal("list incidents", err)
	}
	if len(rows) == 0 && f.Environment != "" {
		if err := db.environmentMissing(ctx, f.Environment); err != nil {
			return nil, err
		}
	}
	recs := make([]guardrails.Record, len(rows))
	for i, r := range rows {
		rec, err := recordFromRow(r)
		if err != nil {
			return nil, internal("decode incident", err)
		}
		recs[i] = rec
	}
	return recs, nil
}

// AckIncident records that by acknowledged the incident number at the
// given time, and records audit, stamped with the incident's environment,
// in the same transaction, then returns the stored record. Acknowledging
// an acknowledged incident changes nothing, records no audit entry and
// returns the stored record, so of concurrent calls exactly one records.
//
// Errors: KindInvalid for an actor without a name or audit details that
// are not JSON; KindNotFound if the incident does not exist; KindInternal
// otherwise.
func (db *DB) AckIncident(ctx context.Context, number int64, by solstice.Actor, at time.Time, audit solstice.AuditEntry) (guardrails.Record, error) {
	if by.Name == "" {
		return guardrails.Record{}, solstice.Errorf(solstice.KindInvalid, "acknowledge incident %d: the actor has no name", number)
	}
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return guardrails.Record{}, err
	}
	byJSON, err := json.Marshal(by)
	if err != nil {
		return guardrails.Record{}, internal("encode actor", err)
	}
	now := db.now()
	var rec guardrails.Record
	err = db.transaction(ctx, "acknowledge incident", func(tx *gorm.DB) error {
		res := tx.Model(&incidentRow{}).Where("number = ? AND acked_at IS NULL", number).
			Updates(map[string]any{"acked_by": string(byJSON), "acked_at": dbTime(at)})
		if res.Error != nil {
			return internal("acknowledge incident", res.Error)
		}
		var err error
		if rec, err = incidentWhere(tx, "number = ?", number); err != nil || res.RowsAffected == 0 {
			return err
		}
		audit.Environment = rec.Guardrail.Environment
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
	if err != nil {
		return guardrails.Record{}, err
	}
	return rec, nil
}
