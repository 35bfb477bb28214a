package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
)

// The headers of a delivery. The first three are those of Standard
// Webhooks; the others are Solstice's own and are not signed.
const (
	HeaderID        = "webhook-id"        // Message.ID, the same on every attempt
	HeaderTimestamp = "webhook-timestamp" // the attempt's time, Unix seconds
	HeaderSignature = "webhook-signature" // space-separated "v1,<base64>" signatures
	HeaderEvent     = "solstice-event"    // Message.Event, for routing without parsing the body
	HeaderAttempt   = "solstice-attempt"  // 1 for the first attempt, 2 for the first retry...
)

// SecretPrefix starts a secret in the Standard Webhooks form: "whsec_"
// followed by the standard base64 of the key.
const SecretPrefix = "whsec_"

// MinSecretBytes is the shortest key accepted: the 192 bits Standard
// Webhooks asks for.
const MinSecretBytes = 24

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock, either way, before Verify rejects it as a replay or a
// forgery with a clock far ahead.
const DefaultTolerance = 5 * time.Minute

// maxIDLength bounds a message ID: it is a header value and part of the
// signed content.
const maxIDLength = 1024

// The reasons Verify rejects a delivery. Verify wraps them in a
// KindUnauthorized *solstice.Error whose message gives the details; test
// for them with errors.Is.
var (
	ErrMissingHeader   = errors.New("missing webhook header")
	ErrMalformedHeader = errors.New("malformed webhook header")
	ErrBadSignature    = errors.New("no valid webhook signature")
	ErrTooOld          = errors.New("webhook timestamp too old")
	ErrTooNew          = errors.New("webhook timestamp too new")
)

// NewSecret returns a new random secret in the Standard Webhooks form:
// SecretPrefix followed by the base64 of 32 random bytes.
func NewSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails: crypto/rand aborts the program instead
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// parseSecrets decodes secret: one secret or several separated by spaces
// (during a rotation), each either SecretPrefix and the standard base64 of
// the key, or anything else, whose bytes are the key as they are. Every key
// must be at least MinSecretBytes long. The error never quotes a secret.
func parseSecrets(secret string) ([][]byte, error) {
	fields := strings.Fields(secret)
	if len(fields) == 0 {
		return nil, errors.New("no secret given")
	}
	keys := make([][]byte, len(fields))
	for i, f := range fields {
		which := "the secret"
		if len(fields) > 1 {
			which = "secret " + strconv.Itoa(i+1) + " of " + strconv.Itoa(len(fields))
		}
		key := []byte(f)
		if b64, ok := strings.CutPrefix(f, SecretPrefix); ok {
			var err error
			if key, err = base64.StdEncoding.DecodeString(b64); err != nil {
				return nil, errors.New(which + " starts with " + SecretPrefix + " but the rest is not standard base64")
			}
		}
		if len(key) < MinSecretBytes {
			return nil, errors.New(which + " is " + strconv.Itoa(len(key)) + " bytes long; at least " +
				strconv.Itoa(MinSecretBytes) + " are required")
		}
		keys[i] = key
	}
	return keys, nil
}

// checkID reports why id cannot be a webhook-id, or nil.
//
// NOTE: Standard Webhooks advises against a '.' in IDs, since the signed
// content joins id, timestamp and body with dots. Solstice's IDs hold flag
// keys, which may contain dots, so they are allowed: moving a dot-separated
// part between the ID and the timestamp would need a run of digits that is
// a current Unix time inside the ID, and would leave a body that starts
// with a piece of the ID and is no longer JSON; moving it the other way
// would need the body to start with digits instead of '{'.
func checkID(id string) error {
	switch {
	case id == "":
		return errors.New("is empty")
	case len(id) > maxIDLength:
		return errors.New("is longer than " + strconv.Itoa(maxIDLength) + " bytes")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return errors.New("must be visible ASCII characters (no spaces or control characters)")
		}
	}
	return nil
}

// signature returns the base64 HMAC-SHA256 of "id.timestamp.body" under key.
func signature(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// signWith returns the webhook-signature header value: one "v1,<base64>"
// per key, in the keys' order, separated by spaces.
func signWith(keys [][]byte, id string, timestamp time.Time, body []byte) string {
	ts := strconv.FormatInt(timestamp.Unix(), 10)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(signature(k, id, ts, body))
	}
	return b.String()
}

// Sign returns the webhook-signature header value of the delivery of body
// with the given webhook-id at the given time (whole Unix seconds, the
// webhook-timestamp header): "v1," followed by the standard base64 of
// HMAC-SHA256(key, id + "." + timestamp + "." + body). secret is a secret
// in the "whsec_<base64>" form, or a raw secret whose bytes are the key, or
// several of these separated by spaces; then there is one signature per
// secret, in the same order, so that receivers holding either the old or
// the new secret accept deliveries during a rotation.
//
// It returns a KindInvalid error if a secret cannot be decoded or is
// shorter than MinSecretBytes, or if id is empty, longer than 1024 bytes or
// has characters other than visible ASCII. Errors never quote the secret.
func Sign(secret, id string, timestamp time.Time, body []byte) (string, error) {
	keys, err := parseSecrets(secret)
	if err != nil {
		return "", solstice.Errorf(solstice.KindInvalid, "sign webhook: %v", err)
	}
	if err := checkID(id); err != nil {
		return "", solstice.Errorf(solstice.KindInvalid, "sign webhook: the id %v", err)
	}
	return signWith(keys, id, timestamp, body), nil
}

