package snapshot

import (
	"errors"
	"fmt"
	"time"
)

// Reason is the stable code of a rejection by Open. Clients log and report
// it; its values never change meaning.
type Reason string

// Rejection reasons, in the order Open checks them.
const (
	ReasonTooLarge         Reason = "too_large"         // the envelope is over OpenOptions.MaxSize
	ReasonMalformed        Reason = "malformed"         // the envelope (or the verified payload) does not decode
	ReasonPayloadType      Reason = "payload_type"      // payloadType is not PayloadType
	ReasonUnknownKey       Reason = "unknown_key"       // no signature is by a trusted key
	ReasonBadSignature     Reason = "bad_signature"     // a signature claims a trusted key but does not verify
	ReasonSchema           Reason = "schema"            // the payload schema is not Schema
	ReasonWrongEnvironment Reason = "wrong_environment" // the payload is for another environment
	ReasonRollback         Reason = "rollback"          // the version is below the held one, or equal with other content
	ReasonNotModified      Reason = "not_modified"      // the snapshot is the one already held: a no-op
	ReasonExpired          Reason = "expired"           // expires_at has passed
)

// Sentinel errors, one per Reason. Every error Open returns for an envelope
// it rejects is a *VerifyError that matches exactly one of them with
// errors.Is:
//
//	if errors.Is(err, snapshot.ErrNotModified) { /* keep the held snapshot, all is well */ }
var (
	ErrTooLarge         = errors.New("snapshot too large")
	ErrMalformed        = errors.New("malformed snapshot")
	ErrPayloadType      = errors.New("wrong snapshot payload type")
	ErrUnknownKey       = errors.New("snapshot not signed by a trusted key")
	ErrBadSignature     = errors.New("bad snapshot signature")
	ErrSchema           = errors.New("unsupported snapshot schema")
	ErrWrongEnvironment = errors.New("snapshot for the wrong environment")
	ErrRollback         = errors.New("snapshot rollback refused")
	ErrNotModified      = errors.New("snapshot not modified")
	ErrExpired          = errors.New("snapshot expired")
)

var sentinels = map[Reason]error{
	ReasonTooLarge:         ErrTooLarge,
	ReasonMalformed:        ErrMalformed,
	ReasonPayloadType:      ErrPayloadType,
	ReasonUnknownKey:       ErrUnknownKey,
	ReasonBadSignature:     ErrBadSignature,
	ReasonSchema:           ErrSchema,
	ReasonWrongEnvironment: ErrWrongEnvironment,
	ReasonRollback:         ErrRollback,
	ReasonNotModified:      ErrNotModified,
	ReasonExpired:          ErrExpired,
}

// VerifyError is a rejection of a snapshot by Open or DecodeUnverified. Use
// errors.Is with the sentinel errors to branch on the reason and errors.As
// for the details.
//
// The detail fields hold what was known when the check failed: for
// signature failures KeyIDs are the (unverified) key ids the signatures
// claim; from ReasonSchema on, Environment, Version and ExpiresAt come from
// the verified payload.
type VerifyError struct {
	Reason  Reason
	Message string // precise and human readable, e.g. `snapshot is for environment "staging", want "production"`

	KeyIDs      []string  // key ids named by the envelope's signatures (hints, not verified)
	Environment string    // the payload's environment
	Version     int64     // the payload's version
	HeldVersion int64     // the version the client holds
	ExpiresAt   time.Time // the payload's expiry

	Err error // the underlying decoding error, if any
}

// Error returns the message.
func (e *VerifyError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Is reports whether target is the sentinel error of e's Reason.
func (e *VerifyError) Is(target error) bool {
	s, ok := sentinels[e.Reason]
	return ok && s == target
}

// Unwrap returns the underlying decoding error, if any.
func (e *VerifyError) Unwrap() error { return e.Err }

func reject(r Reason, format string, args ...any) *VerifyError {
	return &VerifyError{Reason: r, Message: fmt.Sprintf(format, args...)}
}

func malformed(err error, format string, args ...any) *VerifyError {
	e := reject(ReasonMalformed, format, args...)
	e.Err = err
	return e
}

// ago formats a positive duration coarsely for messages ("3h", "12m", "5s").
func ago(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

// shortID abbreviates a key id for messages; the full ids are in the
// VerifyError fields and in `solstice keys list`.
func shortID(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	if id == "" {
		return "(none)"
	}
	return id
}
