package store

import (
	"context"

	"github.com/solsticehq/solstice"
)

// Paging limits of ListAudit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// ListAudit returns the audit entries that match every set field of f,
// newest (highest ID) first: Environment, Resource, Action and Actor (the
// actor's name) match exactly, Since is inclusive, Until exclusive,
// BeforeID pages. At most f.Limit entries are returned (DefaultAuditLimit
// when 0, at most MaxAuditLimit). It returns a KindInvalid error for a
// negative limit or ID and a KindInternal error if the database fails.
func (db *DB) ListAudit(ctx context.Context, f solstice.AuditFilter) ([]solstice.AuditEntry, error) {
	if f.Limit < 0 || f.BeforeID < 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "negative audit limit or id")
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)

	q := db.gorm.WithContext(ctx)
	if f.Environment != "" {
		q = q.Where("environment = ?", f.Environment)
	}
	if f.Resource != "" {
		q = q.Where("resource = ?", f.Resource)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if f.Actor != "" {
		q = q.Where("actor_name = ?", f.Actor)
	}
	if !f.Since.IsZero() {
		q = q.Where("time >= ?", dbTime(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where("time < ?", dbTime(f.Until))
	}
	if f.BeforeID > 0 {
		q = q.Where("id < ?", f.BeforeID)
	}
	var rows []auditRow
	if err := q.Order("id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, internal("list audit entries", err)
	}
	entries := make([]solstice.AuditEntry, len(rows))
	for i, r := range rows {
		entries[i] = auditFromRow(r)
	}
	return entries, nil
}
