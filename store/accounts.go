package store

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/review"
)

var (
	_ accounts.Store = (*DB)(nil)
	_ review.Store   = (*DB)(nil)
)

// The tables of migration 00005: users, their roles, sessions and change
// requests.

type userRow struct {
	Username           string `gorm:"primaryKey"`
	DisplayName        string
	PasswordHash       string
	MustChangePassword bool
	Disabled           bool
	CreatedAt          time.Time `gorm:"autoCreateTime:false"`
	UpdatedAt          time.Time `gorm:"autoUpdateTime:false"`
	LastLoginAt        *time.Time
}

func (userRow) TableName() string { return "users" }

type userRoleRow struct {
	Username    string `gorm:"primaryKey"`
	Environment string `gorm:"primaryKey"`
	Role        string
}

func (userRoleRow) TableName() string { return "user_roles" }

type sessionRow struct {
	Hash       []byte `gorm:"primaryKey"`
	Username   string
	CreatedAt  time.Time `gorm:"autoCreateTime:false"`
	LastSeenAt time.Time
	ExpiresAt  time.Time
	Address    string
	UserAgent  string
}

func (sessionRow) TableName() string { return "sessions" }

type changeRequestRow struct {
	ID              int64 `gorm:"primaryKey;autoIncrement"`
	Environment     string
	Kind            string
	Flag            string
	TargetRevision  int64
	BaseRevision    int64
	BeforeContent   *string // JSON
	AfterContent    *string // JSON
	Message         string
	Author          string
	Status          string
	CreatedAt       time.Time `gorm:"autoCreateTime:false"`
	DecidedBy       string
	DecidedAt       *time.Time
	Comment         string
	AppliedRevision int64
}

func (changeRequestRow) TableName() string { return "change_requests" }

func userToRow(u accounts.User) userRow {
	return userRow{
		Username: u.Username, DisplayName: u.DisplayName, PasswordHash: u.PasswordHash,
		MustChangePassword: u.MustChangePassword, Disabled: u.Disabled,
		CreatedAt: dbTime(u.CreatedAt), UpdatedAt: dbTime(u.UpdatedAt), LastLoginAt: dbTimePtr(u.LastLoginAt),
	}
}

func userFromRows(r userRow, roles []userRoleRow) accounts.User {
	u := accounts.User{
		Username: r.Username, DisplayName: r.DisplayName, PasswordHash: r.PasswordHash,
		MustChangePassword: r.MustChangePassword, Disabled: r.Disabled,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Roles: map[string]accounts.Role{},
	}
	if r.LastLoginAt != nil {
		t := r.LastLoginAt.UTC()
		u.LastLoginAt = &t
	}
	for _, rr := range roles {
		u.Roles[rr.Environment] = accounts.Role(rr.Role)
	}
	return u
}

func roleRows(u accounts.User) []userRoleRow {
	rows := make([]userRoleRow, 0, len(u.Roles))
	for env, role := range u.Roles {
		rows = append(rows, userRoleRow{Username: u.Username, Environment: env, Role: string(role)})
	}
	return rows
}

// CreateUser stores u with its roles and records audit in the same
// transaction. It returns a KindConflict error if the username is taken and
// a KindInvalid error for a row the schema refuses (an unknown role).
func (db *DB) CreateUser(ctx context.Context, u accounts.User, audit solstice.AuditEntry) error {
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "create user", func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&userRow{}).Where("username = ?", u.Username).Count(&n).Error; err != nil {
			return internal("create user", err)
		}
		if n > 0 {
			return solstice.Errorf(solstice.KindConflict, "user %q already exists", u.Username)
		}
		row := userToRow(u)
		if err := tx.Create(&row).Error; err != nil {
			if uniqueViolation(err) {
				return solstice.Errorf(solstice.KindConflict, "user %q already exists", u.Username)
			}
			return internal("create user", err)
		}
		if err := insertRoles(tx, u); err != nil {
			return err
		}
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
}

func insertRoles(tx *gorm.DB, u accounts.User) error {
	rows := roleRows(u)
	if len(rows) == 0 {
		return nil
	}
	if err := tx.Create(&rows).Error; err != nil {
		return internal("store user roles", err)
	}
	return nil
}

