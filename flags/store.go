package flags

import (
	"context"
	"encoding/json"

	"github.com/solsticehq/solstice"
)

// Store persists flags, per-environment objects and their revisions. It is
// implemented by package store (gorm on SQLite or PostgreSQL). Errors are
// *solstice.Error values: KindNotFound for a missing row (never a zero value
// with a nil error), KindConflict for a duplicate, KindPreconditionFailed for
// a failed expectation in a Write.
type Store interface {
	// Write applies w atomically: either everything in it is stored or
	// nothing is. It returns the appended revisions, in the order of
	// w.Revisions, with their numbers and diffs filled in.
	Write(ctx context.Context, w Write) ([]Revision, error)

	ListEnvironments(ctx context.Context) ([]Environment, error)
	GetEnvironment(ctx context.Context, name string) (Environment, error)

	GetFlag(ctx context.Context, key string) (Flag, error)
	ListFlags(ctx context.Context) ([]Flag, error) // sorted by key

	// GetObject returns the current content of one object of an environment.
	GetObject(ctx context.Context, env string, kind ObjectKind, key string) (Object, error)
	// ListObjects returns the current objects of one kind (all kinds when
	// kind is ""), sorted by kind then key.
	ListObjects(ctx context.Context, env string, kind ObjectKind) ([]Object, error)
	// ObjectsAt returns every object of the environment as it stood right
	// after revision n (0: the empty environment), sorted by kind then key.
	ObjectsAt(ctx context.Context, env string, n int64) ([]Object, error)

	GetRevision(ctx context.Context, env string, n int64) (Revision, error)
	// ListRevisions returns revisions newest first; BeforeNumber > 0 pages.
	ListRevisions(ctx context.Context, env string, f RevisionFilter) ([]Revision, error)

	ListAudit(ctx context.Context, f solstice.AuditFilter) ([]solstice.AuditEntry, error) // newest first
}

// Object is the current content of one flag configuration (a FlagState) or
// segment in one environment, with the revision that last wrote it. That
// revision number is the object's version: its ETag.
type Object struct {
	Kind     ObjectKind      `json:"kind"`
	Key      string          `json:"key"`
	Content  json.RawMessage `json:"content"`
	Revision int64           `json:"revision"`
}

// RevisionFilter pages through revisions.
type RevisionFilter struct {
	BeforeNumber int64 // only revisions with Number < BeforeNumber; 0 = from the newest
	Limit        int   // 0 = a default of 50
}

// AnyVersion as an expectation skips the optimistic-concurrency check.
const AnyVersion int64 = -1

// Write is one atomic unit of work for Store.Write.
type Write struct {
	CreateEnvironments []Environment
	UpdateEnvironments []Environment // Description and Protected are updated

	CreateFlags []Flag // Version must be 1
	UpdateFlags []FlagUpdate
	DeleteFlags []FlagDelete

	Revisions []RevisionWrite

	// Audit entries not tied to a revision (flag definitions, environments).
	Audit []solstice.AuditEntry
}

// FlagUpdate replaces a flag definition if its stored version is Expect.
// Flag.Version must be Expect+1.
type FlagUpdate struct {
	Flag   Flag
	Expect int64
}

// FlagDelete removes a flag definition if its stored version is Expect (or
// unconditionally with AnyVersion).
type FlagDelete struct {
	Key    string
	Expect int64
}

// RevisionWrite appends one revision to an environment. The store assigns
// the next number, computes the diff against the stored content inside the
// transaction and stamps the audit entries with the environment and number.
type RevisionWrite struct {
	Environment string
	Author      string
	Message     string
	Objects     []ObjectWrite
	Audit       []solstice.AuditEntry
}

// ObjectWrite sets (or, with nil Content, removes) one object. Expect is the
// revision of the content the change was based on: 0 means the object must
// not exist yet, AnyVersion skips the check; a mismatch fails the whole
// Write with KindPreconditionFailed. Content must be canonical JSON (see
// Canonical) so that unchanged objects compare equal byte for byte.
type ObjectWrite struct {
	Kind    ObjectKind
	Key     string
	Content json.RawMessage
	Expect  int64
}
