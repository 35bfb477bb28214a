package store

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
)

var (
	_ rollout.Store      = (*DB)(nil)
	_ rollout.Guardrails = (*DB)(nil)
)

type rolloutPlanRow struct {
	Environment string `gorm:"primaryKey"`
	ID          string `gorm:"primaryKey;column:id"`
	Flag        string
	Status      string
	Pending     bool
	Version     int64
	Plan        string    // rollout.Plan as JSON
	Decision    *string   // rollout.ExperimentDecision as JSON, once an experiment has ended
	CreatedAt   time.Time `gorm:"autoCreateTime:false"`
	UpdatedAt   time.Time `gorm:"autoUpdateTime:false"`
}

func (rolloutPlanRow) TableName() string { return "rollout_plans" }

func rolloutPlanFromRow(r rolloutPlanRow) (rollout.Plan, error) {
	var p rollout.Plan
	if err := json.Unmarshal([]byte(r.Plan), &p); err != nil {
		return rollout.Plan{}, internal("decode rollout plan", err)
	}
	if r.Decision != nil {
		var d rollout.ExperimentDecision
		if err := json.Unmarshal([]byte(*r.Decision), &d); err != nil {
			return rollout.Plan{}, internal("decode experiment decision", err)
		}
		p.ExperimentDecision = &d
	}
	p.Environment, p.ID, p.Flag, p.Status = r.Environment, r.ID, r.Flag, rollout.Status(r.Status)
	p.Version, p.CreatedAt, p.UpdatedAt = r.Version, r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return p, nil
}

type rolloutEventRow struct {
	Environment string `gorm:"primaryKey"`
	Key         string `gorm:"primaryKey"`
	UID         string `gorm:"column:uid"`
	StartsAt    time.Time
	EndsAt      time.Time
	Closed      bool
	Version     int64
	Event       string    // rollout.Event as JSON
	CreatedAt   time.Time `gorm:"autoCreateTime:false"`
	UpdatedAt   time.Time `gorm:"autoUpdateTime:false"`
}

func (rolloutEventRow) TableName() string { return "rollout_events" }

func rolloutEventFromRow(r rolloutEventRow) (rollout.Event, error) {
	var e rollout.Event
	if err := json.Unmarshal([]byte(r.Event), &e); err != nil {
		return rollout.Event{}, internal("decode event", err)
	}
	e.Environment, e.Key, e.UID = r.Environment, r.Key, r.UID
	e.Version, e.CreatedAt, e.UpdatedAt = r.Version, r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return e, nil
}

type rolloutChangeRow struct {
	ID          string `gorm:"primaryKey;column:id"`
	Environment string
	EventUID    string `gorm:"column:event_uid"`
	Kind        string
	DueAt       time.Time
	Status      string
	Attempt     int
	ClaimedBy   string
	ClaimedAt   time.Time
	AppliedAt   *time.Time
	Record      string // rollout.Record as JSON
}

func (rolloutChangeRow) TableName() string { return "rollout_changes" }

func rolloutChangeToRow(r rollout.Record) (rolloutChangeRow, error) {
	r.Due, r.ClaimedAt = dbTime(r.Due), dbTime(r.ClaimedAt)
	row := rolloutChangeRow{
		ID: r.ID, Environment: r.Environment, EventUID: r.EventUID, Kind: string(r.Kind), DueAt: r.Due,
		Status: string(r.Status), Attempt: r.Attempt, ClaimedBy: r.ClaimedBy, ClaimedAt: r.ClaimedAt,
	}
	if r.Status != rollout.StatusClaimed {
		r.AppliedAt = dbTime(r.AppliedAt)
		row.AppliedAt = &r.AppliedAt
	}
	doc, err := json.Marshal(r)
	if err != nil {
		return row, solstice.Errorf(solstice.KindInvalid, "record of change %s cannot be stored: %v", r.ID, err)
	}
	row.Record = string(doc)
	return row, nil
}

func rolloutChangeFromRow(row rolloutChangeRow) (rollout.Record, error) {
	var r rollout.Record
	if err := json.Unmarshal([]byte(row.Record), &r); err != nil {
		return rollout.Record{}, internal("decode change record", err)
	}
	r.ID, r.Environment, r.EventUID, r.Kind = row.ID, row.Environment, row.EventUID, rollout.RecordKind(row.Kind)
	r.Due, r.Status, r.Attempt = row.DueAt.UTC(), rollout.RecordStatus(row.Status), row.Attempt
	r.ClaimedBy, r.ClaimedAt = row.ClaimedBy, row.ClaimedAt.UTC()
	if row.AppliedAt != nil {
		r.AppliedAt = row.AppliedAt.UTC()
	}
	return r, nil
}

