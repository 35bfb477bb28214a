package snapshot_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// fakeClock is a settable solstice.Clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newKeyring(dir string, clock *fakeClock, opts ...snapshot.KeyringOption) *snapshot.Keyring {
	opts = append([]snapshot.KeyringOption{
		snapshot.WithKeyringClock(clock),
		snapshot.WithKeyringLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}, opts...)
	return snapshot.NewKeyring(dir, opts...)
}

func publicKeys(t *testing.T, signers []snapshot.Signer) []ed25519.PublicKey {
	t.Helper()
	out := make([]ed25519.PublicKey, len(signers))
	for i, s := range signers {
		out[i] = s.Public()
	}
	return out
}

// openWith opens env trusting exactly keys.
func openWith(env []byte, keys ...ed25519.PublicKey) (*snapshot.Opened, error) {
	return snapshot.Open(env, snapshot.OpenOptions{Trusted: keys, Environment: testEnv, Now: t0.Add(time.Minute)})
}

func buildWith(t *testing.T, version int64, signers []snapshot.Signer) []byte {
	t.Helper()
	b, err := snapshot.Build(testSet(), version, t0, time.Hour, signers)
	if err != nil {
		t.Fatal(err)
	}
	return b.Envelope()
}

func TestKeyringLifecycle(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	kr := newKeyring(dir, clock)

	if keys, err := kr.List(testEnv); err != nil || len(keys) != 0 {
		t.Fatalf("List before first use = %v, %v; want no keys", keys, err)
	}
	keys, err := kr.LoadOrCreate(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Status != snapshot.KeyActive || !keys[0].CreatedAt.Equal(t0) {
		t.Fatalf("after first use: %+v; want one active key created at %v", keys, t0)
	}
	old := keys[0]
	if again, _ := kr.LoadOrCreate(testEnv); len(again) != 1 || again[0].ID != old.ID {
		t.Fatalf("LoadOrCreate created another key: %+v", again)
	}

	signers, err := kr.Signers(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(signers) != 1 || snapshot.KeyID(signers[0].Public()) != old.ID {
		t.Fatalf("Signers = %d keys; want the one key %s", len(signers), old.ID)
	}
	v1 := buildWith(t, 1, signers)
	if _, err := openWith(v1, old.Public); err != nil {
		t.Fatalf("open with the key's public half: %v", err)
	}

	// Rotate: both keys are active and sign; either public key alone
	// verifies.
	clock.t = t0.Add(time.Hour)
	newer, err := kr.Rotate(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	signers, err = kr.Signers(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ed25519.PublicKey{newer.Public, old.Public}, publicKeys(t, signers)); diff != "" {
		t.Fatalf("Signers after rotation, newest first (-want +got):\n%s", diff)
	}
	v2 := buildWith(t, 2, signers)
	e, _, err := snapshot.DecodeUnverified(v2)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Signatures) != 2 {
		t.Fatalf("envelope during the overlap has %d signatures, want 2", len(e.Signatures))
	}
	for _, pub := range []ed25519.PublicKey{old.Public, newer.Public} {
		o, err := openWith(v2, pub)
		if err != nil {
			t.Errorf("during the overlap, open trusting only %s: %v", snapshot.KeyID(pub), err)
		} else if !cmp.Equal(o.KeyIDs, []string{snapshot.KeyID(pub)}) {
			t.Errorf("verified key ids = %v, want [%s]", o.KeyIDs, snapshot.KeyID(pub))
		}
	}
	if o, err := openWith(v2, old.Public, newer.Public); err != nil || len(o.KeyIDs) != 2 {
		t.Errorf("trusting both: %v, %v; want both key ids verified", o, err)
	}

	// The public export is what clients are configured with.
	exported, err := kr.ExportPublic(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := snapshot.ParsePublicKeys(exported)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ed25519.PublicKey{newer.Public, old.Public}, parsed); diff != "" {
		t.Errorf("ExportPublic round trip (-want +got):\n%s", diff)
	}

	// Retire the old key: it no longer signs, and a client trusting only
	// it refuses new snapshots.
	clock.t = t0.Add(2 * time.Hour)
	retired, err := kr.Retire(testEnv, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if retired.Status != snapshot.KeyRetired || !retired.RetiredAt.Equal(clock.t) {
		t.Errorf("Retire returned %+v", retired)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", testEnv, old.ID+".key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("retired private key file: stat err = %v, want it deleted", err)
	}
	signers, err = kr.Signers(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ed25519.PublicKey{newer.Public}, publicKeys(t, signers)); diff != "" {
		t.Fatalf("Signers after retiring (-want +got):\n%s", diff)
	}
	v3 := buildWith(t, 3, signers)
	if _, err := openWith(v3, old.Public); !errors.Is(err, snapshot.ErrUnknownKey) {
		t.Errorf("client trusting only the retired key: err = %v, want ErrUnknownKey", err)
	}
	if _, err := openWith(v3, newer.Public); err != nil {
		t.Errorf("client trusting the new key: %v", err)
	}
	if exported, _ := kr.ExportPublic(testEnv); bytes.Contains(exported, must(snapshot.MarshalPublicKey(old.Public))) {
		t.Error("ExportPublic still exports the retired key")
	}

	// Refusals.
	if _, err := kr.Retire(testEnv, newer.ID); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("retiring the last active key: err = %v, want KindConflict", err)
	}
	if _, err := kr.Retire(testEnv, old.ID); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("retiring a retired key: err = %v, want KindConflict", err)
	}
	if _, err := kr.Retire(testEnv, strings.Repeat("0", 64)); !solstice.IsKind(err, solstice.KindNotFound) {
		t.Errorf("retiring an unknown key: err = %v, want KindNotFound", err)
	}

	// A restart (a new Keyring on the same directory) sees the same keys.
	want, err := kr.List(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	kr2 := newKeyring(dir, clock)
	got, err := kr2.List(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List after reload (-before +after):\n%s", diff)
	}
	if len(got) != 2 || got[0].ID != newer.ID || got[1].Status != snapshot.KeyRetired {
		t.Errorf("List = %+v; want the new active key, then the retired one", got)
	}
	signers, err = kr2.Signers(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openWith(buildWith(t, 4, signers), newer.Public); err != nil {
		t.Errorf("after reload: %v", err)
	}
}

func TestKeyringFileModes(t *testing.T) {
	dir := t.TempDir()
	kr := newKeyring(dir, &fakeClock{t: t0})
	if _, err := kr.Rotate(testEnv); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Rotate(testEnv); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{"keys": 0o700 | os.ModeDir, "keys/" + testEnv: 0o700 | os.ModeDir}
	entries, err := os.ReadDir(filepath.Join(dir, "keys", testEnv))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		want["keys/"+testEnv+"/"+e.Name()] = 0o600
	}
	if len(entries) != 3 {
		t.Errorf("keys directory holds %d files, want 2 keys and the state (no temporary files)", len(entries))
	}
	for rel, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != mode {
			t.Errorf("%s: mode %v, want %v", rel, got, mode)
		}
	}
}

func TestKeyringRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	kr := newKeyring(dir, &fakeClock{t: t0})
	keys, err := kr.LoadOrCreate(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keys", testEnv, keys[0].ID+".key")
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = kr.Signers(testEnv)
	if !solstice.IsKind(err, solstice.KindInvalid) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: err = %v, want KindInvalid telling to chmod 600", err)
	}
}

