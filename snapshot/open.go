package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
)

// DefaultMaxSize is the envelope size Open accepts when OpenOptions.MaxSize
// is 0. Build refuses to produce a larger envelope, so that a snapshot the
// control plane publishes is one every default client accepts.
const DefaultMaxSize = 16 << 20

// OpenOptions is what a client knows and trusts when it opens a snapshot.
type OpenOptions struct {
	// Trusted are the public keys the client was configured with (see
	// ParsePublicKeys). Required. A snapshot is accepted if at least one of
	// its signatures verifies under one of them.
	Trusted []ed25519.PublicKey
	// Environment is the environment the client asked for. Required.
	Environment string
	// HeldVersion and HeldPayload are the version and exact payload bytes
	// (Opened.RawPayload) of the snapshot the client holds, zero and nil if
	// it holds none. A snapshot must be newer; the same version with the
	// same bytes is ErrNotModified, anything else is ErrRollback.
	HeldVersion int64
	HeldPayload []byte
	// Now is the current time, against which expiry is checked. Required:
	// time is injected, never read from the wall clock here.
	Now time.Time
	// MaxSize caps the envelope size in bytes; 0 means DefaultMaxSize.
	MaxSize int
}

// Opened is a snapshot that passed every check of Open.
type Opened struct {
	Payload    Payload  // parsed from RawPayload
	RawPayload []byte   // the exact verified payload bytes; hold them for the next OpenOptions.HeldPayload
	Envelope   []byte   // the envelope as passed to Open (not copied); keep it as the last-known-good snapshot
	KeyIDs     []string // the trusted keys whose signatures verified, in signature order
}

// Open verifies a snapshot envelope and returns its payload. It checks, in
// this order, and stops at the first failure:
//
//  1. the envelope is at most opts.MaxSize bytes (ErrTooLarge);
//  2. the envelope decodes strictly (ErrMalformed);
//  3. its payloadType is PayloadType (ErrPayloadType);
//  4. at least one signature verifies under a trusted key. A signature's
//     keyid is only a hint: a signature whose keyid names no trusted key is
//     tried against every trusted key. When none verifies, the error is
//     ErrBadSignature if some signature named a trusted key, else
//     ErrUnknownKey;
//
// then, parsing only the verified payload bytes (the envelope is never
// parsed again):
//
//  5. its schema is Schema (ErrSchema) and it decodes, with a version of
//     at least 1 (ErrMalformed);
//  6. its environment is opts.Environment (ErrWrongEnvironment);
//  7. its version is above opts.HeldVersion: equal with identical bytes is
//     ErrNotModified, equal with different bytes or lower is ErrRollback;
//  8. its expires_at is after opts.Now (ErrExpired).
//
// Every rejection is a *VerifyError matching one sentinel. Options that
// make verification impossible (no trusted keys, a malformed key, no
// environment, a zero Now, a negative MaxSize) are a KindInvalid
// *solstice.Error instead. Open never returns an Opened, or any payload
// content in an error, that was not verified.
func Open(envelope []byte, opts OpenOptions) (*Opened, error) {
	trusted, maxSize, err := opts.check()
	if err != nil {
		return nil, err
	}
	if len(envelope) > maxSize {
		return nil, reject(ReasonTooLarge, "snapshot envelope is %d bytes, over the limit of %d", len(envelope), maxSize)
	}
	e, verr := decodeEnvelope(envelope)
	if verr != nil {
		return nil, verr
	}
	if e.PayloadType != PayloadType {
		return nil, reject(ReasonPayloadType, "snapshot payload type is %q, want %q", e.PayloadType, PayloadType)
	}
	keyIDs, verr := verify(e, trusted)
	if verr != nil {
		return nil, verr
	}

	p, verr := parsePayload(e.Payload)
	if verr != nil {
		return nil, verr
	}
	detail := func(v *VerifyError) *VerifyError {
		v.Environment, v.Version, v.HeldVersion = p.Environment, p.Version, opts.HeldVersion
		v.ExpiresAt = time.Unix(p.ExpiresAt, 0).UTC()
		return v
	}
	switch {
	case p.Version < 1:
		return nil, detail(reject(ReasonMalformed, "signed snapshot payload has version %d; versions start at 1", p.Version))
	case p.Environment != opts.Environment:
		return nil, detail(reject(ReasonWrongEnvironment, "snapshot is for environment %q, want %q", p.Environment, opts.Environment))
	case p.Version < opts.HeldVersion:
		return nil, detail(reject(ReasonRollback, "snapshot version %d is below held version %d: rollback refused", p.Version, opts.HeldVersion))
	case p.Version == opts.HeldVersion && bytes.Equal(e.Payload, opts.HeldPayload):
		return nil, detail(reject(ReasonNotModified, "snapshot version %d is the one already held: not modified", p.Version))
	case p.Version == opts.HeldVersion:
		return nil, detail(reject(ReasonRollback, "snapshot version %d equals the held version but its content differs: rollback refused", p.Version))
	}
	if exp := time.Unix(p.ExpiresAt, 0); !opts.Now.Before(exp) {
		return nil, detail(reject(ReasonExpired, "snapshot expired at %s (%s ago)", exp.UTC().Format(time.RFC3339), ago(opts.Now.Sub(exp))))
	}
	return &Opened{Payload: *p, RawPayload: e.Payload, Envelope: envelope, KeyIDs: keyIDs}, nil
}