// rolloutCheckExpect rejects an expectation that no stored version can
// meet.
func rolloutCheckExpect(what string, expect int64) error {
	if expect < 0 && expect != flags.AnyVersion {
		return solstice.Errorf(solstice.KindInvalid, "%s: expected version %d", what, expect)
	}
	return nil
}

// rolloutFlagExists returns a KindNotFound error if flag key does not exist.
func rolloutFlagExists(tx *gorm.DB, key string) error {
	var n int64
	if err := tx.Table("flags").Where("key = ?", key).Count(&n).Error; err != nil {
		return internal("look up flag", err)
	}
	if n == 0 {
		return solstice.Errorf(solstice.KindNotFound, "flag %q not found", key)
	}
	return nil
}

// ---- plans ----

// ListPlans returns the plans f selects, sorted by environment and ID
// (bytewise). It implements rollout.Store. It returns a KindInternal error
// if the database fails.
func (db *DB) ListPlans(ctx context.Context, f rollout.PlanFilter) ([]rollout.Plan, error) {
	q := db.gorm.WithContext(ctx)
	if f.Environment != "" {
		q = q.Where("environment = ?", f.Environment)
	}
	if f.Flag != "" {
		q = q.Where("flag = ?", f.Flag)
	}
	if f.Active {
		q = q.Where("(status IN ? OR pending)", []string{string(rollout.StatusScheduled), string(rollout.StatusRunning), string(rollout.StatusPaused)})
	}
	var rows []rolloutPlanRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, internal("list rollout plans", err)
	}
	plans := make([]rollout.Plan, len(rows))
	for i, r := range rows {
		p, err := rolloutPlanFromRow(r)
		if err != nil {
			return nil, err
		}
		plans[i] = p
	}
	slices.SortFunc(plans, func(a, b rollout.Plan) int {
		return cmp.Or(cmp.Compare(a.Environment, b.Environment), cmp.Compare(a.ID, b.ID))
	})
	return plans, nil
}

// GetPlan returns plan id of env. It implements rollout.Store. It returns
// a KindNotFound error if there is none and a KindInternal error if the
// database fails.
func (db *DB) GetPlan(ctx context.Context, env, id string) (rollout.Plan, error) {
	row, err := getRolloutPlan(db.gorm.WithContext(ctx), env, id)
	if err != nil {
		return rollout.Plan{}, err
	}
	return rolloutPlanFromRow(row)
}

func getRolloutPlan(tx *gorm.DB, env, id string) (rolloutPlanRow, error) {
	var row rolloutPlanRow
	if err := tx.Where("environment = ? AND id = ?", env, id).Take(&row).Error; err != nil {
		if notFound(err) {
			return row, solstice.Errorf(solstice.KindNotFound, "rollout plan %q not found in %q", id, env)
		}
		return row, internal("get rollout plan", err)
	}
	return row, nil
}

