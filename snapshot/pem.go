package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/solsticehq/solstice"
)

// PEM block types: PKCS #8 for private keys, PKIX (SubjectPublicKeyInfo)
// for public keys, as written by `openssl genpkey -algorithm ed25519` and
// `openssl pkey -pubout`.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// MarshalPrivateKey returns priv as a PKCS #8 PEM block. It returns an error
// only for a malformed key.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, solstice.Errorf(solstice.KindInvalid, "private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// MarshalPublicKey returns pub as a PKIX "PUBLIC KEY" PEM block. It returns
// an error only for a malformed key.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, solstice.Errorf(solstice.KindInvalid, "public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// ParsePrivateKey parses exactly one Ed25519 private key, given either as a
// PKCS #8 PEM block ("PRIVATE KEY") or as the standard or URL-safe base64
// (padded or not) of its 32-byte seed. Surrounding whitespace is ignored.
//
// It returns a KindInvalid error, which never quotes key material, for
// anything else, including several keys.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	keys, err := ParsePrivateKeys(b)
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, solstice.Errorf(solstice.KindInvalid, "want one private key, found %d", len(keys))
	}
	return keys[0], nil
}

// ParsePrivateKeys parses one or more Ed25519 private keys: a sequence of
// PKCS #8 PEM blocks (text between blocks is ignored), or a single base64
// seed as for ParsePrivateKey. Several keys in one value are how an
// externally managed key overlaps with its successor during a rotation.
//
// It returns a KindInvalid error, which never quotes key material, if
// there is no key or any block is not an Ed25519 private key.
func ParsePrivateKeys(b []byte) ([]ed25519.PrivateKey, error) {
	b = bytes.TrimSpace(b)
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		seed, err := decodeBase64Key(string(b), ed25519.SeedSize)
		if err != nil {
			return nil, solstice.Errorf(solstice.KindInvalid, "private key is neither PEM nor a base64 Ed25519 seed: %v", err)
		}
		return []ed25519.PrivateKey{ed25519.NewKeyFromSeed(seed)}, nil
	}
	var keys []ed25519.PrivateKey
	err := eachPEM(b, pemPrivate, func(der []byte) error {
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return fmt.Errorf("not a PKCS #8 private key: %w", err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return fmt.Errorf("a %T, want an Ed25519 key", k)
		}
		keys = append(keys, priv)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// ParsePublicKeys parses the Ed25519 public keys a client trusts: a
// sequence of PKIX PEM blocks ("PUBLIC KEY", as ExportPublic and `openssl
// pkey -pubout` write them; text between blocks, such as comments, is
// ignored), or, for configuration by environment variable, base64 raw
// 32-byte keys separated by whitespace or commas. Duplicates are dropped.
//
// It returns a KindInvalid error if there is no key or any entry is not an
// Ed25519 public key.
func ParsePublicKeys(b []byte) ([]ed25519.PublicKey, error) {
	b = bytes.TrimSpace(b)
	var keys []ed25519.PublicKey
	add := func(pub ed25519.PublicKey) {
		for _, k := range keys {
			if k.Equal(pub) {
				return
			}
		}
		keys = append(keys, pub)
	}
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		fields := strings.FieldsFunc(string(b), func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
		})
		if len(fields) == 0 {
			return nil, solstice.Errorf(solstice.KindInvalid, "no public key found")
		}
		for i, f := range fields {
			raw, err := decodeBase64Key(f, ed25519.PublicKeySize)
			if err != nil {
				return nil, solstice.Errorf(solstice.KindInvalid, "public key %d is neither PEM nor a base64 Ed25519 key: %v", i+1, err)
			}
			add(raw)
		}
		return keys, nil
	}
	err := eachPEM(b, pemPublic, func(der []byte) error {
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return fmt.Errorf("not a PKIX public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("a %T, want an Ed25519 key", k)
		}
		add(pub)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// eachPEM calls parse for every PEM block in b, which must all be of type
// typ; there must be at least one.
func eachPEM(b []byte, typ string, parse func(der []byte) error) error {
	n := 0
	for {
		block, rest := pem.Decode(b)
		if block == nil {
			if bytes.Contains(rest, []byte("-----BEGIN")) {
				return solstice.Errorf(solstice.KindInvalid, "PEM block %d does not decode", n+1)
			}
			break
		}
		n++
		if block.Type != typ {
			return solstice.Errorf(solstice.KindInvalid, "PEM block %d is a %q, want %q", n, block.Type, typ)
		}
		if err := parse(block.Bytes); err != nil {
			return solstice.Errorf(solstice.KindInvalid, "PEM block %d is %v", n, err)
		}
		b = rest
	}
	if n == 0 {
		return solstice.Errorf(solstice.KindInvalid, "no %q PEM block found", typ)
	}
	return nil
}

// decodeBase64Key decodes a key of size bytes in any of the base64
// alphabets people paste.
func decodeBase64Key(s string, size int) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != size {
				return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), size)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("not base64")
}
