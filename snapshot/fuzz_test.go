package snapshot_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"

	"github.com/solsticehq/solstice/snapshot"
)

// FuzzOpen feeds arbitrary envelopes to Open. Open must not panic, must
// answer every rejection with a *VerifyError, and may only succeed for a
// payload the test key really signed (the seeds below are the only such
// payloads, and the fuzzer cannot forge a signature): that is checked
// without package snapshot, by a hand-made PAE and crypto/ed25519.
//
//	go test -fuzz FuzzOpen ./snapshot/
func FuzzOpen(f *testing.F) {
	signedPayloads := map[string]bool{}
	add := func(env []byte) { f.Add(env) }
	sign := func(name string, payload []byte) []byte {
		if name == "production-1" {
			signedPayloads[string(payload)] = true
		}
		return signed(name, payload)
	}

	good := build(f, "production-1", "production-2")
	signedPayloads[string(good.Payload())] = true
	env := good.Envelope()
	add(env)
	add(build(f, "production-1").Envelope())
	add(sign("production-1", payloadJSON(f, func(p *snapshot.Payload) { p.Version = 43 })))
	add(sign("production-1", payloadJSON(f, func(p *snapshot.Payload) { p.Environment = "staging" })))
	add(sign("production-1", payloadJSON(f, func(p *snapshot.Payload) { p.ExpiresAt = 1 })))
	add(sign("production-1", []byte(`{"schema":2}`)))
	add(sign("staging-1", payloadJSON(f, nil)))
	for _, i := range []int{0, 1, 20, 60, len(env) / 2, len(env) - 90, len(env) - 3, len(env) - 1} {
		m := bytes.Clone(env)
		m[i] ^= 0x01
		add(m)
		add(env[:i])
	}
	add([]byte(`{"payloadType":"","payload":"","signatures":[{"keyid":"","sig":""}]}`))
	add([]byte(`{}`))
	add(nil)

	_, pub := key("production-1")
	f.Fuzz(func(t *testing.T, data []byte) {
		o := opts("production-1", "production-2")
		got, err := snapshot.Open(data, o)
		if err != nil {
			var verr *snapshot.VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("rejection is a %T, not a *VerifyError: %v", err, err)
			}
			if got != nil {
				t.Fatalf("Open returned a snapshot with error %v", err)
			}
			return
		}
		if !signedPayloads[string(got.RawPayload)] && !bytes.Equal(got.RawPayload, good.Payload()) {
			t.Fatalf("Open accepted a payload nobody signed:\n%s", got.RawPayload)
		}
		e, _, err := snapshot.DecodeUnverified(data)
		if err != nil {
			t.Fatalf("Open accepted what DecodeUnverified rejects: %v", err)
		}
		pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(e.PayloadType), e.PayloadType, len(got.RawPayload), got.RawPayload)
		_, pub2 := key("production-2")
		ok := false
		for _, s := range e.Signatures {
			ok = ok || ed25519.Verify(pub, pae, s.Sig) || ed25519.Verify(pub2, pae, s.Sig)
		}
		if !ok {
			t.Fatal("Open accepted an envelope without a valid signature by a trusted key")
		}
		if got.Payload.Environment != testEnv || got.Payload.Version < 1 || got.Payload.ExpiresAt <= o.Now.Unix() {
			t.Fatalf("Open accepted %q v%d expiring %d", got.Payload.Environment, got.Payload.Version, got.Payload.ExpiresAt)
		}
	})
}

// FuzzParsePublicKeys checks that the parser of client key configuration
// never panics and returns only well-formed keys.
func FuzzParsePublicKeys(f *testing.F) {
	_, pub := key("production-1")
	f.Add(must(snapshot.MarshalPublicKey(pub)))
	f.Add([]byte("MCowBQYDK2VwAyEA, abc"))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := snapshot.ParsePublicKeys(data)
		if err == nil && len(keys) == 0 {
			t.Fatal("no keys and no error")
		}
		for _, k := range keys {
			if len(k) != ed25519.PublicKeySize {
				t.Fatalf("key of %d bytes", len(k))
			}
		}
	})
}