// PutPlan stores p if the stored plan's version is expect (0: there must
// be none; flags.AnyVersion: any), with the audit entries, in one
// transaction, and returns it as stored: version expect+1 (1 when
// created), UpdatedAt (and CreatedAt when created) from the store's clock.
// It implements rollout.Store; the update is a single conditional
// statement, so of several writers expecting one version exactly one wins.
// p.ExperimentDecision is stored in its own column, once: an update never
// replaces a stored decision, nor removes it.
//
// Errors: KindInvalid for an empty environment, ID or flag, or an
// impossible expect; KindNotFound for an unknown environment or flag, or a
// missing plan to update; KindConflict when creating an existing plan;
// KindPreconditionFailed when the stored version is not expect;
// KindInternal otherwise.
func (db *DB) PutPlan(ctx context.Context, p rollout.Plan, expect int64, audit []solstice.AuditEntry) (rollout.Plan, error) {
	if p.Environment == "" || p.ID == "" || p.Flag == "" {
		return rollout.Plan{}, solstice.Errorf(solstice.KindInvalid, "store rollout plan: the environment, ID and flag must not be empty")
	}
	if err := rolloutCheckExpect("store rollout plan "+p.ID, expect); err != nil {
		return rollout.Plan{}, err
	}
	if err := checkAudit(audit); err != nil {
		return rollout.Plan{}, err
	}
	now := db.now()
	var stored rollout.Plan
	err := db.transaction(ctx, "store rollout plan", func(tx *gorm.DB) error {
		if expect == flags.AnyVersion {
			row, err := getRolloutPlan(tx, p.Environment, p.ID)
			if err != nil {
				return err
			}
			expect = row.Version
		}
		p.Version, p.UpdatedAt = expect+1, now
		if expect == 0 {
			p.CreatedAt = now
		}
		doc, err := json.Marshal(p)
		if err != nil {
			return solstice.Errorf(solstice.KindInvalid, "rollout plan %s cannot be stored: %v", p.ID, err)
		}
		row := rolloutPlanRow{Environment: p.Environment, ID: p.ID, Flag: p.Flag, Status: string(p.Status), Pending: p.Pending != nil,
			Version: p.Version, Plan: string(doc), CreatedAt: p.CreatedAt, UpdatedAt: now}
		if p.ExperimentDecision != nil {
			d, err := json.Marshal(p.ExperimentDecision)
			if err != nil {
				return solstice.Errorf(solstice.KindInvalid, "decision of experiment %s cannot be stored: %v", p.ID, err)
			}
			doc := string(d)
			row.Decision = &doc
		}
		if expect == 0 {
			if _, err := getEnvironment(tx, p.Environment); err != nil {
				return err
			}
			if err := rolloutFlagExists(tx, p.Flag); err != nil {
				return err
			}
			if err := tx.Create(&row).Error; err != nil {
				if uniqueViolation(err) {
					return solstice.Errorf(solstice.KindConflict, "rollout plan %q already exists in %q", p.ID, p.Environment)
				}
				return internal("create rollout plan", err)
			}
		} else {
			set := map[string]any{"flag": row.Flag, "status": row.Status, "pending": row.Pending, "version": row.Version, "plan": row.Plan, "updated_at": now}
			if row.Decision != nil {
				// An experiment's decision is written once: a later write
				// (a retry, another scheduler's) keeps the stored one.
				set["decision"] = gorm.Expr("COALESCE(decision, ?)", *row.Decision)
			}
			res := tx.Model(&rolloutPlanRow{}).Where("environment = ? AND id = ? AND version = ?", p.Environment, p.ID, expect).
				Updates(set)
			if res.Error != nil {
				return internal("update rollout plan", res.Error)
			}
			if res.RowsAffected == 0 {
				cur, err := getRolloutPlan(tx, p.Environment, p.ID)
				if err != nil {
					return err
				}
				return solstice.Errorf(solstice.KindPreconditionFailed, "rollout plan %q is at version %d, not %d: reload and retry", p.ID, cur.Version, expect)
			}
		}
		if err := insertAudit(tx, audit, now); err != nil {
			return err
		}
		cur, err := getRolloutPlan(tx, p.Environment, p.ID)
		if err != nil {
			return err
		}
		stored, err = rolloutPlanFromRow(cur)
		return err
	})
	if err != nil {
		return rollout.Plan{}, err
	}
	return stored, nil
}

// DeletePlan removes plan id of env if its version is expect (any with
// flags.AnyVersion), with the audit entry, in one transaction. It
// implements rollout.Store. It returns a KindNotFound error if there is no
// such plan, KindPreconditionFailed for another version, KindInvalid for
// an impossible expect and KindInternal if the database fails.
func (db *DB) DeletePlan(ctx context.Context, env, id string, expect int64, audit solstice.AuditEntry) error {
	if err := rolloutCheckExpect("delete rollout plan "+id, expect); err != nil {
		return err
	}
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "delete rollout plan", func(tx *gorm.DB) error {
		q := tx.Where("environment = ? AND id = ?", env, id)
		if expect != flags.AnyVersion {
			q = q.Where("version = ?", expect)
		}
		res := q.Delete(&rolloutPlanRow{})
		if res.Error != nil {
			return internal("delete rollout plan", res.Error)
		}
		if res.RowsAffected == 0 {
			cur, err := getRolloutPlan(tx, env, id)
			if err != nil {
				return err
			}
			return solstice.Errorf(solstice.KindPreconditionFailed, "rollout plan %q is at version %d, not %d: reload and retry", id, cur.Version, expect)
		}
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
}

// ---- events ----

// ListEvents returns the events f selects, sorted by environment, start
// and key. It implements rollout.Store. It returns a KindInternal error if
// the database fails.
func (db *DB) ListEvents(ctx context.Context, f rollout.EventFilter) ([]rollout.Event, error) {
	q := db.gorm.WithContext(ctx)
	if f.Environment != "" {
		q = q.Where("environment = ?", f.Environment)
	}
	if f.Open {
		q = q.Where("NOT closed")
	}
	if !f.From.IsZero() {
		q = q.Where("ends_at > ?", dbTime(f.From))
	}
	if !f.To.IsZero() {
		q = q.Where("starts_at < ?", dbTime(f.To))
	}
	var rows []rolloutEventRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, internal("list events", err)
	}
	slices.SortFunc(rows, func(a, b rolloutEventRow) int {
		return cmp.Or(cmp.Compare(a.Environment, b.Environment), a.StartsAt.Compare(b.StartsAt), cmp.Compare(a.Key, b.Key))
	})
	events := make([]rollout.Event, len(rows))
	for i, r := range rows {
		e, err := rolloutEventFromRow(r)
		if err != nil {
			return nil, err
		}
		events[i] = e
	}
	return events, nil
}