// UpdateUser replaces the display name, password hash, flags, update time
// and roles of u.Username, deletes all its sessions when endSessions is
// set, and records audit, in one transaction. It returns a KindNotFound
// error for an unknown user.
func (db *DB) UpdateUser(ctx context.Context, u accounts.User, endSessions bool, audit solstice.AuditEntry) error {
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "update user", func(tx *gorm.DB) error {
		res := tx.Model(&userRow{}).Where("username = ?", u.Username).Updates(map[string]any{
			"display_name": u.DisplayName, "password_hash": u.PasswordHash,
			"must_change_password": u.MustChangePassword, "disabled": u.Disabled, "updated_at": dbTime(u.UpdatedAt),
		})
		if res.Error != nil {
			return internal("update user", res.Error)
		}
		if res.RowsAffected == 0 {
			return solstice.Errorf(solstice.KindNotFound, "user %q not found", u.Username)
		}
		if err := tx.Where("username = ?", u.Username).Delete(&userRoleRow{}).Error; err != nil {
			return internal("update user roles", err)
		}
		if err := insertRoles(tx, u); err != nil {
			return err
		}
		if endSessions {
			if err := tx.Where("username = ?", u.Username).Delete(&sessionRow{}).Error; err != nil {
				return internal("end user sessions", err)
			}
		}
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
}

// GetUser returns the user username with its roles. It returns a
// KindNotFound error if there is none.
func (db *DB) GetUser(ctx context.Context, username string) (accounts.User, error) {
	g := db.gorm.WithContext(ctx)
	var row userRow
	if err := g.Where("username = ?", username).Take(&row).Error; err != nil {
		if notFound(err) {
			return accounts.User{}, solstice.Errorf(solstice.KindNotFound, "user %q not found", username)
		}
		return accounts.User{}, internal("get user", err)
	}
	var roles []userRoleRow
	if err := g.Where("username = ?", username).Find(&roles).Error; err != nil {
		return accounts.User{}, internal("get user roles", err)
	}
	return userFromRows(row, roles), nil
}

// ListUsers returns every user with its roles, sorted by username. It
// returns a KindInternal error if the database fails.
func (db *DB) ListUsers(ctx context.Context) ([]accounts.User, error) {
	g := db.gorm.WithContext(ctx)
	var rows []userRow
	if err := g.Order("username").Find(&rows).Error; err != nil {
		return nil, internal("list users", err)
	}
	var roles []userRoleRow
	if err := g.Order("username, environment").Find(&roles).Error; err != nil {
		return nil, internal("list user roles", err)
	}
	byUser := map[string][]userRoleRow{}
	for _, r := range roles {
		byUser[r.Username] = append(byUser[r.Username], r)
	}
	users := make([]accounts.User, len(rows))
	for i, r := range rows {
		users[i] = userFromRows(r, byUser[r.Username])
	}
	return users, nil
}

// CountUsers returns the number of users. It returns a KindInternal error
// if the database fails.
func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int64
	if err := db.gorm.WithContext(ctx).Model(&userRow{}).Count(&n).Error; err != nil {
		return 0, internal("count users", err)
	}
	return int(n), nil
}

// RecordLogin stores a new session and sets the user's last login to its
// creation time, in one transaction. It returns a KindNotFound error for an
// unknown user and a KindConflict error for a session hash that exists.
func (db *DB) RecordLogin(ctx context.Context, s accounts.Session) error {
	return db.transaction(ctx, "record login", func(tx *gorm.DB) error {
		res := tx.Model(&userRow{}).Where("username = ?", s.Username).Update("last_login_at", dbTime(s.CreatedAt))
		if res.Error != nil {
			return internal("record login", res.Error)
		}
		if res.RowsAffected == 0 {
			return solstice.Errorf(solstice.KindNotFound, "user %q not found", s.Username)
		}
		row := sessionRow{
			Hash: s.Hash, Username: s.Username, CreatedAt: dbTime(s.CreatedAt), LastSeenAt: dbTime(s.LastSeenAt),
			ExpiresAt: dbTime(s.ExpiresAt), Address: s.Address, UserAgent: s.UserAgent,
		}
		if err := tx.Create(&row).Error; err != nil {
			if uniqueViolation(err) {
				return solstice.Errorf(solstice.KindConflict, "session exists")
			}
			return internal("create session", err)
		}
		return nil
	})
}

