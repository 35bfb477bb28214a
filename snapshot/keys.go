package snapshot

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/solsticehq/solstice"
)

// KeyStatus is the life-cycle state of a signing key.
type KeyStatus string

// Key statuses. Every active key signs every snapshot; a retired key signs
// nothing and its private half is deleted.
const (
	KeyActive  KeyStatus = "active"
	KeyRetired KeyStatus = "retired"
)

// KeyInfo describes one signing key of an environment. It holds no secret.
type KeyInfo struct {
	ID        string            `json:"id"`         // KeyID(Public)
	Public    ed25519.PublicKey `json:"public_key"` // base64 in keys.json
	Status    KeyStatus         `json:"status"`
	CreatedAt time.Time         `json:"created_at"`          // zero for an external key
	RetiredAt time.Time         `json:"retired_at,omitzero"` // zero while active
	Source    string            `json:"-"`                   // "" for the keyring directory, "env:NAME" or "file:PATH" for an external key
}

// Keyring manages the per-environment Ed25519 signing keys of one data
// directory. Its layout:
//
//	<data>/keys/                          mode 0700
//	<data>/keys/<env>/                    mode 0700
//	<data>/keys/<env>/keys.json           mode 0600, the state: every key's id, public key, status, times
//	<data>/keys/<env>/<keyid>.key         mode 0600, a PKCS #8 PEM private key, one per active key
//
// keys.json is authoritative: a key file it does not list (left by a crash
// between the two writes of a rotation) is ignored. Every file is written
// to a temporary file and renamed into place, so a crash never leaves a
// half-written key or state.
//
// NOTE: a key file that group or others may access is refused, not merely
// warned about (as ssh does): a signing key that leaked lets anyone publish
// snapshots that every game server of the environment accepts, and a
// warning in a log nobody reads protects nothing.
//
// An environment's keys may instead come from outside, for deployments
// that keep secrets in a secret store: see WithKeyFile and WithKeysFromEnv.
// Such keys are all active and cannot be rotated or retired here.
//
// A Keyring is safe for concurrent use within one process. Two processes
// (the server and `solstice keys rotate`) may share a directory: the
// server re-reads the state on every Signers call, so a rotation done by
// the CLI is picked up by the next publish; but two concurrent rotations by
// different processes may lose one of them.
type Keyring struct {
	dir       string
	clock     solstice.Clock
	log       *slog.Logger
	lookupEnv func(string) (string, bool)
	files     map[string]string

	mu sync.Mutex
}

// KeyringOption configures a Keyring.
type KeyringOption func(*Keyring)

// WithKeyringClock sets the clock that stamps key creation and retirement.
func WithKeyringClock(c solstice.Clock) KeyringOption { return func(k *Keyring) { k.clock = c } }

// WithKeyringLogger sets the logger that reports generated and retired
// keys. The default is slog.Default().
func WithKeyringLogger(l *slog.Logger) KeyringOption { return func(k *Keyring) { k.log = l } }

// WithKeysFromEnv makes the keyring look up each environment's signing keys
// in the variable named by EnvKeyVar (SOLSTICE_SIGNING_KEY_PRODUCTION for
// "production") through lookup, os.LookupEnv in production. A set,
// non-empty variable holds one or more PKCS #8 PEM keys or one base64 seed
// (see ParsePrivateKeys) and replaces the keyring directory for that
// environment.
func WithKeysFromEnv(lookup func(name string) (string, bool)) KeyringOption {
	return func(k *Keyring) { k.lookupEnv = lookup }
}

// WithKeyFile makes the keyring read env's signing keys from the file at
// path (one or more PKCS #8 PEM keys, or one base64 seed) instead of the
// keyring directory. It takes precedence over WithKeysFromEnv. The file
// must not be accessible by group or others.
func WithKeyFile(env, path string) KeyringOption {
	return func(k *Keyring) { k.files[env] = path }
}

// EnvKeyVar returns the name of the environment variable WithKeysFromEnv
// reads env's keys from: SOLSTICE_SIGNING_KEY_ followed by env in upper
// case, with every character other than a letter or digit replaced by '_'.
func EnvKeyVar(env string) string {
	b := []byte(strings.ToUpper(env))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return "SOLSTICE_SIGNING_KEY_" + string(b)
}

