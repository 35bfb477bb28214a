package accounts

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/solsticehq/solstice"
)

// HashParams are the argon2id cost parameters of new password hashes.
// Existing hashes keep the parameters they were made with: the PHC string
// records them.
type HashParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultHashParams follow RFC 9106's second recommended option (64 MiB, 3
// passes), with 2 lanes: about 0.1 s per login on one server core.
var DefaultHashParams = HashParams{Memory: 64 * 1024, Time: 3, Threads: 2}

const (
	saltBytes = 16
	keyBytes  = 32
)

// Password limits. NOTE: the minimum follows NIST SP 800-63B (length over
// composition rules); the maximum bounds the hashing work of one request.
const (
	MinPasswordLength = 10  // characters
	MaxPasswordLength = 256 // bytes
)

// CheckPassword returns a KindInvalid error (pointer /password) for a
// password that is too short, too long or not valid UTF-8.
func CheckPassword(pw string) error {
	switch {
	case !utf8.ValidString(pw):
		return solstice.Invalid("invalid password", solstice.FieldError{Pointer: "/password", Message: "must be valid UTF-8 text"})
	case utf8.RuneCountInString(pw) < MinPasswordLength:
		return solstice.Invalid("invalid password", solstice.FieldError{Pointer: "/password", Message: fmt.Sprintf("must be at least %d characters", MinPasswordLength)})
	case len(pw) > MaxPasswordLength:
		return solstice.Invalid("invalid password", solstice.FieldError{Pointer: "/password", Message: fmt.Sprintf("must be at most %d bytes", MaxPasswordLength)})
	}
	return nil
}

// HashPassword returns the argon2id hash of pw with a random salt, in PHC
// string format ($argon2id$v=19$m=65536,t=3,p=2$salt$hash). It returns an
// error only when the system's random source fails.
func HashPassword(pw string, p HashParams) (string, error) {
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyBytes)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches encoded, a hash made by
// HashPassword, comparing in constant time. It returns an error for a hash
// it cannot parse (a corrupt row, never a wrong password).
func VerifyPassword(encoded, pw string) (bool, error) {
	p, salt, key, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	//nolint:gosec // key lengths are bounded by parseHash
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// Upper bounds on the parameters VerifyPassword accepts, so that a tampered
// row cannot make a login allocate gigabytes.
const (
	maxMemory = 1 << 20 // 1 GiB
	maxTime   = 20
)

func parseHash(encoded string) (HashParams, []byte, []byte, error) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=...,t=...,p=...", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return HashParams{}, nil, nil, fmt.Errorf("password hash: not an argon2id PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return HashParams{}, nil, nil, fmt.Errorf("password hash: unsupported argon2 version %q", parts[2])
	}
	var p HashParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return HashParams{}, nil, nil, fmt.Errorf("password hash: bad parameters %q: %w", parts[3], err)
	}
	if p.Memory < 8 || p.Memory > maxMemory || p.Time < 1 || p.Time > maxTime || p.Threads < 1 {
		return HashParams{}, nil, nil, fmt.Errorf("password hash: parameters %q out of range", parts[3])
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return HashParams{}, nil, nil, fmt.Errorf("password hash: bad salt")
	}
	key, err := enc.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return HashParams{}, nil, nil, fmt.Errorf("password hash: bad key")
	}
	return p, salt, key, nil
}

// GeneratePassword returns a random one-time password of 20 characters from
// an alphabet without look-alikes (about 110 bits). It returns an error only
// when the system's random source fails.
func GeneratePassword() (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	const n = 20
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		// Rejection sampling keeps the characters uniform.
		if int(buf[0]) >= 256-256%len(alphabet) {
			continue
		}
		b.WriteByte(alphabet[int(buf[0])%len(alphabet)])
	}
	return b.String(), nil
}