func TestKeyringDetectsSwappedKeyFile(t *testing.T) {
	dir := t.TempDir()
	kr := newKeyring(dir, &fakeClock{t: t0})
	keys, err := kr.LoadOrCreate(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	other := must(snapshot.MarshalPrivateKey(snapshottest.Key("intruder")))
	if err := os.WriteFile(filepath.Join(dir, "keys", testEnv, keys[0].ID+".key"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Signers(testEnv); err == nil {
		t.Error("Signers accepted a key file holding another key than its name says")
	}
}

func TestKeyringInvalidEnvironment(t *testing.T) {
	kr := newKeyring(t.TempDir(), &fakeClock{t: t0})
	for _, env := range []string{"", "..", "../etc", "a/b", ".hidden", "-rf", `a\b`} {
		if _, err := kr.LoadOrCreate(env); !solstice.IsKind(err, solstice.KindInvalid) {
			t.Errorf("LoadOrCreate(%q): err = %v, want KindInvalid", env, err)
		}
	}
}

func TestKeyringExternalKeys(t *testing.T) {
	prod := snapshottest.Key("external-prod")
	prodPEM := must(snapshot.MarshalPrivateKey(prod))
	next := snapshottest.Key("external-prod-next")
	stagingSeed := base64.StdEncoding.EncodeToString(snapshottest.Key("external-staging").Seed())

	keyFile := filepath.Join(t.TempDir(), "dev.pem")
	if err := os.WriteFile(keyFile, prodPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"SOLSTICE_SIGNING_KEY_PRODUCTION": string(prodPEM) + "\n" + string(must(snapshot.MarshalPrivateKey(next))),
		"SOLSTICE_SIGNING_KEY_STAGING_EU": stagingSeed,
		"SOLSTICE_SIGNING_KEY_BROKEN":     "not a key",
	}
	lookup := func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
	dir := t.TempDir()
	kr := newKeyring(dir, &fakeClock{t: t0}, snapshot.WithKeysFromEnv(lookup), snapshot.WithKeyFile("dev", keyFile))

	tests := []struct {
		env    string
		want   []ed25519.PrivateKey
		source string
	}{
		{"production", []ed25519.PrivateKey{prod, next}, "env:SOLSTICE_SIGNING_KEY_PRODUCTION"},
		{"staging-eu", []ed25519.PrivateKey{snapshottest.Key("external-staging")}, "env:SOLSTICE_SIGNING_KEY_STAGING_EU"},
		{"dev", []ed25519.PrivateKey{prod}, "file:" + keyFile},
	}
	for _, tt := range tests {
		signers, err := kr.Signers(tt.env)
		if err != nil {
			t.Errorf("Signers(%s): %v", tt.env, err)
			continue
		}
		var want []ed25519.PublicKey
		for _, k := range tt.want {
			want = append(want, k.Public().(ed25519.PublicKey))
		}
		if diff := cmp.Diff(want, publicKeys(t, signers)); diff != "" {
			t.Errorf("Signers(%s) (-want +got):\n%s", tt.env, diff)
		}
		keys, err := kr.List(tt.env)
		if err != nil || len(keys) != len(tt.want) || keys[0].Source != tt.source {
			t.Errorf("List(%s) = %+v, %v; want %d keys from %s", tt.env, keys, err, len(tt.want), tt.source)
		}
		if _, err := kr.Rotate(tt.env); !solstice.IsKind(err, solstice.KindConflict) {
			t.Errorf("Rotate(%s) of external keys: err = %v, want KindConflict", tt.env, err)
		}
	}
	if _, err := kr.Signers("broken"); !solstice.IsKind(err, solstice.KindInvalid) || strings.Contains(err.Error(), "not a key") {
		t.Errorf("Signers(broken) = %v; want KindInvalid that does not echo the value", err)
	}
	// External keys never touch the directory; other environments still
	// use it.
	if _, err := os.Stat(filepath.Join(dir, "keys", "production")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("external keys created a directory: %v", err)
	}
	if keys, err := kr.LoadOrCreate("qa"); err != nil || len(keys) != 1 || keys[0].Source != "" {
		t.Errorf("LoadOrCreate(qa) = %+v, %v; want one generated key", keys, err)
	}

	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Signers("dev"); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("world-readable key file: err = %v, want KindInvalid", err)
	}
}

func TestEnvKeyVar(t *testing.T) {
	for env, want := range map[string]string{
		"production": "SOLSTICE_SIGNING_KEY_PRODUCTION",
		"staging-eu": "SOLSTICE_SIGNING_KEY_STAGING_EU",
		"qa.2":       "SOLSTICE_SIGNING_KEY_QA_2",
	} {
		if got := snapshot.EnvKeyVar(env); got != want {
			t.Errorf("EnvKeyVar(%q) = %s, want %s", env, got, want)
		}
	}
}

func TestParseKeys(t *testing.T) {
	priv := snapshottest.Key("parse")
	pub := priv.Public().(ed25519.PublicKey)
	privPEM := must(snapshot.MarshalPrivateKey(priv))
	pubPEM := must(snapshot.MarshalPublicKey(pub))
	pub2 := snapshottest.Key("parse-2").Public().(ed25519.PublicKey)
	pub2PEM := must(snapshot.MarshalPublicKey(pub2))

	privTests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"PKCS #8 PEM", string(privPEM), true},
		{"PEM with surrounding space", "\n  " + string(privPEM) + "\n\n", true},
		{"base64 seed", base64.StdEncoding.EncodeToString(priv.Seed()), true},
		{"unpadded url-safe seed", base64.RawURLEncoding.EncodeToString(priv.Seed()), true},
		{"two keys", string(privPEM) + string(privPEM), false},
		{"public key PEM", string(pubPEM), false},
		{"64-byte base64", base64.StdEncoding.EncodeToString(priv), false},
		{"garbage", "hello", false},
		{"broken PEM", strings.Replace(string(privPEM), "M", "*", 3), false},
		{"empty", "", false},
	}
	for _, tt := range privTests {
		got, err := snapshot.ParsePrivateKey([]byte(tt.in))
		switch {
		case tt.ok && (err != nil || !got.Equal(priv)):
			t.Errorf("ParsePrivateKey(%s) = %v; want the key", tt.name, err)
		case !tt.ok && !solstice.IsKind(err, solstice.KindInvalid):
			t.Errorf("ParsePrivateKey(%s): err = %v; want KindInvalid", tt.name, err)
		}
	}

	pubTests := []struct {
		name string
		in   string
		want []ed25519.PublicKey
	}{
		{"one PEM", string(pubPEM), []ed25519.PublicKey{pub}},
		{"two PEM with comments", "# first\n" + string(pubPEM) + "# second\n" + string(pub2PEM), []ed25519.PublicKey{pub, pub2}},
		{"duplicates dropped", string(pubPEM) + string(pubPEM), []ed25519.PublicKey{pub}},
		{"base64 list", base64.StdEncoding.EncodeToString(pub) + ", " + base64.StdEncoding.EncodeToString(pub2), []ed25519.PublicKey{pub, pub2}},
		{"private key PEM", string(privPEM), nil},
		{"short base64", base64.StdEncoding.EncodeToString(pub[:31]), nil},
		{"empty", " \n", nil},
	}
	for _, tt := range pubTests {
		got, err := snapshot.ParsePublicKeys([]byte(tt.in))
		if tt.want == nil {
			if !solstice.IsKind(err, solstice.KindInvalid) {
				t.Errorf("ParsePublicKeys(%s) = %v, %v; want KindInvalid", tt.name, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePublicKeys(%s): %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParsePublicKeys(%s) (-want +got):\n%s", tt.name, diff)
		}
	}

	// The golden public key is what `openssl pkey -pubout` would write.
	want, err := os.ReadFile(filepath.Join("testdata", "production-1.pub.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(want); !strings.HasPrefix(got, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA") {
		t.Errorf("public key PEM is not PKIX Ed25519:\n%s", got)
	}
}

func TestNewSigner(t *testing.T) {
	priv := snapshottest.Key("signer")
	if _, err := snapshot.NewSigner(priv[:32]); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("32-byte key: err = %v, want KindInvalid", err)
	}
	bad := bytes.Clone(priv)
	bad[40] ^= 1
	if _, err := snapshot.NewSigner(bad); !solstice.IsKind(err, solstice.KindInvalid) {
		t.Errorf("key with a wrong public half: err = %v, want KindInvalid", err)
	}
}

func TestKeyringRotateLimit(t *testing.T) {
	kr := newKeyring(t.TempDir(), &fakeClock{t: t0})
	for i := range snapshot.MaxSignatures {
		if _, err := kr.Rotate(testEnv); err != nil {
			t.Fatalf("rotation %d: %v", i+1, err)
		}
	}
	if _, err := kr.Rotate(testEnv); !solstice.IsKind(err, solstice.KindConflict) {
		t.Errorf("rotation beyond %d active keys: err = %v, want KindConflict", snapshot.MaxSignatures, err)
	}
	signers, err := kr.Signers(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Build(testSet(), 1, t0, time.Hour, signers); err != nil {
		t.Errorf("building with %d keys: %v", len(signers), err)
	}
}
