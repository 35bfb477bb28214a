package snapshot_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/snapshot"
)

var allSentinels = []error{
	snapshot.ErrTooLarge, snapshot.ErrMalformed, snapshot.ErrPayloadType, snapshot.ErrUnknownKey,
	snapshot.ErrBadSignature, snapshot.ErrSchema, snapshot.ErrWrongEnvironment, snapshot.ErrRollback,
	snapshot.ErrNotModified, snapshot.ErrExpired,
}

func TestOpen(t *testing.T) {
	b := build(t, "production-1")
	o, err := snapshot.Open(b.Envelope(), opts("production-1"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := testSet()
	want := snapshot.Payload{
		Schema: 1, Environment: testEnv, Version: 42, Revision: 7,
		IssuedAt: t0.Unix(), ExpiresAt: t0.Add(24 * time.Hour).Unix(),
		Flags: s.Flags, Segments: s.Segments,
	}
	// Raw values come back compacted (this edits s too: they share flags).
	want.Flags[1].Variants[0].Value = []byte(`{"drops":[],"xp":1}`)
	if diff := cmp.Diff(want, o.Payload); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(s, o.Payload.Set()); diff != "" {
		t.Errorf("Set() (-want +got):\n%s", diff)
	}
	if !bytes.Equal(o.RawPayload, b.Payload()) {
		t.Errorf("RawPayload differs from the built payload")
	}
	if !bytes.Equal(o.Envelope, b.Envelope()) {
		t.Errorf("Envelope differs from the input")
	}
	_, pub := key("production-1")
	if diff := cmp.Diff([]string{snapshot.KeyID(pub)}, o.KeyIDs); diff != "" {
		t.Errorf("KeyIDs (-want +got):\n%s", diff)
	}

	// The opened snapshot, held, makes the same envelope a no-op and the
	// next version acceptable.
	held := opts("production-1")
	held.HeldVersion, held.HeldPayload = o.Payload.Version, o.RawPayload
	if _, err := snapshot.Open(b.Envelope(), held); !errors.Is(err, snapshot.ErrNotModified) {
		t.Errorf("reopening the held snapshot: err = %v, want ErrNotModified", err)
	}
	s1, _ := key("production-1")
	next, err := snapshot.Build(testSet(), 43, t0.Add(time.Minute), 24*time.Hour, []snapshot.Signer{s1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Open(next.Envelope(), held); err != nil {
		t.Errorf("opening the next version: %v", err)
	}
}

func TestOpenRejects(t *testing.T) {
	good := build(t, "production-1")
	env := good.Envelope()
	payload := good.Payload()
	sig := sigBy("production-1", snapshot.PayloadType, payload)
	b64 := base64.StdEncoding.EncodeToString(payload)
	// A payload whose base64 ends in "x=" (one pad character) lets us set
	// the unused low bits of x.
	padded := payloadJSON(t, func(p *snapshot.Payload) { p.Revision = 8 })
	for len(padded)%3 != 2 {
		padded = append(padded, ' ')
	}
	paddedB64 := base64.StdEncoding.EncodeToString(padded)
	nonCanonical := paddedB64[:len(paddedB64)-2] + string(paddedB64[len(paddedB64)-2]+1) + "="
	if lax, err := base64.StdEncoding.DecodeString(nonCanonical); err != nil || !bytes.Equal(lax, padded) {
		t.Fatalf("test setup: %q is not a non-canonical encoding of the padded payload", nonCanonical[len(nonCanonical)-4:])
	}

	_, otherPub := key("production-2")
	wrongHint := sig
	wrongHint.keyid = strings.Repeat("ab", 32)
	tampered := sigBy("production-1", snapshot.PayloadType, append([]byte(nil), payload...))
	tampered.sig[0] ^= 1

	tests := []struct {
		name     string
		envelope []byte
		opts     func(o *snapshot.OpenOptions)
		want     error
		message  string // if set, the exact Error()
	}{
		{
			name:     "over the size limit",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.MaxSize = len(env) - 1 },
			want:     snapshot.ErrTooLarge,
		},
		{
			name:     "over the limit beats malformed",
			envelope: append(bytes.Repeat([]byte("x"), 100), env...),
			opts:     func(o *snapshot.OpenOptions) { o.MaxSize = 50 },
			want:     snapshot.ErrTooLarge,
			message:  "snapshot envelope is 1413 bytes, over the limit of 50",
		},
		{name: "empty", envelope: nil, want: snapshot.ErrMalformed},
		{name: "null", envelope: []byte("null"), want: snapshot.ErrMalformed},
		{name: "empty object", envelope: []byte("{}"), want: snapshot.ErrMalformed},
		{name: "array", envelope: []byte("[]"), want: snapshot.ErrMalformed},
		{name: "trailing data", envelope: append(append([]byte(nil), env...), "{}"...), want: snapshot.ErrMalformed},
		{name: "two envelopes", envelope: append(append([]byte(nil), env...), env...), want: snapshot.ErrMalformed},
		{
			name:     "duplicate payload",
			envelope: []byte(`{"payloadType":"` + snapshot.PayloadType + `","payload":"e30=","payload":"` + b64 + `","signatures":[]}`),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "unknown field",
			envelope: bytes.Replace(env, []byte(`"signatures"`), []byte(`"extra":1,"signatures"`), 1),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "unknown signature field",
			envelope: bytes.Replace(env, []byte(`"sig"`), []byte(`"extension":{},"sig"`), 1),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "key in another case",
			envelope: bytes.Replace(env, []byte(`"payloadType"`), []byte(`"PayloadType"`), 1),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "payload not a string",
			envelope: bytes.Replace(env, []byte(`"payload":"`+b64+`"`), []byte(`"payload":42`), 1),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "line break in base64",
			envelope: bytes.Replace(env, []byte(b64[:40]), []byte(b64[:20]+`\n`+b64[20:40]), 1),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "url-safe base64",
			envelope: []byte(strings.NewReplacer("+", "-", "/", "_").Replace(string(env))),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "unpadded base64",
			envelope: bytes.Replace(env, []byte(b64), []byte(strings.TrimRight(b64, "=")), 1),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "non-zero padding bits",
			envelope: rawEnvelope(snapshot.PayloadType, padded, sigBy("production-1", snapshot.PayloadType, padded)),
			opts:     func(*snapshot.OpenOptions) {},
			want:     nil, // the canonical form opens; the next case is the same but for the padding bits
		},
		{
			name: "non-zero padding bits, altered",
			envelope: bytes.Replace(rawEnvelope(snapshot.PayloadType, padded, sigBy("production-1", snapshot.PayloadType, padded)),
				[]byte(paddedB64), []byte(nonCanonical), 1),
			want: snapshot.ErrMalformed,
		},
		{name: "no signatures", envelope: rawEnvelope(snapshot.PayloadType, payload), want: snapshot.ErrMalformed},
		{
			name:     "signatures missing",
			envelope: []byte(`{"payloadType":"` + snapshot.PayloadType + `","payload":"` + b64 + `"}`),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "too many signatures",
			envelope: rawEnvelope(snapshot.PayloadType, payload, sig, sig, sig, sig, sig, sig, sig, sig, sig),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "signature without sig",
			envelope: bytes.Replace(env, []byte(`,"sig":"`+base64.StdEncoding.EncodeToString(sig.sig)+`"`), nil, 1),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "wrong payload type",
			envelope: rawEnvelope("application/json", payload, sigBy("production-1", "application/json", payload)),
			want:     snapshot.ErrPayloadType,
			message:  `snapshot payload type is "application/json", want "application/vnd.solstice.snapshot.v1+json"`,
		},
		{
			name:     "wrong payload type beats unknown key",
			envelope: rawEnvelope("application/json", payload, sigBy("staging-1", "application/json", payload)),
			want:     snapshot.ErrPayloadType,
		},
		{
			name:     "signed under another payload type",
			envelope: rawEnvelope(snapshot.PayloadType, payload, sigBy("production-1", "application/json", payload)),
			want:     snapshot.ErrBadSignature,
		},
		{
			name:     "unknown key",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.Trusted = []ed25519.PublicKey{otherPub} },
			want:     snapshot.ErrUnknownKey,
			message:  "snapshot is signed by key ccd75e65140636c8…, which is not trusted",
		},
		{
			name: "unknown key beats a payload for the wrong environment",
			envelope: signed("staging-1", payloadJSON(t, func(p *snapshot.Payload) {
				p.Environment = "staging"
			})),
			want: snapshot.ErrUnknownKey,
		},
		{
			name:     "bad signature by a trusted key",
			envelope: rawEnvelope(snapshot.PayloadType, payload, tampered),
			want:     snapshot.ErrBadSignature,
			message:  "snapshot signature by trusted key ccd75e65140636c8… does not verify",
		},
		{
			name:     "signature over other content",
			envelope: rawEnvelope(snapshot.PayloadType, payload, sigBy("production-1", snapshot.PayloadType, padded)),
			want:     snapshot.ErrBadSignature,
		},
		{
			name:     "truncated signature",
			envelope: rawEnvelope(snapshot.PayloadType, payload, rawSig{keyid: sig.keyid, sig: sig.sig[:63]}),
			want:     snapshot.ErrBadSignature,
		},
		{
			name:     "bad signature with an unknown hint",
			envelope: rawEnvelope(snapshot.PayloadType, payload, rawSig{keyid: "", sig: tampered.sig}),
			want:     snapshot.ErrUnknownKey,
		},
		{
			name:     "schema 2",
			envelope: signed("production-1", []byte(`{"schema":2,"environment":"production","flags":{}}`)),
			want:     snapshot.ErrSchema,
			message:  "snapshot schema 2 is not supported, want 1",
		},
		{
			name:     "no schema",
			envelope: signed("production-1", []byte(`{"environment":"production","version":43}`)),
			want:     snapshot.ErrSchema,
		},
		{
			name:     "signed payload not an object",
			envelope: signed("production-1", []byte(`[1,2]`)),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "signed payload of the wrong shape",
			envelope: signed("production-1", []byte(`{"schema":1,"environment":"production","version":43,"flags":{}}`)),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "signed payload with version 0",
			envelope: signed("production-1", payloadJSON(t, func(p *snapshot.Payload) { p.Version = 0 })),
			want:     snapshot.ErrMalformed,
		},
		{
			name:     "wrong environment",
			envelope: signed("production-1", payloadJSON(t, func(p *snapshot.Payload) { p.Environment = "staging" })),
			want:     snapshot.ErrWrongEnvironment,
			message:  `snapshot is for environment "staging", want "production"`,
		},
		{
			name: "wrong environment beats rollback and expiry",
			envelope: signed("production-1", payloadJSON(t, func(p *snapshot.Payload) {
				p.Environment, p.Version, p.ExpiresAt = "staging", 1, 1
			})),
			opts: func(o *snapshot.OpenOptions) { o.HeldVersion = 42 },
			want: snapshot.ErrWrongEnvironment,
		},
		{
			name:     "lower version",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.HeldVersion = 43 },
			want:     snapshot.ErrRollback,
			message:  "snapshot version 42 is below held version 43: rollback refused",
		},
		{
			name:     "lower version beats expiry",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.HeldVersion = 43; o.Now = t0.Add(48 * time.Hour) },
			want:     snapshot.ErrRollback,
		},
		{
			name:     "equal version, other content",
			envelope: env,
			opts: func(o *snapshot.OpenOptions) {
				o.HeldVersion = 42
				o.HeldPayload = payloadJSON(t, func(p *snapshot.Payload) { p.Revision = 6 })
			},
			want:    snapshot.ErrRollback,
			message: "snapshot version 42 equals the held version but its content differs: rollback refused",
		},
		{
			name:     "equal version, held bytes unknown",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.HeldVersion = 42 },
			want:     snapshot.ErrRollback,
		},
		{
			name:     "equal version, same content",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.HeldVersion, o.HeldPayload = 42, payload },
			want:     snapshot.ErrNotModified,
			message:  "snapshot version 42 is the one already held: not modified",
		},
		{
			name:     "expired",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.Now = t0.Add(27 * time.Hour) },
			want:     snapshot.ErrExpired,
			message:  "snapshot expired at 2026-11-25T10:00:00Z (3h ago)",
		},
		{
			name:     "expires this very second",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.Now = t0.Add(24 * time.Hour) },
			want:     snapshot.ErrExpired,
			message:  "snapshot expired at 2026-11-25T10:00:00Z (0s ago)",
		},
		{
			name:     "a second before expiry",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.Now = t0.Add(24*time.Hour - time.Second) },
		},
		{
			name:     "exactly at the size limit",
			envelope: env,
			opts:     func(o *snapshot.OpenOptions) { o.MaxSize = len(env) },
		},
		{
			name:     "wrong key id hint, trusted key",
			envelope: rawEnvelope(snapshot.PayloadType, payload, wrongHint),
		},
		{
			name:     "no key id hint",
			envelope: rawEnvelope(snapshot.PayloadType, payload, rawSig{sig: sig.sig}),
		},
		{
			name:     "trusted key among several",
			envelope: env,
			opts: func(o *snapshot.OpenOptions) {
				_, a := key("a")
				_, b := key("b")
				o.Trusted = []ed25519.PublicKey{a, o.Trusted[0], b}
			},
		},
		{
			name:     "one good signature among bad ones",
			envelope: rawEnvelope(snapshot.PayloadType, payload, tampered, sigBy("staging-1", snapshot.PayloadType, payload), sig),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts("production-1")
			if tt.opts != nil {
				tt.opts(&o)
			}
			got, err := snapshot.Open(tt.envelope, o)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Open: %v, want success", err)
				}
				return
			}
			if got != nil {
				t.Errorf("Open returned a snapshot (version %d) with error %v", got.Payload.Version, err)
			}
			checkRejection(t, err, tt.want)
			if tt.message != "" && err.Error() != tt.message {
				t.Errorf("message:\n got %s\nwant %s", err, tt.message)
			}
		})
	}
}

