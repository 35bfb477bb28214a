package store

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/webhook"
)

var _ webhook.Outbox = (*DB)(nil)

// MaxClaimLimit bounds the messages one Claim returns: a dispatcher that
// asks for more gets this many and claims the rest on its next call.
const MaxClaimLimit = batchSize

// maxLastError bounds the stored error of a failed attempt: a receiver's
// error page must not bloat the queue.
const maxLastError = 2000

type webhookMessageRow struct {
	ID            string `gorm:"primaryKey"`
	Endpoint      string
	Event         string
	Payload       string    // JSON, byte for byte as queued
	CreatedAt     time.Time `gorm:"autoCreateTime:false"`
	Attempts      int
	NextAttemptAt time.Time
	ClaimedAt     *time.Time
	DeliveredAt   *time.Time
	GivenUpAt     *time.Time
	LastError     string
}

func (webhookMessageRow) TableName() string { return "webhook_messages" }

func pendingFromRow(r webhookMessageRow) webhook.Pending {
	return webhook.Pending{
		Message: webhook.Message{
			ID:       r.ID,
			Endpoint: r.Endpoint,
			Event:    r.Event,
			Payload:  json.RawMessage(r.Payload),
		},
		CreatedAt: r.CreatedAt.UTC(),
		Attempts:  r.Attempts,
		LastError: r.LastError,
	}
}

// checkMessages rejects messages that could never be sent or told apart.
func checkMessages(msgs []webhook.Message) error {
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		switch {
		case m.ID == "":
			return solstice.Errorf(solstice.KindInvalid, "webhook message without an id")
		case m.Endpoint == "" || m.Event == "":
			return solstice.Errorf(solstice.KindInvalid, "webhook message %q: endpoint and event must not be empty", m.ID)
		case !json.Valid(m.Payload):
			return solstice.Errorf(solstice.KindInvalid, "webhook message %q: the payload is not valid JSON", m.ID)
		case seen[m.ID]:
			return solstice.Errorf(solstice.KindInvalid, "webhook message %q is queued twice", m.ID)
		}
		seen[m.ID] = true
	}
	return nil
}

// insertMessages queues msgs (checked by checkMessages), due at now.
func insertMessages(tx *gorm.DB, msgs []webhook.Message, now time.Time) error {
	if len(msgs) == 0 {
		return nil
	}
	rows := make([]webhookMessageRow, len(msgs))
	for i, m := range msgs {
		rows[i] = webhookMessageRow{
			ID: m.ID, Endpoint: m.Endpoint, Event: m.Event, Payload: string(m.Payload),
			CreatedAt: now, NextAttemptAt: now,
		}
	}
	if err := tx.CreateInBatches(rows, batchSize).Error; err != nil {
		if uniqueViolation(err) {
			return solstice.Errorf(solstice.KindConflict, "a webhook message with one of the ids %v is already queued", messageIDs(msgs))
		}
		return internal("queue webhook messages", err)
	}
	return nil
}

func messageIDs(msgs []webhook.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// Claim returns up to limit (at most MaxClaimLimit) messages due at now,
// oldest first: neither delivered nor given up, next attempt at or before
// now, and not claimed after now-lease. It marks them claimed at now in the
// same transaction. On PostgreSQL the rows are locked with SKIP LOCKED, so
// concurrent dispatchers take different messages without waiting; on
// SQLite the transaction holds the database's write lock. Either way no two
// Claims return the same message within the lease. It implements
// webhook.Outbox.
//
// It returns a KindInvalid error for a limit below 1 or a negative lease
// and a KindInternal error if the database fails.
func (db *DB) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]webhook.Pending, error) {
	if limit < 1 || lease < 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "claim webhook messages: limit %d and lease %s must be positive", limit, lease)
	}
	limit = min(limit, MaxClaimLimit)
	now = dbTime(now)
	cutoff := dbTime(now.Add(-lease))
	var rows []webhookMessageRow
	err := db.transaction(ctx, "claim webhook messages", func(tx *gorm.DB) error {
		rows = nil
		err := tx.Clauses(clause.Locking{Strength: "UPDATE", Options: "SKIP LOCKED"}).
			Where("delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= ?", now).
			Where("(claimed_at IS NULL OR claimed_at <= ?)", cutoff).
			Order("created_at, id").Limit(limit).Find(&rows).Error
		if err != nil {
			return internal("claim webhook messages", err)
		}
		if len(rows) == 0 {
			return nil
		}
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		if err := tx.Model(&webhookMessageRow{}).Where("id IN ?", ids).Update("claimed_at", now).Error; err != nil {
			return internal("claim webhook messages", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pending := make([]webhook.Pending, len(rows))
	for i, r := range rows {
		pending[i] = pendingFromRow(r)
	}
	return pending, nil
}

// Delivered records that the message id was delivered at the given time;
// it is never claimed again. A message already delivered keeps its first
// delivery time. It implements webhook.Outbox. It returns a KindNotFound
// error for an unknown id and a KindInternal error if the database fails.
func (db *DB) Delivered(ctx context.Context, id string, at time.Time) error {
	res := db.gorm.WithContext(ctx).Model(&webhookMessageRow{}).
		Where("id = ? AND delivered_at IS NULL", id).
		Updates(map[string]any{"delivered_at": dbTime(at), "claimed_at": nil})
	if res.Error != nil {
		return internal("record webhook delivery", res.Error)
	}
	if res.RowsAffected == 0 {
		return db.messageMissing(ctx, id)
	}
	return nil
}

// Failed records a failed attempt to deliver the message id at the given
// time: one more attempt, reason as its last error (cut to 2000 bytes),
// the claim released, and the next attempt due at next, or, when next is
// zero, the message given up at the given time. A message already
// delivered or given up is left as it is: a dispatcher whose lease ran out
// may report late. It implements webhook.Outbox. It returns a KindNotFound
// error for an unknown id and a KindInternal error if the database fails.
func (db *DB) Failed(ctx context.Context, id string, at time.Time, reason string, next time.Time) error {
	set := map[string]any{
		"attempts":   gorm.Expr("attempts + 1"),
		"last_error": truncateUTF8(reason, maxLastError),
		"claimed_at": nil,
	}
	if next.IsZero() {
		set["given_up_at"] = dbTime(at)
	} else {
		set["next_attempt_at"] = dbTime(next)
	}
	res := db.gorm.WithContext(ctx).Model(&webhookMessageRow{}).
		Where("id = ? AND delivered_at IS NULL AND given_up_at IS NULL", id).Updates(set)
	if res.Error != nil {
		return internal("record webhook failure", res.Error)
	}
	if res.RowsAffected == 0 {
		return db.messageMissing(ctx, id)
	}
	return nil
}

// messageMissing returns a KindNotFound error if the message id does not
// exist, and nil if it does.
func (db *DB) messageMissing(ctx context.Context, id string) error {
	var n int64
	if err := db.gorm.WithContext(ctx).Model(&webhookMessageRow{}).Where("id = ?", id).Count(&n).Error; err != nil {
		return internal("get webhook message", err)
	}
	if n == 0 {
		return solstice.Errorf(solstice.KindNotFound, "webhook message %q not found", id)
	}
	return nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a character,
// after replacing invalid UTF-8 (which PostgreSQL's text refuses).
func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