// GetEvent returns event key of env. It implements rollout.Store. It
// returns a KindNotFound error if there is none and a KindInternal error if
// the database fails.
func (db *DB) GetEvent(ctx context.Context, env, key string) (rollout.Event, error) {
	row, err := getRolloutEvent(db.gorm.WithContext(ctx), env, key)
	if err != nil {
		return rollout.Event{}, err
	}
	return rolloutEventFromRow(row)
}

func getRolloutEvent(tx *gorm.DB, env, key string) (rolloutEventRow, error) {
	var row rolloutEventRow
	if err := tx.Where("environment = ? AND key = ?", env, key).Take(&row).Error; err != nil {
		if notFound(err) {
			return row, solstice.Errorf(solstice.KindNotFound, "event %q not found in %q", key, env)
		}
		return row, internal("get event", err)
	}
	return row, nil
}

// PutEvent stores e like PutPlan stores a plan; its window columns come
// from e.Times(), and whether it is closed is kept. It implements
// rollout.Store.
//
// Errors: KindInvalid for an empty environment, key or UID, an unknown
// time zone, a window that does not end after it starts, or an impossible
// expect; KindNotFound for an unknown environment or a missing event to
// update; KindConflict when creating an existing event or reusing a UID;
// KindPreconditionFailed when the stored version is not expect;
// KindInternal otherwise.
func (db *DB) PutEvent(ctx context.Context, e rollout.Event, expect int64, audit []solstice.AuditEntry) (rollout.Event, error) {
	if e.Environment == "" || e.Key == "" || e.UID == "" {
		return rollout.Event{}, solstice.Errorf(solstice.KindInvalid, "store event: the environment, key and UID must not be empty")
	}
	if err := rolloutCheckExpect("store event "+e.Key, expect); err != nil {
		return rollout.Event{}, err
	}
	if err := checkAudit(audit); err != nil {
		return rollout.Event{}, err
	}
	times, err := e.Times()
	if err != nil {
		return rollout.Event{}, err
	}
	if !times.End.After(times.Start) {
		return rollout.Event{}, solstice.Errorf(solstice.KindInvalid, "store event %s: its window must end after it starts", e.Key)
	}
	if times.Close.Before(times.Start) { // cancelled before it started: an empty window
		times.Close = times.Start
	}
	now := db.now()
	var stored rollout.Event
	err = db.transaction(ctx, "store event", func(tx *gorm.DB) error {
		if expect == flags.AnyVersion {
			row, err := getRolloutEvent(tx, e.Environment, e.Key)
			if err != nil {
				return err
			}
			expect = row.Version
		}
		e.Version, e.UpdatedAt = expect+1, now
		if expect == 0 {
			e.CreatedAt = now
		}
		doc, err := json.Marshal(e)
		if err != nil {
			return solstice.Errorf(solstice.KindInvalid, "event %s cannot be stored: %v", e.Key, err)
		}
		row := rolloutEventRow{Environment: e.Environment, Key: e.Key, UID: e.UID, StartsAt: dbTime(times.Start), EndsAt: dbTime(times.Close),
			Version: e.Version, Event: string(doc), CreatedAt: e.CreatedAt, UpdatedAt: now}
		if expect == 0 {
			if _, err := getEnvironment(tx, e.Environment); err != nil {
				return err
			}
			if err := tx.Create(&row).Error; err != nil {
				if uniqueViolation(err) {
					return solstice.Errorf(solstice.KindConflict, "event %q (uid %s) already exists in %q", e.Key, e.UID, e.Environment)
				}
				return internal("create event", err)
			}
		} else {
			res := tx.Model(&rolloutEventRow{}).Where("environment = ? AND key = ? AND version = ?", e.Environment, e.Key, expect).
				Updates(map[string]any{"uid": row.UID, "starts_at": row.StartsAt, "ends_at": row.EndsAt, "version": row.Version, "event": row.Event, "updated_at": now})
			if res.Error != nil {
				if uniqueViolation(res.Error) {
					return solstice.Errorf(solstice.KindConflict, "event uid %s is already used", e.UID)
				}
				return internal("update event", res.Error)
			}
			if res.RowsAffected == 0 {
				cur, err := getRolloutEvent(tx, e.Environment, e.Key)
				if err != nil {
					return err
				}
				return solstice.Errorf(solstice.KindPreconditionFailed, "event %q is at version %d, not %d: reload and retry", e.Key, cur.Version, expect)
			}
		}
		if err := insertAudit(tx, audit, now); err != nil {
			return err
		}
		cur, err := getRolloutEvent(tx, e.Environment, e.Key)
		if err != nil {
			return err
		}
		stored, err = rolloutEventFromRow(cur)
		return err
	})
	if err != nil {
		return rollout.Event{}, err
	}
	return stored, nil
}