// checkRejection asserts that err is a *VerifyError matching want and no
// other sentinel.
func checkRejection(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Open succeeded, want %v", want)
	}
	var verr *snapshot.VerifyError
	if !errors.As(err, &verr) {
		t.Fatalf("error %v (%T) is not a *VerifyError", err, err)
	}
	for _, s := range allSentinels {
		if got := errors.Is(err, s); got != (s == want) { //nolint:errorlint // comparing sentinel identities, not errors
			t.Errorf("errors.Is(%q, %q) = %v", err, s, got)
		}
	}
}

func TestOpenErrorDetails(t *testing.T) {
	env := build(t, "production-1").Envelope()
	o := opts("production-1")
	o.Now = t0.Add(25 * time.Hour)
	_, err := snapshot.Open(env, o)
	var verr *snapshot.VerifyError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *VerifyError", err)
	}
	want := &snapshot.VerifyError{
		Reason: snapshot.ReasonExpired, Message: "snapshot expired at 2026-11-25T10:00:00Z (1h ago)",
		Environment: testEnv, Version: 42, ExpiresAt: t0.Add(24 * time.Hour),
	}
	if diff := cmp.Diff(want, verr); diff != "" {
		t.Errorf("VerifyError (-want +got):\n%s", diff)
	}

	_, err = snapshot.Open(env, opts("staging-1"))
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *VerifyError", err)
	}
	_, pub := key("production-1")
	if verr.Reason != snapshot.ReasonUnknownKey || !cmp.Equal(verr.KeyIDs, []string{snapshot.KeyID(pub)}) {
		t.Errorf("unknown key: reason %s, key ids %v; want %s, [%s]", verr.Reason, verr.KeyIDs, snapshot.ReasonUnknownKey, snapshot.KeyID(pub))
	}
	// Nothing from the unverified payload leaks into the error.
	if verr.Environment != "" || verr.Version != 0 || !verr.ExpiresAt.IsZero() {
		t.Errorf("unknown key: error carries unverified payload details: %+v", verr)
	}
}

