package snapshot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// Built is a signed snapshot ready to serve: serialized, signed and
// compressed once, then shared by every request. It is immutable; the byte
// slices its methods return are shared and must not be modified.
type Built struct {
	env       string
	version   int64
	revision  int64
	issuedAt  time.Time
	expiresAt time.Time
	flagCount int
	keyIDs    []string
	payload   []byte
	envelope  []byte
	gzip      []byte
	etag      string
}

// Build builds the snapshot of set: a Payload with the given version,
// issued at now and expiring ttl later (both truncated to whole seconds),
// serialized, signed by every signer and gzipped.
//
// It returns a KindInvalid error for an empty environment, a version below
// 1, a ttl under one second or no signers; a KindTooLarge error if the
// envelope would exceed DefaultMaxSize (clients would refuse it); and the
// errors of Payload.Marshal and Sign.
func Build(set flags.Set, version int64, now time.Time, ttl time.Duration, signers []Signer) (*Built, error) {
	switch {
	case set.Environment == "":
		return nil, solstice.Errorf(solstice.KindInvalid, "build snapshot: no environment")
	case version < 1:
		return nil, solstice.Errorf(solstice.KindInvalid, "build snapshot of %q: version %d, want at least 1", set.Environment, version)
	case ttl < time.Second:
		return nil, solstice.Errorf(solstice.KindInvalid, "build snapshot of %q: ttl %v, want at least 1s", set.Environment, ttl)
	}
	issued := now.Unix()
	expires := now.Add(ttl).Unix()
	p := Payload{
		Schema:      Schema,
		Environment: set.Environment,
		Version:     version,
		Revision:    set.Revision,
		IssuedAt:    issued,
		ExpiresAt:   expires,
		Flags:       set.Flags,
		Segments:    set.Segments,
	}
	payload, err := p.Marshal()
	if err != nil {
		return nil, fmt.Errorf("build snapshot of %q: %w", set.Environment, err)
	}
	envelope, err := Sign(payload, signers...)
	if err != nil {
		return nil, fmt.Errorf("build snapshot of %q: %w", set.Environment, err)
	}
	if len(envelope) > DefaultMaxSize {
		return nil, solstice.Errorf(solstice.KindTooLarge, "build snapshot of %q: envelope is %d bytes, over the %d clients accept", set.Environment, len(envelope), DefaultMaxSize)
	}
	var gz bytes.Buffer
	gz.Grow(len(envelope) / 3)
	zw := gzip.NewWriter(&gz) // no name, no mtime: the same envelope always compresses to the same bytes
	if _, err := zw.Write(envelope); err != nil {
		return nil, fmt.Errorf("build snapshot of %q: gzip: %w", set.Environment, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("build snapshot of %q: gzip: %w", set.Environment, err)
	}
	sum := sha256.Sum256(payload)
	keyIDs := make([]string, len(signers))
	for i, s := range signers {
		keyIDs[i] = KeyID(s.Public())
	}
	return &Built{
		env:       set.Environment,
		version:   version,
		revision:  set.Revision,
		issuedAt:  time.Unix(issued, 0).UTC(),
		expiresAt: time.Unix(expires, 0).UTC(),
		flagCount: len(set.Flags),
		keyIDs:    keyIDs,
		payload:   payload,
		envelope:  envelope,
		gzip:      gz.Bytes(),
		etag:      `"` + hex.EncodeToString(sum[:]) + `"`,
	}, nil
}

// Environment returns the environment the snapshot is for.
func (b *Built) Environment() string { return b.env }

// Version returns the snapshot version.
func (b *Built) Version() int64 { return b.version }

// Revision returns the content revision the snapshot was built from.
func (b *Built) Revision() int64 { return b.revision }

// IssuedAt returns the issue time, in whole seconds.
func (b *Built) IssuedAt() time.Time { return b.issuedAt }

// ExpiresAt returns the time after which clients refuse the snapshot.
func (b *Built) ExpiresAt() time.Time { return b.expiresAt }

// FlagCount returns the number of flags in the snapshot.
func (b *Built) FlagCount() int { return b.flagCount }

// KeyIDs returns the ids of the keys that signed the snapshot, in signature
// order.
func (b *Built) KeyIDs() []string { return append([]string(nil), b.keyIDs...) }

// Payload returns the signed payload bytes (shared; do not modify).
func (b *Built) Payload() []byte { return b.payload }

// Envelope returns the DSSE envelope, the body of the snapshot response
// (shared; do not modify).
func (b *Built) Envelope() []byte { return b.envelope }

// Gzip returns the gzip compression of Envelope, for clients that accept
// Content-Encoding: gzip (shared; do not modify).
func (b *Built) Gzip() []byte { return b.gzip }

// ETag returns the strong entity tag of the snapshot: the lowercase hex
// SHA-256 of the payload bytes, in double quotes, as the design's "ETag =
// the payload digest" asks. Every publish bumps the version inside the
// payload, so every publish has a new ETag; and a client can compute it
// from the payload it holds.
//
// NOTE: the identity and gzip responses share this tag. Strictly (RFC 9110
// 8.8.3) two content codings are two representations, but both decode to
// the same envelope, a client sends the tag back only to learn whether the
// snapshot changed, and the response must carry Vary: Accept-Encoding so
// that caches keep them apart.
func (b *Built) ETag() string { return b.etag }
