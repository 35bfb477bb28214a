package snapshot_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice/snapshot"
)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed (run go test -update if intended):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

// TestGolden pins the exact bytes of a snapshot: the payload encoding, the
// envelope and (Ed25519 being deterministic) the signature. Game servers in
// other languages are tested against these files.
func TestGolden(t *testing.T) {
	b := build(t, "production-1")
	golden(t, "payload.golden", b.Payload())
	golden(t, "envelope.golden", b.Envelope())

	_, pub := key("production-1")
	golden(t, "production-1.pub.golden", must(snapshot.MarshalPublicKey(pub)))
}

// TestGoldenIndependentVerify checks the golden envelope with nothing from
// package snapshot but the key: encoding/json, base64, a hand-written PAE
// and crypto/ed25519, as a client in another language would.
func TestGoldenIndependentVerify(t *testing.T) {
	env, err := os.ReadFile(filepath.Join("testdata", "envelope.golden"))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Signatures) != 1 {
		t.Fatalf("got %d signatures, want 1", len(e.Signatures))
	}
	_, pub := key("production-1")
	sum := sha256.Sum256(pub)
	if got, want := e.Signatures[0].KeyID, hex.EncodeToString(sum[:]); got != want {
		t.Errorf("keyid = %s, want hex sha256 of the public key %s", got, want)
	}
	sig, err := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(e.PayloadType), e.PayloadType, len(payload), payload)
	if !ed25519.Verify(pub, []byte(pae), sig) {
		t.Error("signature does not verify over the hand-made PAE")
	}
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"schema": 1.0, "environment": "production", "version": 42.0, "revision": 7.0,
		"issued_at": float64(t0.Unix()), "expires_at": float64(t0.Add(24 * time.Hour).Unix()),
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("payload %s = %v, want %v", k, p[k], v)
		}
	}
}

func TestPayloadMarshalDeterministic(t *testing.T) {
	a := payloadJSON(t, nil)
	for range 20 {
		if b := payloadJSON(t, nil); !bytes.Equal(a, b) {
			t.Fatalf("two encodings of one payload differ:\n%s\n%s", a, b)
		}
	}
	// Raw JSON values are compacted and nothing is HTML-escaped, so that
	// any client can reproduce the bytes' meaning without surprises.
	for _, want := range []string{`{"drops":[],"xp":1}`, `"<scarf> & hat"`} {
		if !bytes.Contains(a, []byte(want)) {
			t.Errorf("payload lacks %s:\n%s", want, a)
		}
	}
	empty, err := (&snapshot.Payload{Schema: 1, Environment: "dev", Version: 1}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"schema":1,"environment":"dev","version":1,"revision":0,"issued_at":0,"expires_at":0,"flags":[],"segments":[]}`; string(empty) != want {
		t.Errorf("empty payload:\n got %s\nwant %s", empty, want)
	}
}

// TestPAE pins the pre-authentication encoding with the test vector of the
// DSSE specification (protocol.md) and edge cases.
func TestPAE(t *testing.T) {
	tests := []struct {
		typ     string
		payload string
		want    string
	}{
		{"http://example.com/HelloWorld", "hello world", "DSSEv1 29 http://example.com/HelloWorld 11 hello world"},
		{"", "", "DSSEv1 0  0 "},
		{snapshot.PayloadType, "{}", "DSSEv1 41 application/vnd.solstice.snapshot.v1+json 2 {}"},
		{"t", "héllo", "DSSEv1 1 t 6 héllo"}, // lengths count bytes, not characters
	}
	for _, tt := range tests {
		if got := string(snapshot.PAE(tt.typ, []byte(tt.payload))); got != tt.want {
			t.Errorf("PAE(%q, %q) = %q, want %q", tt.typ, tt.payload, got, tt.want)
		}
	}
}

func TestKeyID(t *testing.T) {
	// The key of RFC 8032's test 1, so that other implementations can
	// check their key ids against a key they already have.
	seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if got, want := hex.EncodeToString(pub), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"; got != want {
		t.Fatalf("RFC 8032 public key = %s, want %s", got, want)
	}
	sum := sha256.Sum256(pub)
	if got, want := snapshot.KeyID(pub), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("KeyID = %s, want %s", got, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
