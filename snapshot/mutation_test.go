package snapshot_test

import (
	"bytes"
	"testing"

	"github.com/solsticehq/solstice/snapshot"
)

// TestOpenEveryByteChange changes every byte of a real envelope in several
// ways and expects rejection. The only changes allowed to pass are inside
// the keyid, which is a hint and not signed; for those the verified payload
// must be exactly the original one.
func TestOpenEveryByteChange(t *testing.T) {
	t.Parallel()
	b := build(t, "production-1")
	env := b.Envelope()
	o := opts("production-1")

	hint := []byte(`"keyid":"`)
	start := bytes.Index(env, hint) + len(hint)
	end := start + 64 // the hex key id

	// Inside the payload's base64 every change that stays base64 costs a
	// signature verification (slow under -race) and is one more case of
	// TestOpenPayloadByteChanges, so it gets fewer replacements.
	payloadKey := []byte(`"payload":"`)
	pstart := bytes.Index(env, payloadKey) + len(payloadKey)
	pend := pstart + bytes.IndexByte(env[pstart:], '"')

	replacements := []byte{'"', '\\', ' ', '\n', '0', '9', 'a', 'f', 'A', 'z', '+', '/', '=', '{', '}', '[', ']', ',', ':', 0x00, 0x80, 0xff}
	fewer := []byte{'"', '\\', '=', 'A', '+', 0x00}
	var tried, accepted int
	for i := range env {
		variants := []byte{env[i] ^ 0x01, env[i] ^ 0x20, env[i] ^ 0x80}
		repl := replacements
		if i >= pstart && i < pend {
			repl = fewer
		}
		for _, r := range repl {
			if r != env[i] {
				variants = append(variants, r)
			}
		}
		for _, v := range variants {
			m := bytes.Clone(env)
			m[i] = v
			tried++
			got, err := snapshot.Open(m, o)
			if err == nil {
				accepted++
				if i < start || i >= end {
					t.Errorf("byte %d changed from %q to %q: accepted outside the keyid hint", i, env[i], v)
				}
				if !bytes.Equal(got.RawPayload, b.Payload()) {
					t.Errorf("byte %d changed from %q to %q: accepted with a different payload", i, env[i], v)
				}
				continue
			}
			if got != nil {
				t.Errorf("byte %d changed: Open returned both a snapshot and %v", i, err)
			}
		}
	}
	t.Logf("%d single-byte changes of a %d-byte envelope, %d accepted (all inside the keyid hint)", tried, len(env), accepted)
}

// TestOpenEveryTruncation cuts a real envelope at every length, from the
// end and from the start, and expects rejection.
func TestOpenEveryTruncation(t *testing.T) {
	env := build(t, "production-1").Envelope()
	o := opts("production-1")
	for i := range len(env) {
		for _, m := range [][]byte{env[:i], env[i+1:]} {
			if got, err := snapshot.Open(m, o); err == nil || got != nil {
				t.Errorf("envelope truncated to %d bytes: Open = %v, %v; want a rejection", len(m), got, err)
			}
		}
	}
}

// TestOpenPayloadByteChanges re-signs nothing: it changes each byte of the
// payload itself (re-encoding the base64 properly, as an attacker would)
// and expects every change to fail the signature.
func TestOpenPayloadByteChanges(t *testing.T) {
	b := build(t, "production-1")
	payload := b.Payload()
	sig := sigBy("production-1", snapshot.PayloadType, payload)
	o := opts("production-1")
	for i := range payload {
		m := bytes.Clone(payload)
		m[i] ^= 0x01
		_, err := snapshot.Open(rawEnvelope(snapshot.PayloadType, m, sig), o)
		checkRejection(t, err, snapshot.ErrBadSignature)
	}
}
