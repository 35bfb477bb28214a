// Package solstice holds the vocabulary shared by every part of Solstice: the
// error kinds that cross package boundaries, the actor behind a change, and
// the audit entry every mutation records. It imports nothing but the standard
// library so that domain packages, adapters and the game-server SDK can all
// depend on it.
package solstice

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies an error by what the caller can do about it. The web
// adapter maps kinds to HTTP status codes in one place; the CLI maps them to
// messages and exit codes.
type Kind string

// Error kinds.
const (
	KindInvalid            Kind = "invalid"               // the input is wrong; fix it and retry (422 / 400)
	KindNotFound           Kind = "not_found"             // the named thing does not exist (404)
	KindConflict           Kind = "conflict"              // the thing already exists or the state forbids it (409)
	KindPreconditionFailed Kind = "precondition_failed"   // a stale ETag / version (412)
	KindPreconditionNeeded Kind = "precondition_required" // a write without If-Match (428)
	KindUnauthorized       Kind = "unauthorized"          // no or bad credentials (401)
	KindForbidden          Kind = "forbidden"             // credentials lack the permission (403)
	KindTooLarge           Kind = "too_large"             // request body over its limit (413)
	KindRateLimited        Kind = "rate_limited"          // too many requests (429)
	KindInternal           Kind = "internal"              // a bug or an outage; details are logged, not shown
)

// FieldError names one invalid value by its JSON pointer (RFC 6901) within
// the submitted document.
type FieldError struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

// Error is the error type of Solstice. It is created where the fact is known
// and inspected by callers with errors.As or ErrorKind, never by its text.
type Error struct {
	Kind    Kind
	Message string       // human readable, safe to show to clients (except for KindInternal)
	Fields  []FieldError // for KindInvalid: each failing value
	Err     error        // the underlying cause, if any; logged, never shown
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = string(e.Kind)
	}
	if len(e.Fields) > 0 {
		msg = fmt.Sprintf("%s (%s: %s", msg, e.Fields[0].Pointer, e.Fields[0].Message)
		if n := len(e.Fields) - 1; n > 0 {
			msg += fmt.Sprintf("; and %d more", n)
		}
		msg += ")"
	}
	// Errorf keeps the cause's text in Message already; say it only once.
	if e.Err != nil && !strings.Contains(msg, e.Err.Error()) {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted message. A %w
// verb wraps its operand as the cause.
func Errorf(kind Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Message: err.Error(), Err: errors.Unwrap(err)}
}

// Invalid returns a KindInvalid error carrying field errors.
func Invalid(message string, fields ...FieldError) *Error {
	return &Error{Kind: KindInvalid, Message: message, Fields: fields}
}

// ErrorKind returns the kind of the first *Error in err's chain, KindInternal
// for any other non-nil error and "" for nil.
func ErrorKind(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// IsKind reports whether err's kind is k.
func IsKind(err error, k Kind) bool { return ErrorKind(err) == k }

// ErrorFields returns the field errors of the first *Error in err's chain.
func ErrorFields(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// ErrorMessage returns the client-safe message of err: the message of the
// first *Error in its chain, or a generic text for internal errors.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != KindInternal {
		return e.Error()
	}
	return "internal error"
}
