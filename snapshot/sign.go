package snapshot

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/solsticehq/solstice"
)

// Signer signs snapshots with one Ed25519 key. NewSigner returns the
// in-process implementation; another one (a KMS, an HSM) must produce plain
// Ed25519 signatures, which Sign checks before it uses them.
type Signer interface {
	// Public returns the public key, whose KeyID names the signature.
	Public() ed25519.PublicKey
	// Sign returns the Ed25519 signature of message (a PAE).
	Sign(message []byte) ([]byte, error)
}

type keySigner struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

var _ Signer = (*keySigner)(nil)

// NewSigner returns a Signer for an Ed25519 private key. The key is copied.
// It returns a KindInvalid error if priv is not a well-formed private key
// (64 bytes whose second half is the public key of the first).
func NewSigner(priv ed25519.PrivateKey) (Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, solstice.Errorf(solstice.KindInvalid, "signing key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	k := ed25519.NewKeyFromSeed(priv.Seed())
	if !k.Equal(priv) {
		return nil, solstice.Errorf(solstice.KindInvalid, "signing key is corrupt: its public half does not match its seed")
	}
	return &keySigner{priv: k, pub: k.Public().(ed25519.PublicKey)}, nil
}

func (s *keySigner) Public() ed25519.PublicKey { return s.pub }

func (s *keySigner) Sign(message []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, message), nil
}

// KeyID returns the key id of an Ed25519 public key: the lowercase hex
// SHA-256 of its 32 raw bytes. It is what envelopes name a signature by and
// what the keyring names key files by.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// Sign returns a DSSE envelope of payload with payloadType PayloadType and
// one signature per signer, in the order given. Every signature is checked
// against its signer's public key before it is used, so Sign never returns
// an envelope that does not verify.
//
// It returns a KindInvalid error if there are no signers, two signers share
// a key, or a public key is malformed, and the signer's error (wrapped) or a
// KindInternal error if a signer fails or produces an invalid signature.
func Sign(payload []byte, signers ...Signer) ([]byte, error) {
	if len(signers) == 0 {
		return nil, solstice.Errorf(solstice.KindInvalid, "sign snapshot: no signing keys")
	}
	if len(signers) > MaxSignatures {
		return nil, solstice.Errorf(solstice.KindInvalid, "sign snapshot: %d signing keys, at most %d", len(signers), MaxSignatures)
	}
	pae := PAE(PayloadType, payload)
	e := Envelope{PayloadType: PayloadType, Payload: payload}
	seen := make(map[string]bool, len(signers))
	for _, s := range signers {
		pub := s.Public()
		if len(pub) != ed25519.PublicKeySize {
			return nil, solstice.Errorf(solstice.KindInvalid, "sign snapshot: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
		id := KeyID(pub)
		if seen[id] {
			return nil, solstice.Errorf(solstice.KindInvalid, "sign snapshot: key %s given twice", id)
		}
		seen[id] = true
		sig, err := s.Sign(pae)
		if err != nil {
			return nil, fmt.Errorf("sign snapshot with key %s: %w", id, err)
		}
		if !ed25519.Verify(pub, pae, sig) {
			return nil, solstice.Errorf(solstice.KindInternal, "sign snapshot: key %s produced a signature that does not verify", id)
		}
		e.Signatures = append(e.Signatures, Signature{KeyID: id, Sig: sig})
	}
	return e.marshal()
}