// VerifyOption configures Verify.
type VerifyOption func(*verifyConfig)

type verifyConfig struct{ tolerance time.Duration }

// WithTolerance sets how far the webhook-timestamp may be from now, either
// way (default DefaultTolerance; a non-positive d keeps the default).
func WithTolerance(d time.Duration) VerifyOption {
	return func(c *verifyConfig) {
		if d > 0 {
			c.tolerance = d
		}
	}
}

// Verify checks a delivery on the receiving side: header holds the
// webhook-id, webhook-timestamp and webhook-signature headers as received,
// body the raw request body (verify before parsing it: re-encoded JSON is
// not the signed bytes) and now the receiver's time. secret is the
// endpoint's secret in the form Sign takes; with several (space-separated)
// secrets, a signature under any of them is enough. The delivery is
// authentic when one of the "v1," signatures in the header matches;
// signatures of other versions are ignored. Signatures are compared in
// constant time.
//
// It returns nil for an authentic delivery whose timestamp is within the
// tolerance of now (the bounds included). Otherwise it returns a
// KindUnauthorized *solstice.Error wrapping ErrMissingHeader (a header is
// absent or empty), ErrMalformedHeader (a repeated webhook-id or
// webhook-timestamp, a timestamp that is not a decimal integer, an ID with
// spaces or control characters), ErrTooOld or ErrTooNew (the timestamp is
// outside the tolerance; checked before the signature) or ErrBadSignature.
// A secret that cannot be decoded is the receiver's mistake, not the
// sender's: it gets a KindInvalid error.
func Verify(secret string, header http.Header, body []byte, now time.Time, opts ...VerifyOption) error {
	c := verifyConfig{tolerance: DefaultTolerance}
	for _, o := range opts {
		o(&c)
	}
	keys, err := parseSecrets(secret)
	if err != nil {
		return solstice.Errorf(solstice.KindInvalid, "verify webhook: %v", err)
	}
	id, err := singleHeader(header, HeaderID)
	if err != nil {
		return err
	}
	ts, err := singleHeader(header, HeaderTimestamp)
	if err != nil {
		return err
	}
	sigs := headerValues(header, HeaderSignature)
	if strings.TrimSpace(strings.Join(sigs, "")) == "" {
		return unauthorized(ErrMissingHeader, "the %s header is missing", HeaderSignature)
	}
	if err := checkID(id); err != nil {
		return unauthorized(ErrMalformedHeader, "the %s header %v", HeaderID, err)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || strconv.FormatInt(unix, 10) != ts {
		return unauthorized(ErrMalformedHeader, "the %s header is not a decimal Unix time in seconds", HeaderTimestamp)
	}
	// Compare times, not durations: Sub saturates for far-off timestamps,
	// and the negation of the most negative Duration is itself.
	switch sent := time.Unix(unix, 0); {
	case sent.Before(now.Add(-c.tolerance)):
		return unauthorized(ErrTooOld, "the %s header is %s in the past, more than the tolerance of %s", HeaderTimestamp, now.Sub(sent).Truncate(time.Second), c.tolerance)
	case sent.After(now.Add(c.tolerance)):
		return unauthorized(ErrTooNew, "the %s header is %s in the future, more than the tolerance of %s", HeaderTimestamp, sent.Sub(now).Truncate(time.Second), c.tolerance)
	}
	want := make([][]byte, len(keys))
	for i, k := range keys {
		want[i] = []byte(signature(k, id, ts, body))
	}
	found := false
	for _, tok := range strings.Fields(strings.Join(sigs, " ")) {
		b64, ok := strings.CutPrefix(tok, "v1,")
		if !ok {
			continue
		}
		found = true
		for _, w := range want {
			if hmac.Equal([]byte(b64), w) {
				return nil
			}
		}
	}
	if !found {
		return unauthorized(ErrBadSignature, "the %s header has no v1 signature", HeaderSignature)
	}
	return unauthorized(ErrBadSignature, "no v1 signature in the %s header matches the body, id and timestamp under the secret", HeaderSignature)
}

// unauthorized returns a KindUnauthorized error wrapping reason.
func unauthorized(reason error, format string, args ...any) error {
	return solstice.Errorf(solstice.KindUnauthorized, format+": %w", append(args, reason)...)
}

// headerValues returns the values of name in h, looked up by its canonical
// form and, for maps built by hand, by its lower-case form.
func headerValues(h http.Header, name string) []string {
	if v := h.Values(name); len(v) > 0 {
		return v
	}
	return h[name]
}

// singleHeader returns the one non-empty value of name in h.
func singleHeader(h http.Header, name string) (string, error) {
	v := headerValues(h, name)
	switch {
	case len(v) == 0 || (len(v) == 1 && strings.TrimSpace(v[0]) == ""):
		return "", unauthorized(ErrMissingHeader, "the %s header is missing", name)
	case len(v) > 1:
		return "", unauthorized(ErrMalformedHeader, "the %s header is repeated", name)
	}
	return strings.TrimSpace(v[0]), nil
}
