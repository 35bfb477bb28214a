package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
)

// touchInterval is how stale a token's last use must be before TouchToken
// writes a new one: a busy token costs one write a minute, not one per
// request.
const touchInterval = time.Minute

// CreateToken stores t and records audit in the same transaction (audit
// without a time is stamped with the store's clock). It returns a
// KindConflict error if a token with t's ID or hash exists, and a
// KindNotFound error if t is a server key for an unknown environment.
func (db *DB) CreateToken(ctx context.Context, t auth.Token, audit solstice.AuditEntry) error {
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "create token", func(tx *gorm.DB) error {
		if t.Environment != "" {
			if _, err := getEnvironment(tx, t.Environment); err != nil {
				return err
			}
		}
		var n int64
		if err := tx.Model(&tokenRow{}).Where("id = ?", t.ID).Count(&n).Error; err != nil {
			return internal("create token", err)
		}
		if n > 0 {
			return solstice.Errorf(solstice.KindConflict, "token %q already exists", t.ID)
		}
		row := tokenToRow(t)
		if err := tx.Create(&row).Error; err != nil {
			if uniqueViolation(err) {
				// The ID was free a moment ago: a concurrent create took
				// it, or (with 160+ bits of entropy, never) the secret.
				return solstice.Errorf(solstice.KindConflict, "token %q or its secret already exists", t.ID)
			}
			return internal("create token", err)
		}
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
}

// TokenByHash returns the token whose Hash equals hash, revoked or not. It
// returns a KindNotFound error if there is none.
func (db *DB) TokenByHash(ctx context.Context, hash []byte) (auth.Token, error) {
	var row tokenRow
	if err := db.gorm.WithContext(ctx).Where("hash = ?", hash).Take(&row).Error; err != nil {
		if notFound(err) {
			return auth.Token{}, solstice.Errorf(solstice.KindNotFound, "token not found")
		}
		return auth.Token{}, internal("get token by hash", err)
	}
	return tokenFromRow(row), nil
}

// GetToken returns the token id, revoked or not. It returns a KindNotFound
// error if there is none.
func (db *DB) GetToken(ctx context.Context, id string) (auth.Token, error) {
	row, err := getToken(db.gorm.WithContext(ctx), id)
	if err != nil {
		return auth.Token{}, err
	}
	return tokenFromRow(row), nil
}

func getToken(tx *gorm.DB, id string) (tokenRow, error) {
	var row tokenRow
	if err := tx.Where("id = ?", id).Take(&row).Error; err != nil {
		if notFound(err) {
			return tokenRow{}, solstice.Errorf(solstice.KindNotFound, "token %q not found", id)
		}
		return tokenRow{}, internal("get token", err)
	}
	return row, nil
}

// ListTokens returns every token, revoked or not, newest first. It returns
// a KindInternal error if the database fails.
func (db *DB) ListTokens(ctx context.Context) ([]auth.Token, error) {
	var rows []tokenRow
	if err := db.gorm.WithContext(ctx).Order("created_at DESC, id DESC").Find(&rows).Error; err != nil {
		return nil, internal("list tokens", err)
	}
	tokens := make([]auth.Token, len(rows))
	for i, r := range rows {
		tokens[i] = tokenFromRow(r)
	}
	return tokens, nil
}

// RevokeToken marks the token id revoked at the given time and records
// audit in the same transaction. It returns a KindNotFound error if there
// is no such token and a KindConflict error if it is already revoked.
func (db *DB) RevokeToken(ctx context.Context, id string, at time.Time, audit solstice.AuditEntry) error {
	if err := checkAudit([]solstice.AuditEntry{audit}); err != nil {
		return err
	}
	now := db.now()
	return db.transaction(ctx, "revoke token", func(tx *gorm.DB) error {
		res := tx.Model(&tokenRow{}).Where("id = ? AND revoked_at IS NULL", id).Update("revoked_at", dbTime(at))
		if res.Error != nil {
			return internal("revoke token", res.Error)
		}
		if res.RowsAffected == 0 {
			if _, err := getToken(tx, id); err != nil {
				return err
			}
			return solstice.Errorf(solstice.KindConflict, "token %q is already revoked", id)
		}
		return insertAudit(tx, []solstice.AuditEntry{audit}, now)
	})
}

// TouchToken records that the token id was used at the given time. It only
// writes when the recorded last use is more than a minute older, so uses
// are coalesced to one write a minute and a late call never moves the time
// back. An unknown id is not an error (the call is best effort); it returns
// a KindInternal error if the database fails.
func (db *DB) TouchToken(ctx context.Context, id string, at time.Time) error {
	at = dbTime(at)
	err := db.gorm.WithContext(ctx).Model(&tokenRow{}).
		Where("id = ? AND (last_used_at IS NULL OR last_used_at < ?)", id, at.Add(-touchInterval)).
		Update("last_used_at", at).Error
	if err != nil {
		return internal("touch token", err)
	}
	return nil
}
