package snapshot_test

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

func TestBuild(t *testing.T) {
	b := build(t, "production-1", "production-2")
	if b.Environment() != testEnv || b.Version() != 42 || b.Revision() != 7 || b.FlagCount() != 2 {
		t.Errorf("Built = %s v%d r%d %d flags; want production v42 r7 2 flags", b.Environment(), b.Version(), b.Revision(), b.FlagCount())
	}
	if !b.IssuedAt().Equal(t0) || !b.ExpiresAt().Equal(t0.Add(24*time.Hour)) {
		t.Errorf("validity %v – %v, want %v – %v", b.IssuedAt(), b.ExpiresAt(), t0, t0.Add(24*time.Hour))
	}
	sum := sha256.Sum256(b.Payload())
	if want := `"` + hex.EncodeToString(sum[:]) + `"`; b.ETag() != want {
		t.Errorf("ETag = %s, want %s", b.ETag(), want)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.Gzip()))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unzipped, b.Envelope()) {
		t.Error("Gzip does not decompress to Envelope")
	}
	if len(b.Gzip()) >= len(b.Envelope()) {
		t.Errorf("gzip is %d bytes, envelope %d", len(b.Gzip()), len(b.Envelope()))
	}
	_, p1 := key("production-1")
	_, p2 := key("production-2")
	ids := b.KeyIDs()
	if len(ids) != 2 || ids[0] != snapshot.KeyID(p1) || ids[1] != snapshot.KeyID(p2) {
		t.Errorf("KeyIDs = %v", ids)
	}
	ids[0] = "changed"
	if b.KeyIDs()[0] == "changed" {
		t.Error("KeyIDs exposes the Built's own slice")
	}
	for _, pub := range []ed25519.PublicKey{p1, p2} {
		o := opts()
		o.Trusted = []ed25519.PublicKey{pub}
		if _, err := snapshot.Open(b.Envelope(), o); err != nil {
			t.Errorf("open trusting %s: %v", snapshot.KeyID(pub), err)
		}
	}

	// Same input, same bytes: the ETag is stable across replicas.
	again := build(t, "production-1", "production-2")
	if !bytes.Equal(again.Envelope(), b.Envelope()) || !bytes.Equal(again.Gzip(), b.Gzip()) || again.ETag() != b.ETag() {
		t.Error("two builds of the same input differ")
	}
}

func TestBuildRefuses(t *testing.T) {
	s, _ := key("production-1")
	signers := []snapshot.Signer{s}
	noEnv := testSet()
	noEnv.Environment = ""
	badValue := testSet()
	badValue.Flags[0].Variants[0].Value = []byte(`{not json`)
	huge := flags.Set{Environment: testEnv, Flags: []flags.FlagState{{Key: "big", Type: flags.TypeString, Config: flags.Config{
		Variants: []flags.Variant{{Key: "v", Value: append(append([]byte(`"`), bytes.Repeat([]byte("x"), snapshot.DefaultMaxSize*3/4)...), '"')}},
	}}}}
	tests := []struct {
		name    string
		set     flags.Set
		version int64
		ttl     time.Duration
		signers []snapshot.Signer
		kind    solstice.Kind
	}{
		{"no environment", noEnv, 1, time.Hour, signers, solstice.KindInvalid},
		{"version 0", testSet(), 0, time.Hour, signers, solstice.KindInvalid},
		{"ttl under a second", testSet(), 1, time.Millisecond, signers, solstice.KindInvalid},
		{"no signers", testSet(), 1, time.Hour, nil, solstice.KindInvalid},
		{"same key twice", testSet(), 1, time.Hour, []snapshot.Signer{s, s}, solstice.KindInvalid},
		{"invalid raw JSON", badValue, 1, time.Hour, signers, solstice.KindInternal},
		{"over the client size limit", huge, 1, time.Hour, signers, solstice.KindTooLarge},
	}
	for _, tt := range tests {
		b, err := snapshot.Build(tt.set, tt.version, t0, tt.ttl, tt.signers)
		if b != nil || !solstice.IsKind(err, tt.kind) {
			t.Errorf("%s: Build = %v, %v; want nil and a %s error", tt.name, b, err, tt.kind)
		}
	}
}

// brokenSigner returns a signature that does not verify, or an error.
type brokenSigner struct {
	snapshot.Signer
	err error
}

func (b brokenSigner) Sign(msg []byte) ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	sig, _ := b.Signer.Sign(append(msg, 'x'))
	return sig, nil
}

func TestSignChecksSigners(t *testing.T) {
	s := snapshottest.Signer("production-1")
	if _, err := snapshot.Sign([]byte("{}"), brokenSigner{Signer: s}); !solstice.IsKind(err, solstice.KindInternal) {
		t.Errorf("signer producing a bad signature: err = %v, want KindInternal", err)
	}
	kms := errors.New("kms unavailable")
	if _, err := snapshot.Sign([]byte("{}"), brokenSigner{Signer: s, err: kms}); !errors.Is(err, kms) {
		t.Errorf("failing signer: err = %v, want it wrapped", err)
	}
	many := make([]snapshot.Signer, snapshot.MaxSignatures+1)
	for i := range many {
		many[i] = snapshottest.Signer(string(rune('a' + i)))
	}
	if _, err := snapshot.Sign([]byte("{}"), many...); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("%d signers: err = %v, want KindInvalid (clients refuse more than %d)", len(many), err, snapshot.MaxSignatures)
	}
	env := must(snapshot.Sign(payloadJSON(t, nil), many[:snapshot.MaxSignatures]...))
	o := opts()
	o.Trusted = []ed25519.PublicKey{many[snapshot.MaxSignatures-1].Public()}
	if _, err := snapshot.Open(env, o); err != nil {
		t.Errorf("envelope with %d signatures, trusting the last: %v", snapshot.MaxSignatures, err)
	}
}