// DeleteEvent removes event key of env like DeletePlan removes a plan. The
// records of its changes stay. It implements rollout.Store.
func (db *DB) DeleteEvent(ctx context.Context, env, key string, expect int64, audit solstice.AuditEntry) error {
	if err := rolloutCheckExpect("delete event "+key, expect); err != nil {
		return err
	}
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "delete event", func(tx *gorm.DB) error {
		q := tx.Where("environment = ? AND key = ?", env, key)
		if expect != flags.AnyVersion {
			q = q.Where("version = ?", expect)
		}
		res := q.Delete(&rolloutEventRow{})
		if res.Error != nil {
			return internal("delete event", res.Error)
		}
		if res.RowsAffected == 0 {
			cur, err := getRolloutEvent(tx, env, key)
			if err != nil {
				return err
			}
			return solstice.Errorf(solstice.KindPreconditionFailed, "event %q is at version %d, not %d: reload and retry", key, cur.Version, expect)
		}
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
}

// ---- scheduled changes ----

// ClaimChange claims the change r.ID for r.ClaimedBy. It implements
// rollout.Store: a new change is inserted (Status claimed, Attempt 1) with
// an INSERT that does nothing on a duplicate key, and a claimed change is
// taken over, when its claim is older than staleBefore or was made by the
// same claimant, with an UPDATE conditional on its attempt; so of several
// claimants exactly one gets true. It returns the stored record and false
// when the change is finished or someone else's claim is fresh.
//
// Errors: KindInvalid for a record without ID, environment, event UID,
// kind or claimant; KindNotFound for an unknown environment; KindInternal
// otherwise.
func (db *DB) ClaimChange(ctx context.Context, r rollout.Record, staleBefore time.Time) (rollout.Record, bool, error) {
	if r.ID == "" || r.Environment == "" || r.EventUID == "" || r.Kind == "" || r.ClaimedBy == "" {
		return rollout.Record{}, false, solstice.Errorf(solstice.KindInvalid, "claim change %q: the ID, environment, event UID, kind and claimant must not be empty", r.ID)
	}
	r.Status, r.Attempt, r.AppliedAt, r.Late, r.Writes, r.Outcome = rollout.StatusClaimed, 1, time.Time{}, 0, nil, ""
	row, err := rolloutChangeToRow(r)
	if err != nil {
		return rollout.Record{}, false, err
	}
	g := db.gorm.WithContext(ctx)
	res := g.Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
	switch {
	case res.Error != nil && foreignKeyViolation(res.Error):
		return rollout.Record{}, false, solstice.Errorf(solstice.KindNotFound, "environment %q not found", r.Environment)
	case res.Error != nil:
		return rollout.Record{}, false, internal("claim change", res.Error)
	case res.RowsAffected == 1:
		stored, err := rolloutChangeFromRow(row)
		return stored, err == nil, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		var cur rolloutChangeRow
		if err := g.Where("id = ?", r.ID).Take(&cur).Error; err != nil {
			return rollout.Record{}, false, internal("claim change", err)
		}
		stored, err := rolloutChangeFromRow(cur)
		if err != nil {
			return rollout.Record{}, false, err
		}
		if stored.Status != rollout.StatusClaimed || !stored.ClaimedAt.Before(staleBefore) && stored.ClaimedBy != r.ClaimedBy {
			return stored, false, nil
		}
		next := stored
		next.Attempt, next.ClaimedBy, next.ClaimedAt = stored.Attempt+1, r.ClaimedBy, r.ClaimedAt
		row, err := rolloutChangeToRow(next)
		if err != nil {
			return rollout.Record{}, false, err
		}
		res := g.Model(&rolloutChangeRow{}).Where("id = ? AND status = ? AND attempt = ?", r.ID, string(rollout.StatusClaimed), stored.Attempt).
			Updates(map[string]any{"attempt": row.Attempt, "claimed_by": row.ClaimedBy, "claimed_at": row.ClaimedAt, "record": row.Record})
		if res.Error != nil {
			return rollout.Record{}, false, internal("claim change", res.Error)
		}
		if res.RowsAffected == 1 {
			next, err := rolloutChangeFromRow(row)
			return next, err == nil, err
		}
	}
	var cur rolloutChangeRow
	if err := g.Where("id = ?", r.ID).Take(&cur).Error; err != nil {
		return rollout.Record{}, false, internal("claim change", err)
	}
	stored, err := rolloutChangeFromRow(cur)
	return stored, false, err
}

// FinishChange records the outcome of the change r.ID if it is still
// claimed at r.Attempt, with the audit entries, in one transaction; the
// end of an event also closes the event. It implements rollout.Store.
//
// Errors: KindInvalid for a status that is not final or a record that
// cannot be encoded; KindConflict, storing nothing, when the claim was
// lost (the change is finished or claimed again); KindInternal otherwise.
func (db *DB) FinishChange(ctx context.Context, r rollout.Record, audit []solstice.AuditEntry) (rollout.Record, error) {
	if r.Status == rollout.StatusClaimed || r.Status == "" {
		return rollout.Record{}, solstice.Errorf(solstice.KindInvalid, "finish change %s: status %q is not final", r.ID, r.Status)
	}
	if err := checkAudit(audit); err != nil {
		return rollout.Record{}, err
	}
	row, err := rolloutChangeToRow(r)
	if err != nil {
		return rollout.Record{}, err
	}
	now := db.now()
	err = db.transaction(ctx, "finish change", func(tx *gorm.DB) error {
		res := tx.Model(&rolloutChangeRow{}).Where("id = ? AND status = ? AND attempt = ?", r.ID, string(rollout.StatusClaimed), r.Attempt).
			Updates(map[string]any{"status": row.Status, "applied_at": row.AppliedAt, "record": row.Record})
		if res.Error != nil {
			return internal("finish change", res.Error)
		}
		if res.RowsAffected == 0 {
			return solstice.Errorf(solstice.KindConflict, "change %s is no longer claimed at attempt %d: another scheduler took it over", r.ID, r.Attempt)
		}
		if r.Kind == rollout.KindEventEnd {
			err := tx.Model(&rolloutEventRow{}).Where("environment = ? AND uid = ?", r.Environment, r.EventUID).Update("closed", true).Error
			if err != nil {
				return internal("close event", err)
			}
		}
		return insertAudit(tx, audit, now)
	})
	if err != nil {
		return rollout.Record{}, err
	}
	return rolloutChangeFromRow(row)
}

// ListChanges returns the records f selects, sorted by due time and ID. It
// implements rollout.Store. It returns a KindInternal error if the
// database fails.
func (db *DB) ListChanges(ctx context.Context, f rollout.RecordFilter) ([]rollout.Record, error) {
	q := db.gorm.WithContext(ctx)
	if f.Environment != "" {
		q = q.Where("environment = ?", f.Environment)
	}
	if f.EventUID != "" {
		q = q.Where("event_uid = ?", f.EventUID)
	}
	if !f.From.IsZero() {
		q = q.Where("due_at >= ?", dbTime(f.From))
	}
	if !f.To.IsZero() {
		q = q.Where("due_at < ?", dbTime(f.To))
	}
	var rows []rolloutChangeRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, internal("list changes", err)
	}
	recs := make([]rollout.Record, len(rows))
	for i, row := range rows {
		r, err := rolloutChangeFromRow(row)
		if err != nil {
			return nil, err
		}
		recs[i] = r
	}
	slices.SortFunc(recs, func(a, b rollout.Record) int { return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.ID, b.ID)) })
	return recs, nil
}
