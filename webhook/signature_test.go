package webhook

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
)

// The test vector of the Standard Webhooks reference libraries
// (libraries/go/webhook_test.go, TestWebhookSign, in
// github.com/standard-webhooks/standard-webhooks).
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// otherSecret is a second valid secret, for rotations.
const otherSecret = "whsec_c29sc3RpY2Utb3RoZXItc2VjcmV0LWtleS0wMQ=="

func TestSignStandardWebhooksVector(t *testing.T) {
	got, err := Sign(specSecret, specID, time.Unix(specTimestamp, 0), []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != specSignature {
		t.Errorf("Sign = %s, want %s", got, specSignature)
	}
	// The same key given raw: its bytes are the key.
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(specSecret, SecretPrefix))
	raw, err := Sign(string(key), specID, time.Unix(specTimestamp, 0).Add(999*time.Millisecond), []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	if raw != specSignature {
		t.Errorf("Sign with the raw key (and a fractional second) = %s, want %s", raw, specSignature)
	}
}

// TestSignGolden pins a Solstice-shaped delivery, computed once (and
// checked with openssl, see docs/webhooks.md).
func TestSignGolden(t *testing.T) {
	body := `{"type":"guardrail.trip","timestamp":"2026-03-01T12:00:00Z","data":{"id":"prod/double-xp/rejects/test-1/2-trip"}}`
	got, err := Sign(specSecret, "prod/double-xp/rejects/test-1/2-trip@ops", time.Unix(1772366400, 0), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	const want = "v1,agXT7mvl3MKy9yLUkMaQ9P8Qv/VmHMS7uKTsPwiZaHk="
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestSignRotation(t *testing.T) {
	at := time.Unix(specTimestamp, 0)
	both, err := Sign(specSecret+"  "+otherSecret, specID, at, []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	other, err := Sign(otherSecret, specID, at, []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	if want := specSignature + " " + other; both != want {
		t.Errorf("Sign with two secrets = %q, want %q", both, want)
	}
	h := headers(specID, strconv.Itoa(specTimestamp), both)
	for _, secret := range []string{specSecret, otherSecret, otherSecret + " " + specSecret} {
		if err := Verify(secret, h, []byte(specBody), at); err != nil {
			t.Errorf("Verify under %d secret(s) of a doubly signed delivery: %v", len(strings.Fields(secret)), err)
		}
	}
}

func TestSignErrors(t *testing.T) {
	at := time.Unix(specTimestamp, 0)
	for _, tc := range []struct {
		name, secret, id, want string
	}{
		{"no secret", " ", specID, "no secret given"},
		{"bad base64", "whsec_not*base64", specID, "the secret starts with whsec_ but the rest is not standard base64"},
		{"short key", "whsec_c2hvcnQ=", specID, "the secret is 5 bytes long; at least 24 are required"},
		{"short raw", "short-raw-secret", specID, "the secret is 16 bytes long; at least 24 are required"},
		{"second bad", specSecret + " whsec_!!", specID, "secret 2 of 2 starts with whsec_"},
		{"empty id", specSecret, "", "the id is empty"},
		{"id with space", specSecret, "msg 1", "the id must be visible ASCII"},
		{"id with newline", specSecret, "msg\n1", "the id must be visible ASCII"},
		{"id too long", specSecret, strings.Repeat("a", 1025), "the id is longer than 1024 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Sign(tc.secret, tc.id, at, []byte(specBody))
			if !solstice.IsKind(err, solstice.KindInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign = %q, %v; want a KindInvalid error containing %q", got, err, tc.want)
			}
			if strings.Contains(err.Error(), "not*base64") || strings.Contains(err.Error(), "short-raw") {
				t.Errorf("the error %q quotes the secret", err)
			}
		})
	}
}

// headers returns the three headers of a delivery, as net/http hands them
// to a handler.
func headers(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, sig)
	return h
}

func TestVerify(t *testing.T) {
	at := time.Unix(specTimestamp, 0)
	ts := strconv.Itoa(specTimestamp)
	otherSig, _ := Sign(otherSecret, specID, at, []byte(specBody))
	tests := []struct {
		name   string
		secret string
		header http.Header
		body   string
		now    time.Time
		opts   []VerifyOption
		want   error // nil, or the sentinel
	}{
		{name: "valid", header: headers(specID, ts, specSignature)},
		{name: "tolerance bound in the past", header: headers(specID, ts, specSignature), now: at.Add(DefaultTolerance)},
		{name: "tolerance bound in the future", header: headers(specID, ts, specSignature), now: at.Add(-DefaultTolerance)},
		{name: "too old", header: headers(specID, ts, specSignature), now: at.Add(DefaultTolerance + time.Second), want: ErrTooOld},
		{name: "too new", header: headers(specID, ts, specSignature), now: at.Add(-DefaultTolerance - time.Second), want: ErrTooNew},
		{name: "wider tolerance", header: headers(specID, ts, specSignature), now: at.Add(9 * time.Minute), opts: []VerifyOption{WithTolerance(10 * time.Minute)}},
		{name: "non-positive tolerance keeps the default", header: headers(specID, ts, specSignature), now: at.Add(6 * time.Minute), opts: []VerifyOption{WithTolerance(-1)}, want: ErrTooOld},
		{name: "rotation list, valid one third", header: headers(specID, ts, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== "+specSignature)},
		{name: "rotation list, receiver holds the other secret", secret: otherSecret, header: headers(specID, ts, specSignature+" "+otherSig)},
		{name: "receiver holds both secrets", secret: otherSecret + " " + specSecret, header: headers(specID, ts, specSignature)},
		{name: "signatures on two header lines", header: func() http.Header {
			h := headers(specID, ts, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")
			h.Add(HeaderSignature, specSignature)
			return h
		}()},
		{name: "lower-case keys of a map built by hand", header: http.Header{"webhook-id": {specID}, "webhook-timestamp": {ts}, "webhook-signature": {specSignature}}},
		{name: "wrong secret", secret: otherSecret, header: headers(specID, ts, specSignature), want: ErrBadSignature},
		{name: "other body", header: headers(specID, ts, specSignature), body: `{"test": 2432232315}`, want: ErrBadSignature},
		{name: "other id", header: headers(specID+"x", ts, specSignature), want: ErrBadSignature},
		{name: "other timestamp", header: headers(specID, strconv.Itoa(specTimestamp+1), specSignature), want: ErrBadSignature},
		{name: "v1a only", header: headers(specID, ts, "v1a,"+strings.TrimPrefix(specSignature, "v1,")), want: ErrBadSignature},
		{name: "no version", header: headers(specID, ts, strings.TrimPrefix(specSignature, "v1,")), want: ErrBadSignature},
		{name: "v1 with the signature re-encoded unpadded", header: headers(specID, ts, strings.TrimSuffix(specSignature, "=")), want: ErrBadSignature},
		{name: "missing id", header: headers("", ts, specSignature), want: ErrMissingHeader},
		{name: "missing timestamp", header: headers(specID, "", specSignature), want: ErrMissingHeader},
		{name: "missing signature", header: headers(specID, ts, ""), want: ErrMissingHeader},
		{name: "blank signature", header: headers(specID, ts, "   "), want: ErrMissingHeader},
		{name: "no headers", header: http.Header{}, want: ErrMissingHeader},
		{name: "repeated id", header: func() http.Header { h := headers(specID, ts, specSignature); h.Add(HeaderID, "msg_2"); return h }(), want: ErrMalformedHeader},
		{name: "repeated timestamp", header: func() http.Header { h := headers(specID, ts, specSignature); h.Add(HeaderTimestamp, ts); return h }(), want: ErrMalformedHeader},
		{name: "timestamp not a number", header: headers(specID, "yesterday", specSignature), want: ErrMalformedHeader},
		{name: "timestamp with a sign", header: headers(specID, "+"+ts, specSignature), want: ErrMalformedHeader},
		{name: "timestamp with a leading zero", header: headers(specID, "0"+ts, specSignature), want: ErrMalformedHeader},
		{name: "timestamp in milliseconds", header: headers(specID, ts+"000", specSignature), want: ErrTooNew},
		{name: "timestamp fractional", header: headers(specID, ts+".5", specSignature), want: ErrMalformedHeader},
		{name: "timestamp overflowing", header: headers(specID, "99999999999999999999", specSignature), want: ErrMalformedHeader},
		{name: "id with a control character", header: headers("msg\x01", ts, specSignature), want: ErrMalformedHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			secret := cmpOr(tc.secret, specSecret)
			body := cmpOr(tc.body, specBody)
			now := tc.now
			if now.IsZero() {
				now = at
			}
			err := Verify(secret, tc.header, []byte(body), now, tc.opts...)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Verify = %v, want nil", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			case tc.want != nil && !solstice.IsKind(err, solstice.KindUnauthorized):
				t.Fatalf("Verify = %v of kind %s, want kind unauthorized", err, solstice.ErrorKind(err))
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestVerifyMessages(t *testing.T) {
	at := time.Unix(specTimestamp, 0)
	ts := strconv.Itoa(specTimestamp)
	for _, tc := range []struct {
		name   string
		header http.Header
		now    time.Time
		want   string
	}{
		{"missing", headers(specID, ts, ""), at, "the webhook-signature header is missing: missing webhook header"},
		{"too old", headers(specID, ts, specSignature), at.Add(7 * time.Minute), "the webhook-timestamp header is 7m0s in the past, more than the tolerance of 5m0s: webhook timestamp too old"},
		{"too new", headers(specID, ts, specSignature), at.Add(-time.Hour), "the webhook-timestamp header is 1h0m0s in the future, more than the tolerance of 5m0s: webhook timestamp too new"},
		{"bad", headers(specID, ts, "v1,AAAA"), at, "no v1 signature in the webhook-signature header matches the body, id and timestamp under the secret: no valid webhook signature"},
		{"unversioned", headers(specID, ts, "AAAA"), at, "the webhook-signature header has no v1 signature: no valid webhook signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(specSecret, tc.header, []byte(specBody), tc.now)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Verify = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestVerifyBadSecret(t *testing.T) {
	h := headers(specID, strconv.Itoa(specTimestamp), specSignature)
	for _, secret := range []string{"", "whsec_%%%", "too-short"} {
		err := Verify(secret, h, []byte(specBody), time.Unix(specTimestamp, 0))
		if !solstice.IsKind(err, solstice.KindInvalid) {
			t.Errorf("Verify with secret %q = %v, want a KindInvalid error", secret, err)
		}
	}
}

// TestVerifyRejectsEveryByteChange flips every bit of the body, the id and
// the timestamp, drops their last byte and appends one, and expects each
// change to be rejected.
func TestVerifyRejectsEveryByteChange(t *testing.T) {
	body := []byte(`{"type":"guardrail.trip","timestamp":"2026-03-01T12:00:00Z","data":{"flag":"double-xp"}}`)
	id := "prod/double-xp/rejects/test-1/2-trip@ops"
	at := time.Unix(1772366400, 0)
	ts := strconv.FormatInt(at.Unix(), 10)
	sig, err := Sign(specSecret, id, at, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(specSecret, headers(id, ts, sig), body, at); err != nil {
		t.Fatalf("the unchanged delivery: %v", err)
	}
	variants := func(s []byte) [][]byte {
		var out [][]byte
		for i := range s {
			for bit := range 8 {
				c := []byte(string(s))
				c[i] ^= 1 << bit
				out = append(out, c)
			}
		}
		return append(out, s[:len(s)-1], append([]byte(string(s)), 'x'), append([]byte(string(s)), '0'))
	}
	n := 0
	for _, b := range variants(body) {
		if err := Verify(specSecret, headers(id, ts, sig), b, at); err == nil {
			t.Errorf("Verify accepted the body %q", b)
		}
		n++
	}
	for _, v := range variants([]byte(id)) {
		h := http.Header{HeaderID: {string(v)}, HeaderTimestamp: {ts}, HeaderSignature: {sig}}
		if err := Verify(specSecret, h, body, at); err == nil {
			t.Errorf("Verify accepted the id %q", v)
		}
		n++
	}
	for _, v := range variants([]byte(ts)) {
		h := http.Header{HeaderID: {id}, HeaderTimestamp: {string(v)}, HeaderSignature: {sig}}
		// A receiver far in the future or the past must still reject it
		// for its signature: give it all the tolerance it could want.
		if err := Verify(specSecret, h, body, at, WithTolerance(1<<62)); err == nil {
			t.Errorf("Verify accepted the timestamp %q", v)
		}
		n++
	}
	for _, v := range variants([]byte(sig)) {
		if err := Verify(specSecret, headers(id, ts, string(v)), body, at); err == nil {
			t.Errorf("Verify accepted the signature %q", v)
		}
		n++
	}
	if n < 1000 {
		t.Errorf("only %d variants tried", n)
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b {
		t.Errorf("two NewSecret calls returned %q", a)
	}
	keys, err := parseSecrets(a)
	if err != nil || len(keys) != 1 || len(keys[0]) != 32 {
		t.Fatalf("parseSecrets(NewSecret()) = %d keys, %v; want one 32-byte key", len(keys), err)
	}
	sig, err := Sign(a, specID, time.Unix(specTimestamp, 0), []byte(specBody))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(a, headers(specID, strconv.Itoa(specTimestamp), sig), []byte(specBody), time.Unix(specTimestamp, 0)); err != nil {
		t.Errorf("Verify of a delivery signed with a new secret: %v", err)
	}
}

// FuzzVerify feeds Verify untrusted headers and bodies. It must never
// panic, and must accept only deliveries that carry the very signature
// Sign computes for them.
func FuzzVerify(f *testing.F) {
	ts := strconv.Itoa(specTimestamp)
	f.Add(specID, ts, specSignature, []byte(specBody))
	f.Add(specID, ts, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "+specSignature, []byte(specBody))
	f.Add(specID, ts, "v1a,"+specSignature[3:]+" v2,x v1,", []byte(specBody))
	f.Add(specID, "-"+ts, specSignature, []byte(specBody))
	f.Add("a.b", "1.2", "v1,,,, ,v1 v1,=", []byte("{}"))
	f.Add("", "", "", []byte(nil))
	f.Add(specID, "9223372036854775807", specSignature, []byte(specBody))
	f.Add("msg\x00\xff", "0", "v1,\t"+specSignature, []byte("\xff"))
	now := time.Unix(specTimestamp, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{HeaderID: {id}, HeaderTimestamp: {ts}, HeaderSignature: {sig}}
		err := Verify(specSecret, h, body, now)
		if err == nil {
			unix, perr := strconv.ParseInt(ts, 10, 64)
			if perr != nil {
				t.Fatalf("accepted the timestamp %q", ts)
			}
			want, serr := Sign(specSecret, strings.TrimSpace(id), time.Unix(unix, 0), body)
			if serr != nil {
				t.Fatalf("accepted the id %q that Sign refuses: %v", id, serr)
			}
			if !strings.Contains(" "+strings.Join(strings.Fields(sig), " ")+" ", " "+want+" ") {
				t.Fatalf("accepted %q, which lacks the signature %s", sig, want)
			}
			return
		}
		if !solstice.IsKind(err, solstice.KindUnauthorized) {
			t.Fatalf("Verify = %v of kind %s, want kind unauthorized", err, solstice.ErrorKind(err))
		}
		for _, sentinel := range []error{ErrMissingHeader, ErrMalformedHeader, ErrBadSignature, ErrTooOld, ErrTooNew} {
			if errors.Is(err, sentinel) {
				return
			}
		}
		t.Fatalf("Verify = %v, which wraps none of the sentinel errors", err)
	})
}