func TestOpenOptionErrors(t *testing.T) {
	env := build(t, "production-1").Envelope()
	tests := []struct {
		name string
		edit func(o *snapshot.OpenOptions)
	}{
		{"no trusted keys", func(o *snapshot.OpenOptions) { o.Trusted = nil }},
		{"short trusted key", func(o *snapshot.OpenOptions) { o.Trusted = append(o.Trusted, ed25519.PublicKey{1, 2, 3}) }},
		{"no environment", func(o *snapshot.OpenOptions) { o.Environment = "" }},
		{"no time", func(o *snapshot.OpenOptions) { o.Now = time.Time{} }},
		{"negative size limit", func(o *snapshot.OpenOptions) { o.MaxSize = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts("production-1")
			tt.edit(&o)
			got, err := snapshot.Open(env, o)
			if got != nil || !solstice.IsKind(err, solstice.KindInvalid) {
				t.Errorf("Open = %v, %v; want nil and a KindInvalid error", got, err)
			}
			var verr *snapshot.VerifyError
			if errors.As(err, &verr) {
				t.Errorf("a configuration error is a *VerifyError: %v", err)
			}
		})
	}
}

func TestDecodeUnverified(t *testing.T) {
	env := signed("staging-1", payloadJSON(t, func(p *snapshot.Payload) { p.Environment = "staging" }))
	e, p, err := snapshot.DecodeUnverified(env)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := key("staging-1")
	if e.PayloadType != snapshot.PayloadType || len(e.Signatures) != 1 || e.Signatures[0].KeyID != snapshot.KeyID(pub) {
		t.Errorf("envelope = %+v", e)
	}
	if p.Environment != "staging" || p.Version != 42 {
		t.Errorf("payload claims %q version %d, want staging 42", p.Environment, p.Version)
	}

	if _, _, err := snapshot.DecodeUnverified([]byte("{")); !errors.Is(err, snapshot.ErrMalformed) {
		t.Errorf("truncated: err = %v, want ErrMalformed", err)
	}
	e, p, err = snapshot.DecodeUnverified(signed("x", []byte(`{"schema":9}`)))
	if e == nil || p != nil || !errors.Is(err, snapshot.ErrSchema) {
		t.Errorf("schema 9: got %v, %v, %v; want the envelope, no payload, ErrSchema", e, p, err)
	}
}