// SessionByHash returns the session whose hash is hash. It returns a
// KindNotFound error if there is none.
func (db *DB) SessionByHash(ctx context.Context, hash []byte) (accounts.Session, error) {
	var row sessionRow
	if err := db.gorm.WithContext(ctx).Where("hash = ?", hash).Take(&row).Error; err != nil {
		if notFound(err) {
			return accounts.Session{}, solstice.Errorf(solstice.KindNotFound, "session not found")
		}
		return accounts.Session{}, internal("get session", err)
	}
	return accounts.Session{
		Hash: row.Hash, Username: row.Username, CreatedAt: row.CreatedAt.UTC(), LastSeenAt: row.LastSeenAt.UTC(),
		ExpiresAt: row.ExpiresAt.UTC(), Address: row.Address, UserAgent: row.UserAgent,
	}, nil
}

// TouchSession moves a session's last activity forward to at (never back).
// An unknown session is not an error; it returns a KindInternal error if the
// database fails.
func (db *DB) TouchSession(ctx context.Context, hash []byte, at time.Time) error {
	at = dbTime(at)
	err := db.gorm.WithContext(ctx).Model(&sessionRow{}).Where("hash = ? AND last_seen_at < ?", hash, at).
		Update("last_seen_at", at).Error
	if err != nil {
		return internal("touch session", err)
	}
	return nil
}

// DeleteSession deletes one session; an unknown one is not an error. It
// returns a KindInternal error if the database fails.
func (db *DB) DeleteSession(ctx context.Context, hash []byte) error {
	if err := db.gorm.WithContext(ctx).Where("hash = ?", hash).Delete(&sessionRow{}).Error; err != nil {
		return internal("delete session", err)
	}
	return nil
}

// DeleteExpiredSessions deletes the sessions last seen before idleBefore or
// expiring at or before now, and returns how many it deleted. It returns a
// KindInternal error if the database fails.
func (db *DB) DeleteExpiredSessions(ctx context.Context, idleBefore, now time.Time) (int, error) {
	res := db.gorm.WithContext(ctx).Where("last_seen_at < ? OR expires_at <= ?", dbTime(idleBefore), dbTime(now)).
		Delete(&sessionRow{})
	if res.Error != nil {
		return 0, internal("delete expired sessions", res.Error)
	}
	return int(res.RowsAffected), nil
}

// ---- change requests ----

func changeRequestFromRow(r changeRequestRow) review.ChangeRequest {
	cr := review.ChangeRequest{
		ID: r.ID, Environment: r.Environment, Kind: review.Kind(r.Kind), Flag: r.Flag,
		TargetRevision: r.TargetRevision, BaseRevision: r.BaseRevision, Message: r.Message, Author: r.Author,
		Status: review.Status(r.Status), CreatedAt: r.CreatedAt.UTC(), DecidedBy: r.DecidedBy, Comment: r.Comment,
		AppliedRevision: r.AppliedRevision,
	}
	if r.BeforeContent != nil {
		cr.Before = json.RawMessage(*r.BeforeContent)
	}
	if r.AfterContent != nil {
		cr.After = json.RawMessage(*r.AfterContent)
	}
	if r.DecidedAt != nil {
		t := r.DecidedAt.UTC()
		cr.DecidedAt = &t
	}
	return cr
}

