package store

import (
	"encoding/json"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
)

// The row types mirror the tables of package migrations, which own the
// schema; gorm only maps them. Times are never filled in by gorm
// (autoCreateTime:false): the callers' injected clocks decide them. JSON
// columns are strings so that both drivers store the bytes unchanged.

type environmentRow struct {
	Name        string `gorm:"primaryKey"`
	Description string
	Protected   bool
	Head        int64
	CreatedAt   time.Time `gorm:"autoCreateTime:false"`
}

func (environmentRow) TableName() string { return "environments" }

func environmentFromRow(r environmentRow) flags.Environment {
	return flags.Environment{
		Name:        r.Name,
		Description: r.Description,
		Protected:   r.Protected,
		Head:        r.Head,
		CreatedAt:   r.CreatedAt.UTC(),
	}
}

type flagRow struct {
	Key         string `gorm:"primaryKey"`
	Name        string
	Description string
	Tags        string // a JSON array of strings
	Type        string
	Schema      *string // JSON; NULL when the flag has none
	Version     int64
	CreatedAt   time.Time `gorm:"autoCreateTime:false"`
	UpdatedAt   time.Time `gorm:"autoUpdateTime:false"`
}

func (flagRow) TableName() string { return "flags" }

func flagToRow(f flags.Flag) (flagRow, error) {
	tags := f.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return flagRow{}, err
	}
	return flagRow{
		Key:         f.Key,
		Name:        f.Name,
		Description: f.Description,
		Tags:        string(tagsJSON),
		Type:        string(f.Type),
		Schema:      optionalJSON(f.Schema),
		Version:     f.Version,
		CreatedAt:   dbTime(f.CreatedAt),
		UpdatedAt:   dbTime(f.UpdatedAt),
	}, nil
}

func flagFromRow(r flagRow) (flags.Flag, error) {
	f := flags.Flag{
		Key:         r.Key,
		Name:        r.Name,
		Description: r.Description,
		Type:        flags.Type(r.Type),
		Version:     r.Version,
		CreatedAt:   r.CreatedAt.UTC(),
		UpdatedAt:   r.UpdatedAt.UTC(),
	}
	if err := json.Unmarshal([]byte(r.Tags), &f.Tags); err != nil {
		return flags.Flag{}, err
	}
	if len(f.Tags) == 0 {
		f.Tags = nil // as written: the JSON field is omitempty
	}
	if r.Schema != nil {
		f.Schema = json.RawMessage(*r.Schema)
	}
	return f, nil
}

type revisionRow struct {
	Environment string `gorm:"primaryKey"`
	Number      int64  `gorm:"primaryKey;autoIncrement:false"`
	Author      string
	Message     string
	CreatedAt   time.Time `gorm:"autoCreateTime:false"`
	Diff        string    // a JSON array of flags.Change
}

func (revisionRow) TableName() string { return "revisions" }

func revisionFromRow(r revisionRow) (flags.Revision, error) {
	rev := flags.Revision{
		Environment: r.Environment,
		Number:      r.Number,
		Author:      r.Author,
		Message:     r.Message,
		CreatedAt:   r.CreatedAt.UTC(),
	}
	if err := json.Unmarshal([]byte(r.Diff), &rev.Diff); err != nil {
		return flags.Revision{}, err
	}
	return rev, nil
}

// objectVersionRow is one entry of an object's history; a nil Content
// records its removal.
type objectVersionRow struct {
	Environment string `gorm:"primaryKey"`
	Kind        string `gorm:"primaryKey"`
	Key         string `gorm:"primaryKey"`
	Revision    int64  `gorm:"primaryKey;autoIncrement:false"`
	Content     *string
}

func (objectVersionRow) TableName() string { return "object_versions" }

// objectRow is the current content of an object.
type objectRow struct {
	Environment string `gorm:"primaryKey"`
	Kind        string `gorm:"primaryKey"`
	Key         string `gorm:"primaryKey"`
	Revision    int64
	Content     string
}

func (objectRow) TableName() string { return "objects" }

func objectFromRow(r objectRow) flags.Object {
	return flags.Object{
		Kind:     flags.ObjectKind(r.Kind),
		Key:      r.Key,
		Content:  json.RawMessage(r.Content),
		Revision: r.Revision,
	}
}

type auditRow struct {
	ID          int64 `gorm:"primaryKey;autoIncrement"`
	Time        time.Time
	ActorName   string
	ActorKind   string
	TokenID     string
	Address     string
	Action      string
	Environment string
	Resource    string
	Revision    int64
	Details     *string // JSON
}

func (auditRow) TableName() string { return "audit_log" }

func auditToRow(e solstice.AuditEntry) auditRow {
	return auditRow{
		Time:        dbTime(e.Time),
		ActorName:   e.Actor.Name,
		ActorKind:   e.Actor.Kind,
		TokenID:     e.Actor.TokenID,
		Address:     e.Actor.Address,
		Action:      e.Action,
		Environment: e.Environment,
		Resource:    e.Resource,
		Revision:    e.Revision,
		Details:     optionalJSON(e.Details),
	}
}

func auditFromRow(r auditRow) solstice.AuditEntry {
	e := solstice.AuditEntry{
		ID:   r.ID,
		Time: r.Time.UTC(),
		Actor: solstice.Actor{
			Name:    r.ActorName,
			Kind:    r.ActorKind,
			TokenID: r.TokenID,
			Address: r.Address,
		},
		Action:      r.Action,
		Environment: r.Environment,
		Resource:    r.Resource,
		Revision:    r.Revision,
	}
	if r.Details != nil {
		e.Details = json.RawMessage(*r.Details)
	}
	return e
}

type tokenRow struct {
	ID          string `gorm:"primaryKey"`
	Name        string
	Kind        string
	Role        string
	Environment *string // NULL for admin tokens
	Hash        []byte
	CreatedBy   string
	CreatedAt   time.Time `gorm:"autoCreateTime:false"`
	LastUsedAt  *time.Time
	RevokedAt   *time.Time
}

func (tokenRow) TableName() string { return "tokens" }

func tokenToRow(t auth.Token) tokenRow {
	r := tokenRow{
		ID:         t.ID,
		Name:       t.Name,
		Kind:       string(t.Kind),
		Role:       string(t.Role),
		Hash:       t.Hash,
		CreatedBy:  t.CreatedBy,
		CreatedAt:  dbTime(t.CreatedAt),
		LastUsedAt: dbTimePtr(t.LastUsedAt),
		RevokedAt:  dbTimePtr(t.RevokedAt),
	}
	if t.Environment != "" {
		r.Environment = &t.Environment
	}
	return r
}

func tokenFromRow(r tokenRow) auth.Token {
	t := auth.Token{
		ID:        r.ID,
		Name:      r.Name,
		Kind:      auth.TokenKind(r.Kind),
		Role:      auth.Role(r.Role),
		Hash:      r.Hash,
		CreatedBy: r.CreatedBy,
		CreatedAt: r.CreatedAt.UTC(),
	}
	if r.Environment != nil {
		t.Environment = *r.Environment
	}
	if r.LastUsedAt != nil {
		u := r.LastUsedAt.UTC()
		t.LastUsedAt = &u
	}
	if r.RevokedAt != nil {
		u := r.RevokedAt.UTC()
		t.RevokedAt = &u
	}
	return t
}

// optionalJSON maps an absent JSON document to NULL.
func optionalJSON(doc json.RawMessage) *string {
	if len(doc) == 0 {
		return nil
	}
	s := string(doc)
	return &s
}