// NewKeyring returns the keyring of the data directory dataDir; its keys
// live under dataDir/keys. Nothing is read or created until a method needs
// it.
func NewKeyring(dataDir string, opts ...KeyringOption) *Keyring {
	k := &Keyring{
		dir:   filepath.Join(dataDir, "keys"),
		clock: solstice.WallClock,
		log:   slog.Default(),
		files: map[string]string{},
	}
	for _, o := range opts {
		o(k)
	}
	return k
}

const stateFile = "keys.json"

type keyState struct {
	Keys []KeyInfo `json:"keys"` // oldest first
}

// LoadOrCreate returns env's keys, newest first, generating the first key
// if env has no active key yet (and logging its id). External keys are
// returned as they are.
//
// It returns a KindInvalid error for an environment name that is not a
// plain file name, or when a key file is accessible by group or others,
// and a wrapped I/O or decoding error when the directory cannot be read or
// written or its content is corrupt.
func (k *Keyring) LoadOrCreate(env string) ([]KeyInfo, error) {
	if ext, _, err := k.external(env); ext != nil || err != nil {
		return ext, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := k.loadOrCreate(env)
	if err != nil {
		return nil, err
	}
	return newestFirst(st.Keys), nil
}

// List returns env's keys, active and retired, newest first, without
// creating any. It returns the errors of LoadOrCreate.
func (k *Keyring) List(env string) ([]KeyInfo, error) {
	if ext, _, err := k.external(env); ext != nil || err != nil {
		return ext, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := k.load(env)
	if err != nil {
		return nil, err
	}
	return newestFirst(st.Keys), nil
}

// Rotate adds a new active key to env and returns it. The existing active
// keys stay active, so snapshots carry every signature until the old key
// is retired: distribute the new public key to clients in between.
//
// It returns a KindConflict error if env's keys are external or env
// already has MaxSignatures active keys, and the errors of LoadOrCreate.
func (k *Keyring) Rotate(env string) (KeyInfo, error) {
	if err := k.refuseExternal(env, "rotate"); err != nil {
		return KeyInfo{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := k.load(env)
	if err != nil {
		return KeyInfo{}, err
	}
	active := 0
	for _, ki := range st.Keys {
		if ki.Status == KeyActive {
			active++
		}
	}
	if active >= MaxSignatures {
		return KeyInfo{}, solstice.Errorf(solstice.KindConflict, "environment %q already has %d active signing keys: retire one first", env, active)
	}
	return k.generate(env, st)
}

// Retire retires env's active key id: it stops signing and its private key
// file is deleted (its record stays in keys.json). Clients that trust only
// this key reject every later snapshot.
//
// It returns a KindNotFound error for an unknown id, a KindConflict error
// if the key is already retired, is the last active key, or env's keys are
// external, and the errors of LoadOrCreate.
func (k *Keyring) Retire(env, id string) (KeyInfo, error) {
	if err := k.refuseExternal(env, "retire"); err != nil {
		return KeyInfo{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := k.load(env)
	if err != nil {
		return KeyInfo{}, err
	}
	idx, active := -1, 0
	for i, ki := range st.Keys {
		if ki.ID == id {
			idx = i
		}
		if ki.Status == KeyActive {
			active++
		}
	}
	switch {
	case idx < 0:
		return KeyInfo{}, solstice.Errorf(solstice.KindNotFound, "environment %q has no signing key %s", env, id)
	case st.Keys[idx].Status != KeyActive:
		return KeyInfo{}, solstice.Errorf(solstice.KindConflict, "signing key %s of environment %q is already retired", id, env)
	case active == 1:
		return KeyInfo{}, solstice.Errorf(solstice.KindConflict, "signing key %s is the last active key of environment %q: rotate first", id, env)
	}
	st.Keys[idx].Status = KeyRetired
	st.Keys[idx].RetiredAt = k.clock.Now().UTC().Truncate(time.Second)
	if err := k.saveState(env, st); err != nil {
		return KeyInfo{}, err
	}
	if err := os.Remove(k.keyPath(env, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return KeyInfo{}, fmt.Errorf("retire signing key %s of %q: key is retired but its file remains: %w", id, env, err)
	}
	k.log.Info("retired snapshot signing key", "environment", env, "key_id", id)
	return st.Keys[idx], nil
}

// ExportPublic returns the public keys of env's active keys, newest first,
// as PKIX PEM blocks each preceded by a comment line naming the key; the
// result is what clients are configured with (ParsePublicKeys reads it).
// Like Signers it creates env's first key if there is none. It returns the
// errors of LoadOrCreate.
func (k *Keyring) ExportPublic(env string) ([]byte, error) {
	keys, err := k.LoadOrCreate(env)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, ki := range keys {
		if ki.Status != KeyActive {
			continue
		}
		p, err := MarshalPublicKey(ki.Public)
		if err != nil {
			return nil, err
		}
		out = fmt.Appendf(out, "# Solstice snapshot signing key of %q, key id %s\n", env, ki.ID)
		out = append(out, p...)
	}
	return out, nil
}

// Signers returns a Signer for each of env's active keys, newest first,
// creating env's first key if there is none; it is what Publisher signs
// with. It re-reads the keyring on every call, so rotations made by another
// process take effect at the next publish. It returns the errors of
// LoadOrCreate, and a KindInvalid error if a key file does not hold the
// key keys.json names.
func (k *Keyring) Signers(env string) ([]Signer, error) {
	if ext, privs, err := k.external(env); ext != nil || err != nil {
		if err != nil {
			return nil, err
		}
		return signersOf(privs)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := k.loadOrCreate(env)
	if err != nil {
		return nil, err
	}
	var privs []ed25519.PrivateKey
	for _, ki := range newestFirst(st.Keys) {
		if ki.Status != KeyActive {
			continue
		}
		path := k.keyPath(env, ki.ID)
		ks, err := readKeyFile(path)
		if err != nil {
			return nil, err
		}
		if len(ks) != 1 || KeyID(ks[0].Public().(ed25519.PublicKey)) != ki.ID {
			return nil, solstice.Errorf(solstice.KindInvalid, "key file %s does not hold signing key %s", path, ki.ID)
		}
		privs = append(privs, ks[0])
	}
	return signersOf(privs)
}

func signersOf(privs []ed25519.PrivateKey) ([]Signer, error) {
	out := make([]Signer, len(privs))
	for i, p := range privs {
		s, err := NewSigner(p)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// external returns env's external keys, if it has any configured.
func (k *Keyring) external(env string) ([]KeyInfo, []ed25519.PrivateKey, error) {
	var privs []ed25519.PrivateKey
	var source string
	if path, ok := k.files[env]; ok {
		ks, err := readKeyFile(path)
		if err != nil {
			return nil, nil, err
		}
		privs, source = ks, "file:"+path
	} else if k.lookupEnv != nil {
		name := EnvKeyVar(env)
		v, ok := k.lookupEnv(name)
		if !ok || strings.TrimSpace(v) == "" {
			return nil, nil, nil
		}
		ks, err := ParsePrivateKeys([]byte(v))
		if err != nil {
			return nil, nil, fmt.Errorf("signing keys in $%s: %w", name, err)
		}
		privs, source = ks, "env:"+name
	} else {
		return nil, nil, nil
	}
	infos := make([]KeyInfo, len(privs))
	for i, p := range privs {
		pub := p.Public().(ed25519.PublicKey)
		infos[i] = KeyInfo{ID: KeyID(pub), Public: pub, Status: KeyActive, Source: source}
	}
	return infos, privs, nil
}

func (k *Keyring) refuseExternal(env, op string) error {
	ext, _, err := k.external(env)
	if err != nil {
		return err
	}
	if len(ext) > 0 {
		return solstice.Errorf(solstice.KindConflict, "cannot %s the signing keys of %q here: they come from %s", op, env, ext[0].Source)
	}
	return nil
}

// readKeyFile reads private keys from a file that only its owner may
// access.
func readKeyFile(path string) ([]ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, solstice.Errorf(solstice.KindInvalid, "signing key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, solstice.Errorf(solstice.KindInvalid, "signing key %s is accessible by group or others (mode %04o); run chmod 600 %s", path, perm, path)
	}
	b, err := readAll(f, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	ks, err := ParsePrivateKeys(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return ks, nil
}

func readAll(f *os.File, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%d bytes is too large for a key file", fi.Size())
	}
	b := make([]byte, fi.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && n != len(b) {
		return nil, err
	}
	return b, nil
}

// validEnv reports whether env can name a directory: no separators, no
// "..", nothing a shell or a file system would treat specially.
func validEnv(env string) error {
	if env == "" || len(env) > 128 || env[0] == '.' || env[0] == '-' {
		return solstice.Errorf(solstice.KindInvalid, "invalid environment name %q for a keyring", env)
	}
	for _, c := range []byte(env) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return solstice.Errorf(solstice.KindInvalid, "invalid environment name %q for a keyring", env)
		}
	}
	return nil
}

func (k *Keyring) envDir(env string) string { return filepath.Join(k.dir, env) }

func (k *Keyring) keyPath(env, id string) string {
	return filepath.Join(k.envDir(env), id+".key")
}

// load reads env's state; a missing state is an empty one. Callers hold
// k.mu.
func (k *Keyring) load(env string) (*keyState, error) {
	if err := validEnv(env); err != nil {
		return nil, err
	}
	path := filepath.Join(k.envDir(env), stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &keyState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read keyring of %q: %w", env, err)
	}
	var st keyState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", path, err)
	}
	for _, ki := range st.Keys {
		if len(ki.Public) != ed25519.PublicKeySize || KeyID(ki.Public) != ki.ID ||
			(ki.Status != KeyActive && ki.Status != KeyRetired) {
			return nil, fmt.Errorf("read keyring %s: corrupt entry for key %q", path, ki.ID)
		}
	}
	return &st, nil
}

func (k *Keyring) loadOrCreate(env string) (*keyState, error) {
	st, err := k.load(env)
	if err != nil {
		return nil, err
	}
	for _, ki := range st.Keys {
		if ki.Status == KeyActive {
			return st, nil
		}
	}
	if _, err := k.generate(env, st); err != nil {
		return nil, err
	}
	return st, nil
}

// generate creates a key, writes its file and then the state listing it.
// Callers hold k.mu.
func (k *Keyring) generate(env string, st *keyState) (KeyInfo, error) {
	if err := k.mkdirs(env); err != nil {
		return KeyInfo{}, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("generate signing key for %q: %w", env, err)
	}
	ki := KeyInfo{ID: KeyID(pub), Public: pub, Status: KeyActive, CreatedAt: k.clock.Now().UTC().Truncate(time.Second)}
	pemBytes, err := MarshalPrivateKey(priv)
	if err != nil {
		return KeyInfo{}, err
	}
	if err := WriteFileAtomic(k.keyPath(env, ki.ID), pemBytes); err != nil {
		return KeyInfo{}, fmt.Errorf("write signing key for %q: %w", env, err)
	}
	st.Keys = append(st.Keys, ki)
	if err := k.saveState(env, st); err != nil {
		st.Keys = st.Keys[:len(st.Keys)-1]
		return KeyInfo{}, err
	}
	k.log.Info("generated snapshot signing key; give its public key to the game servers of the environment",
		"environment", env, "key_id", ki.ID)
	return ki, nil
}

func (k *Keyring) saveState(env string, st *keyState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("write keyring of %q: %w", env, err)
	}
	if err := WriteFileAtomic(filepath.Join(k.envDir(env), stateFile), append(b, '\n')); err != nil {
		return fmt.Errorf("write keyring of %q: %w", env, err)
	}
	return nil
}

// mkdirs creates the keys directory and env's directory with mode 0700,
// tightening them if they exist with a wider mode.
func (k *Keyring) mkdirs(env string) error {
	for _, d := range []string{k.dir, k.envDir(env)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create keyring directory: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil { //nolint:gosec // a directory needs its x bit; 0700 is owner-only
			return fmt.Errorf("create keyring directory: %w", err)
		}
	}
	return nil
}

// WriteFileAtomic writes data to a new file with mode 0600 in path's
// directory, syncs it and renames it over path, then syncs the directory:
// a reader sees the old content or the new, never a torn file. Signing keys
// and game servers' last-known-good snapshots are written with it. It
// returns the file system's error.
func WriteFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // best effort: not every platform can sync a directory
		_ = d.Close()
	}
	return nil
}

func newestFirst(keys []KeyInfo) []KeyInfo {
	out := make([]KeyInfo, len(keys))
	for i, ki := range keys {
		out[len(keys)-1-i] = ki
	}
	return out
}