// CreateChangeRequest stores cr under a new ID and records audit, stamped
// with that ID as its resource, in the same transaction. It returns the ID,
// a KindNotFound error for an unknown environment, or a KindInvalid error
// for content that is not JSON.
func (db *DB) CreateChangeRequest(ctx context.Context, cr review.ChangeRequest, audit solstice.AuditEntry) (int64, error) {
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return 0, err
	}
	for _, doc := range []json.RawMessage{cr.Before, cr.After} {
		if len(doc) > 0 && !json.Valid(doc) {
			return 0, solstice.Errorf(solstice.KindInvalid, "change request content is not valid JSON")
		}
	}
	now := db.now()
	var id int64
	err := db.transaction(ctx, "create change request", func(tx *gorm.DB) error {
		if _, err := getEnvironment(tx, cr.Environment); err != nil {
			return err
		}
		row := changeRequestRow{
			Environment: cr.Environment, Kind: string(cr.Kind), Flag: cr.Flag, TargetRevision: cr.TargetRevision,
			BaseRevision: cr.BaseRevision, BeforeContent: optionalJSON(cr.Before), AfterContent: optionalJSON(cr.After),
			Message: cr.Message, Author: cr.Author, Status: string(cr.Status), CreatedAt: dbTime(cr.CreatedAt),
		}
		if err := tx.Create(&row).Error; err != nil {
			return internal("create change request", err)
		}
		id = row.ID
		audit.Resource = "change_request/" + strconv.FormatInt(id, 10)
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
	return id, err
}

// GetChangeRequest returns change request id. It returns a KindNotFound
// error if there is none.
func (db *DB) GetChangeRequest(ctx context.Context, id int64) (review.ChangeRequest, error) {
	var row changeRequestRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&row).Error; err != nil {
		if notFound(err) {
			return review.ChangeRequest{}, solstice.Errorf(solstice.KindNotFound, "change request #%d not found", id)
		}
		return review.ChangeRequest{}, internal("get change request", err)
	}
	return changeRequestFromRow(row), nil
}

// Paging limits of ListChangeRequests.
const (
	defaultChangeRequestLimit = 100
	maxChangeRequestLimit     = 1000
)

// ListChangeRequests returns the change requests matching every set field
// of f, newest first, at most f.Limit (100 when 0, at most 1000). It returns
// a KindInvalid error for a negative limit and a KindInternal error if the
// database fails.
func (db *DB) ListChangeRequests(ctx context.Context, f review.Filter) ([]review.ChangeRequest, error) {
	if f.Limit < 0 || f.BeforeID < 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "negative change request limit or id")
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultChangeRequestLimit
	}
	q := db.gorm.WithContext(ctx)
	if f.Environment != "" {
		q = q.Where("environment = ?", f.Environment)
	}
	if f.Flag != "" {
		q = q.Where("flag = ?", f.Flag)
	}
	if f.Author != "" {
		q = q.Where("author = ?", f.Author)
	}
	if f.Status != "" {
		q = q.Where("status = ?", string(f.Status))
	}
	if f.BeforeID > 0 {
		q = q.Where("id < ?", f.BeforeID)
	}
	var rows []changeRequestRow
	if err := q.Order("id DESC").Limit(min(limit, maxChangeRequestLimit)).Find(&rows).Error; err != nil {
		return nil, internal("list change requests", err)
	}
	out := make([]review.ChangeRequest, len(rows))
	for i, r := range rows {
		out[i] = changeRequestFromRow(r)
	}
	return out, nil
}

// UpdateChangeRequest stores cr's status, decision and applied revision if
// the stored status is from, and records audit (when not nil), in one
// transaction. It returns a KindNotFound error for an unknown request and a
// KindConflict error when its status is no longer from.
func (db *DB) UpdateChangeRequest(ctx context.Context, cr review.ChangeRequest, from review.Status, audit *solstice.AuditEntry) error {
	var entries []solstice.AuditEntry
	if audit != nil {
		entries = append(entries, *audit)
	}
	if err := checkAudit(entries); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "update change request", func(tx *gorm.DB) error {
		res := tx.Model(&changeRequestRow{}).Where("id = ? AND status = ?", cr.ID, string(from)).Updates(map[string]any{
			"status": string(cr.Status), "decided_by": cr.DecidedBy, "decided_at": dbTimePtr(cr.DecidedAt),
			"comment": cr.Comment, "applied_revision": cr.AppliedRevision,
		})
		if res.Error != nil {
			return internal("update change request", res.Error)
		}
		if res.RowsAffected == 0 {
			var row changeRequestRow
			if err := tx.Where("id = ?", cr.ID).Take(&row).Error; err != nil {
				if notFound(err) {
					return solstice.Errorf(solstice.KindNotFound, "change request #%d not found", cr.ID)
				}
				return internal("update change request", err)
			}
			return solstice.Errorf(solstice.KindConflict, "change request #%d is already %s", cr.ID, row.Status)
		}
		return insertAudit(tx, entries, now)
	})
}