type trustedKey struct {
	pub ed25519.PublicKey
	id  string
}

func (o *OpenOptions) check() ([]trustedKey, int, error) {
	switch {
	case len(o.Trusted) == 0:
		return nil, 0, solstice.Errorf(solstice.KindInvalid, "open snapshot: no trusted keys configured")
	case o.Environment == "":
		return nil, 0, solstice.Errorf(solstice.KindInvalid, "open snapshot: no environment given")
	case o.Now.IsZero():
		return nil, 0, solstice.Errorf(solstice.KindInvalid, "open snapshot: no current time given")
	case o.MaxSize < 0:
		return nil, 0, solstice.Errorf(solstice.KindInvalid, "open snapshot: negative size limit %d", o.MaxSize)
	}
	keys := make([]trustedKey, 0, len(o.Trusted))
	seen := make(map[string]bool, len(o.Trusted))
	for i, pub := range o.Trusted {
		if len(pub) != ed25519.PublicKeySize {
			return nil, 0, solstice.Errorf(solstice.KindInvalid, "open snapshot: trusted key %d is %d bytes, want %d", i, len(pub), ed25519.PublicKeySize)
		}
		if id := KeyID(pub); !seen[id] {
			seen[id] = true
			keys = append(keys, trustedKey{pub: pub, id: id})
		}
	}
	maxSize := o.MaxSize
	if maxSize == 0 {
		maxSize = DefaultMaxSize
	}
	return keys, maxSize, nil
}

// verify returns the ids of the trusted keys with a valid signature, in
// signature order. Each signature is tried first against the key its keyid
// names, then against every other trusted key.
func verify(e *Envelope, trusted []trustedKey) ([]string, *VerifyError) {
	pae := PAE(e.PayloadType, e.Payload)
	var verified, claimed []string
	var failed string // a trusted key named by a signature that did not verify
	for _, s := range e.Signatures {
		claimed = append(claimed, s.KeyID)
		hinted := -1
		for i, k := range trusted {
			if k.id == s.KeyID {
				hinted = i
				break
			}
		}
		ok := false
		if hinted >= 0 && ed25519.Verify(trusted[hinted].pub, pae, s.Sig) {
			verified, ok = appendNew(verified, trusted[hinted].id), true
		}
		for i := 0; !ok && i < len(trusted); i++ {
			if i != hinted && ed25519.Verify(trusted[i].pub, pae, s.Sig) {
				verified, ok = appendNew(verified, trusted[i].id), true
			}
		}
		if !ok && hinted >= 0 && failed == "" {
			failed = s.KeyID
		}
	}
	if len(verified) > 0 {
		return verified, nil
	}
	var v *VerifyError
	if failed != "" {
		v = reject(ReasonBadSignature, "snapshot signature by trusted key %s does not verify", shortID(failed))
	} else {
		short := make([]string, len(claimed))
		for i, id := range claimed {
			short[i] = shortID(id)
		}
		if len(short) == 1 {
			v = reject(ReasonUnknownKey, "snapshot is signed by key %s, which is not trusted", short[0])
		} else {
			v = reject(ReasonUnknownKey, "snapshot is signed by keys %s, none of which is trusted", strings.Join(short, ", "))
		}
	}
	v.KeyIDs = claimed
	return nil, v
}

func appendNew(ids []string, id string) []string {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}
