package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/snapshot/snapshottest"
)

// runWith is run with extra environment variables.
func (c *cli) runWith(vars map[string]string, stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		switch k {
		case "SOLSTICE_DATA":
			return c.data
		case "SOLSTICE_LOG_FORMAT":
			return "text"
		}
		return ""
	}}
	code := run(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// fail runs a command that must fail with code and mention want.
func (c *cli) fail(code int, want string, args ...string) {
	c.t.Helper()
	got, out, errs := c.run("", args...)
	if got != code || !strings.Contains(errs, want) {
		c.t.Errorf("solstice %s: exit %d, stderr %q; want exit %d mentioning %q (stdout %q)", strings.Join(args, " "), got, errs, code, want, out)
	}
}

func parseKeyIDs(t *testing.T, pem string) []string {
	t.Helper()
	keys, err := snapshot.ParsePublicKeys([]byte(pem))
	if err != nil {
		t.Fatalf("not a public key file: %v\n%s", err, pem)
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = snapshot.KeyID(k)
	}
	return ids
}

// keyRows returns the STATUS column of `keys list` by key id.
func keyRows(t *testing.T, list string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("list row %q has %d columns, want 5:\n%s", line, len(f), list)
		}
		rows[f[0]] = f[1]
	}
	return rows
}

func TestKeysLifecycle(t *testing.T) {
	c := newCLI(t)
	const env = "production"

	if out := c.ok("keys", "list", "--env", env); !strings.Contains(out, "production has no signing key yet") {
		t.Errorf("list of an empty keyring = %q, want it to say there is no key", out)
	}
	if _, err := os.Stat(filepath.Join(c.data, "keys", env)); !os.IsNotExist(err) {
		t.Errorf("list created the keyring of %s (stat: %v)", env, err)
	}
	if out := c.ok("keys", "list", "--env", env, "--json"); !strings.Contains(out, `"keys": []`) {
		t.Errorf("list --json of an empty keyring = %s, want no keys", out)
	}

	// export-public creates the first key, and only once.
	code, pub1, errs := c.run("", "keys", "export-public", "--env", env)
	if code != 0 {
		t.Fatalf("export-public: exit %d: %s", code, errs)
	}
	ids := parseKeyIDs(t, pub1)
	if len(ids) != 1 {
		t.Fatalf("export-public exported %d keys, want 1", len(ids))
	}
	old := ids[0]
	if want := "production had no signing key: created " + old; !strings.Contains(errs, want) {
		t.Errorf("export-public stderr = %q, want %q", errs, want)
	}
	if code, again, errs := c.run("", "keys", "export-public", "--env", env); code != 0 || again != pub1 || errs != "" {
		t.Errorf("second export-public: exit %d, stderr %q, same output %v; want 0, nothing, true", code, errs, again == pub1)
	}
	oldPub := filepath.Join(t.TempDir(), "old.pub")
	if err := os.WriteFile(oldPub, []byte(pub1), 0o644); err != nil {
		t.Fatal(err)
	}

	out := c.ok("keys", "rotate", "--env", env)
	var newID string
	if _, err := fmt.Sscanf(out, "Added signing key %s to production.", &newID); err != nil || len(newID) != 64 || newID == old {
		t.Fatalf("rotate printed no new key id (%v):\n%s", err, out)
	}
	for _, want := range []string{
		"production now has 2 active keys",
		"solstice keys export-public --env production > production.pub",
		"next publish",
		"solstice keys retire --env production " + old,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate output lacks %q:\n%s", want, out)
		}
	}
	if got := keyRows(t, c.ok("keys", "list", "--env", env)); got[old] != "active" || got[newID] != "active" || len(got) != 2 {
		t.Errorf("list after rotate = %v, want both keys active", got)
	}
	pubFile := filepath.Join(t.TempDir(), "both.pub")
	c.ok("keys", "export-public", "--env", env, "-o", pubFile)
	both, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseKeyIDs(t, string(both)); len(got) != 2 || got[0] != newID || got[1] != old {
		t.Errorf("export-public -o after rotate = %v, want [%s %s]", got, newID, old)
	}

	// During the overlap a game server that trusts only the old key still
	// accepts what the control plane signs.
	signed := c.signWithKeyring(t, env)
	if out := c.ok("snapshot", "verify", "--env", env, "--public-key", oldPub, signed); !strings.Contains(out, "signed-by="+old+"\n") {
		t.Errorf("verify with the old key during the overlap = %q, want signed-by=%s", out, old)
	}

	// retire takes a unique prefix, by --key or as the argument.
	out = c.ok("keys", "retire", "--key", old[:12], "--env", env)
	if want := "Retired signing key " + old + " of production"; !strings.Contains(out, want) || !strings.Contains(out, "Still active: "+newID) {
		t.Errorf("retire output = %q, want %q and the key still active", out, want)
	}
	list := c.ok("keys", "list", "--env", env)
	if got := keyRows(t, list); got[old] != "retired" || got[newID] != "active" {
		t.Errorf("list after retire = %v, want %s retired and %s active", got, old[:8], newID[:8])
	}
	c.fail(1, "last active key", "keys", "retire", newID, "--env", env)
	c.fail(1, "already retired", "keys", "retire", "--env", env, old)
	if got := parseKeyIDs(t, c.ok("keys", "export-public", "--env", env)); len(got) != 1 || got[0] != newID {
		t.Errorf("export-public after retire = %v, want only %s", got, newID)
	}

	// Now the old key signs nothing, and a server that trusts only it
	// refuses the next snapshot.
	signed = c.signWithKeyring(t, env)
	c.fail(1, "(unknown_key)", "snapshot", "verify", "--env", env, "--public-key", oldPub, signed)

	// rotate on an environment without keys creates its first one.
	if out := c.ok("keys", "rotate", "--env", "staging"); !strings.Contains(out, "Created the first signing key of staging") {
		t.Errorf("rotate of an empty environment = %q", out)
	}
}

// signWithKeyring builds a snapshot signed by env's keys in the data
// directory, as the control plane would, and returns its file.
func (c *cli) signWithKeyring(t *testing.T, env string) string {
	t.Helper()
	signers, err := snapshot.NewKeyring(c.data).Signers(env)
	if err != nil {
		t.Fatal(err)
	}
	set := snapshottest.GenerateSet(3)
	set.Environment = env
	b, err := snapshot.Build(set, 1, time.Now(), time.Hour, signers)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snapshot.json")
	if err := os.WriteFile(path, b.Envelope(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeysErrors(t *testing.T) {
	c := newCLI(t)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"keys"}, 2, "missing subcommand"},
		{[]string{"keys", "frobnicate"}, 2, `unknown subcommand "frobnicate"`},
		{[]string{"keys", "list"}, 2, "--env is required"},
		{[]string{"keys", "list", "--env", "production", "--bogus"}, 2, "-bogus"},
		{[]string{"keys", "retire", "--env", "production"}, 2, "missing the id of the key to retire"},
		{[]string{"keys", "retire", "--env", "production", "aaaa", "bbbb"}, 2, `unexpected argument "bbbb"`},
		{[]string{"keys", "retire", "aaaa", "--key", "bbbb", "--env", "production"}, 2, "two key ids"},
		{[]string{"keys", "retire", "--env", "production", "deadbeefdeadbeef"}, 1, `environment "production" has no signing key deadbeefdeadbeef`},
		{[]string{"keys", "rotate", "--env", "../etc"}, 1, "invalid environment name"},
		{[]string{"keys", "rotate", "--env", "production", "--data", "/does/not/exist"}, 1, "data directory /does/not/exist does not exist"},
		{[]string{"keys", "export-public", "--env", "production", "--data", "/does/not/exist"}, 1, "data directory /does/not/exist does not exist"},
		{[]string{"keys", "list", "--env", "production", "--data", "/does/not/exist"}, 1, "data directory /does/not/exist does not exist"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := c.run("", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q (stdout %q)", code, errs, tc.code, tc.msg, out)
			}
		})
	}
	if _, err := os.Stat("/does/not/exist"); !os.IsNotExist(err) {
		t.Errorf("a command created the missing data directory (stat: %v)", err)
	}
}

func TestKeysFromEnvironment(t *testing.T) {
	c := newCLI(t)
	priv := snapshottest.Key("external")
	id := snapshot.KeyID(priv.Public().(ed25519.PublicKey))
	vars := map[string]string{"SOLSTICE_SIGNING_KEY_PRODUCTION": base64.StdEncoding.EncodeToString(priv.Seed())}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"list shows the source", []string{"keys", "list", "--env", "production"}, 0, "env:SOLSTICE_SIGNING_KEY_PRODUCTION"},
		{"export-public exports it", []string{"keys", "export-public", "--env", "production"}, 0, id},
		{"rotate is refused", []string{"keys", "rotate", "--env", "production"}, 1, "cannot rotate the signing keys of \"production\" here: they come from env:SOLSTICE_SIGNING_KEY_PRODUCTION"},
		{"retire is refused", []string{"keys", "retire", "--env", "production", id}, 1, "cannot retire"},
		{"other environments use the keyring", []string{"keys", "list", "--env", "staging"}, 0, "staging has no signing key yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := c.runWith(vars, "", tc.args...)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d mentioning %q", code, out, errs, tc.code, tc.want)
			}
		})
	}
}

// fixture is a snapshot of production at version 42, issued at issued and
// valid for a day, signed by snapshottest key "a", with the public key
// files of keys "a" and "b".
type fixture struct {
	built        *snapshot.Built
	file, gzFile string
	pubA, pubB   string
	idA          string
}

var issued = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, version int64, now time.Time) fixture {
	t.Helper()
	dir := t.TempDir()
	b, err := snapshot.Build(snapshottest.GenerateSet(20), version, now, 24*time.Hour, []snapshot.Signer{snapshottest.Signer("a")})
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{built: b, file: filepath.Join(dir, "s.json"), gzFile: filepath.Join(dir, "s.json.gz"),
		pubA: filepath.Join(dir, "a.pub"), pubB: filepath.Join(dir, "b.pub"), idA: snapshot.KeyID(snapshottest.Signer("a").Public())}
	write(t, f.file, b.Envelope())
	write(t, f.gzFile, b.Gzip())
	for path, name := range map[string]string{f.pubA: "a", f.pubB: "b"} {
		pem, err := snapshot.MarshalPublicKey(snapshottest.Signer(name).Public())
		if err != nil {
			t.Fatal(err)
		}
		write(t, path, pem)
	}
	return f
}

func write(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotVerify(t *testing.T) {
	c := newCLI(t)
	f := newFixture(t, 42, issued)
	dir := t.TempDir()
	env := f.built.Envelope()

	// Flip one base64 character in the middle of the payload.
	i := bytes.Index(env, []byte(`"payload":"`)) + len(`"payload":"`) + 200
	tampered := bytes.Clone(env)
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	otherType := bytes.Replace(env, []byte(snapshot.PayloadType), []byte("application/vnd.in-toto+json"), 1)

	okLine := fmt.Sprintf("OK environment=production version=42 revision=21 flags=20 segments=1 expires=2026-11-24T10:00:00Z (in 23h59m) signed-by=%s\n", f.idA)
	now := "2026-11-23T10:00:30Z"
	base := []string{"snapshot", "verify", "--env", "production", "--public-key", f.pubA, "--now", now}
	args := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }

	tests := []struct {
		name  string
		stdin []byte
		args  []string
		code  int
		want  string // the whole stdout when code is 0, a part of stderr otherwise
	}{
		{"file", nil, args(f.file), 0, okLine},
		{"standard input", env, args("-"), 0, okLine},
		{"standard input by default", env, args(), 0, okLine},
		{"gzip file", nil, args(f.gzFile), 0, okLine},
		{"gzip standard input", f.built.Gzip(), args(), 0, okLine},
		{"several trusted keys", nil, args("--public-key", f.pubB, f.file), 0, okLine},
		{"at --min-version", nil, args("--min-version", "42", f.file), 0, okLine},
		{"tampered payload", nil, args(write(t, filepath.Join(dir, "tampered"), tampered)), 1, "snapshot signature by trusted key " + f.idA[:16] + "… does not verify (bad_signature)"},
		{"wrong environment", nil, []string{"snapshot", "verify", "--env", "staging", "--public-key", f.pubA, "--now", now, f.file}, 1, `snapshot is for environment "production", want "staging" (wrong_environment)`},
		{"expired", nil, []string{"snapshot", "verify", "--env", "production", "--public-key", f.pubA, "--now", "2026-11-24T12:00:00Z", f.file}, 1, "snapshot expired at 2026-11-24T10:00:00Z (2h ago) (expired)"},
		{"just below --min-version", nil, args("--min-version", "43", f.file), 1, "snapshot version 42 is below --min-version 43 (rollback)"},
		{"far below --min-version", nil, args("--min-version", "100", f.file), 1, "snapshot version 42 is below --min-version 100 (rollback)"},
		{"untrusted key", nil, []string{"snapshot", "verify", "--env", "production", "--public-key", f.pubB, "--now", now, f.file}, 1, "snapshot is signed by key " + f.idA[:16] + "…, which is not trusted (unknown_key)"},
		{"wrong payload type", otherType, args(), 1, `snapshot payload type is "application/vnd.in-toto+json"`},
		{"not JSON", []byte("hello, world"), args(), 1, "snapshot envelope does not decode: invalid character 'h' looking for beginning of value (malformed)"},
		{"empty", nil, args(write(t, filepath.Join(dir, "empty"), nil)), 1, "the snapshot is empty (0 bytes) (malformed)"},
		{"broken gzip", []byte("\x1f\x8b\x08garbage"), args(), 1, "gzip-compressed snapshot does not decompress"},
		{"gzip bomb", gzipped(t, bytes.Repeat([]byte(" "), snapshot.DefaultMaxSize+1)), args(), 1, "decompressed snapshot envelope is over the limit of 16777216 bytes (too_large)"},
		{"missing file", nil, args(filepath.Join(dir, "nope.json")), 1, "no such file"},
		{"missing public key file", nil, []string{"snapshot", "verify", "--env", "production", "--public-key", filepath.Join(dir, "nope.pub"), f.file}, 1, "no such file"},
		{"public key file holds no key", nil, []string{"snapshot", "verify", "--env", "production", "--public-key", f.file, f.file}, 1, "public key file " + f.file},
		{"no --public-key", nil, []string{"snapshot", "verify", "--env", "production", f.file}, 2, "--public-key is required"},
		{"no --env", nil, []string{"snapshot", "verify", "--public-key", f.pubA, f.file}, 2, "--env is required"},
		{"bad --now", nil, args("--now", "tomorrow", f.file), 2, "RFC 3339"},
		{"negative --min-version", nil, args("--min-version", "-1", f.file), 2, "--min-version must be at least 1"},
		{"two files", nil, args(f.file, f.gzFile), 2, "unexpected argument"},
		{"no subcommand", nil, []string{"snapshot"}, 2, "missing subcommand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := c.run(string(tc.stdin), tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			switch {
			case code == 0 && out != tc.want:
				t.Errorf("stdout = %q, want %q", out, tc.want)
			case code == 1 && (!strings.HasPrefix(errs, "solstice snapshot: ") || !strings.Contains(errs, tc.want) || out != ""):
				t.Errorf("stdout %q, stderr %q; want nothing on stdout and stderr mentioning %q", out, errs, tc.want)
			case code == 2 && !strings.Contains(errs, tc.want):
				t.Errorf("stderr %q, want it to mention %q", errs, tc.want)
			}
		})
	}
}

// fakeSnapshotServer serves one snapshot the way the control plane's
// GET /v1/snapshots/{env} does, and records the last request.
type fakeSnapshotServer struct {
	built  *snapshot.Built
	secret string

	mu   sync.Mutex
	last *http.Request
}

func (s *fakeSnapshotServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.last = r.Clone(context.Background())
	s.mu.Unlock()
	problem := func(status int, title, detail string) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "urn:solstice:problem:x", "title": title, "status": status, "detail": detail})
	}
	switch {
	case r.URL.Path == "/v1/snapshots/broken":
		http.Error(w, "boom\x1b[31m", http.StatusInternalServerError)
		return
	case r.Header.Get("Authorization") != "Bearer "+s.secret:
		problem(http.StatusUnauthorized, "Unauthorized", "the server key is invalid or revoked")
		return
	case r.URL.Path != "/v1/snapshots/"+s.built.Environment():
		problem(http.StatusNotFound, "Not found", fmt.Sprintf("environment %q not found", strings.TrimPrefix(r.URL.Path, "/v1/snapshots/")))
		return
	}
	w.Header().Set("ETag", s.built.ETag())
	w.Header().Set("Solstice-Snapshot-Version", fmt.Sprint(s.built.Version()))
	w.Header().Set("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == s.built.ETag() {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(s.built.Gzip())
		return
	}
	_, _ = w.Write(s.built.Envelope())
}

func (s *fakeSnapshotServer) lastRequest() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func TestSnapshotFetch(t *testing.T) {
	c := newCLI(t)
	f := newFixture(t, 7, time.Now())
	fake := &fakeSnapshotServer{built: f.built, secret: "sol_server_s3cret"}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := t.TempDir()
	etag := f.built.ETag()
	fetch := func(extra ...string) []string {
		return append([]string{"snapshot", "fetch", "--url", srv.URL, "--env", "production"}, extra...)
	}
	withKey := map[string]string{"SOLSTICE_SERVER_KEY": "sol_server_s3cret"}
	const old = "the last good snapshot"

	tests := []struct {
		name       string
		vars       map[string]string
		args       []string
		code       int
		wantStdout string
		wantStderr []string
		wantFile   string                     // the content of -o afterwards (the file starts with old)
		check      func(*http.Request) string // "" if the request is right
	}{
		{
			name: "200 to a file, verified", vars: withKey,
			args:       fetch("-o", "out", "--verify", "--public-key", f.pubA),
			wantStderr: []string{"ETag: " + etag, "Solstice-Snapshot-Version: 7", "OK environment=production version=7", "Wrote "},
			wantFile:   string(f.built.Envelope()),
			check: func(r *http.Request) string {
				switch {
				case r.URL.Path != "/v1/snapshots/production":
					return "path " + r.URL.Path
				case r.Header.Get("Authorization") != "Bearer sol_server_s3cret":
					return "Authorization " + r.Header.Get("Authorization")
				case r.Header.Get("Accept-Encoding") != "gzip":
					return "Accept-Encoding " + r.Header.Get("Accept-Encoding")
				case !strings.HasPrefix(r.Header.Get("Solstice-Server-Id"), "cli-"):
					return "Solstice-Server-Id " + r.Header.Get("Solstice-Server-Id")
				case r.Header.Get("If-None-Match") != "" || r.URL.RawQuery != "":
					return "a conditional request: " + r.Header.Get("If-None-Match") + " " + r.URL.RawQuery
				}
				return ""
			},
		},
		{
			name: "200 to standard output, key from --key",
			args: fetch("--key", "sol_server_s3cret"), wantStdout: string(f.built.Envelope()),
			wantStderr: []string{"ETag: " + etag}, wantFile: old,
		},
		{
			name: "304 writes nothing", vars: withKey,
			args: fetch("--etag", etag, "--wait", "2s", "-o", "out"), wantStderr: []string{"not modified"}, wantFile: old,
			check: func(r *http.Request) string {
				if r.Header.Get("If-None-Match") != etag || r.URL.Query().Get("wait") != "2s" {
					return fmt.Sprintf("If-None-Match %q wait %q, want %q and 2s", r.Header.Get("If-None-Match"), r.URL.Query().Get("wait"), etag)
				}
				return ""
			},
		},
		{
			name: "an ETag without its quotes", vars: withKey,
			args: fetch("--etag", strings.Trim(etag, `"`)), wantStderr: []string{"not modified"}, wantFile: old,
		},
		{
			name: "401 problem", vars: map[string]string{"SOLSTICE_SERVER_KEY": "sol_server_wrong"},
			args: fetch("-o", "out"), code: 1, wantStderr: []string{"solstice snapshot: fetch: 401 Unauthorized: the server key is invalid or revoked"}, wantFile: old,
		},
		{
			name: "404 problem", vars: withKey,
			args: []string{"snapshot", "fetch", "--url", srv.URL + "/", "--env", "staging"}, code: 1,
			wantStderr: []string{`fetch: 404 Not found: environment "staging" not found`},
		},
		{
			name: "500 without a problem", vars: withKey,
			args: []string{"snapshot", "fetch", "--url", srv.URL, "--env", "broken"}, code: 1,
			wantStderr: []string{"fetch: server answered 500 Internal Server Error: boom[31m\n"},
		},
		{
			name: "--verify with the wrong key writes nothing", vars: withKey,
			args: fetch("-o", "out", "--verify", "--public-key", f.pubB), code: 1,
			wantStderr: []string{"verify: snapshot is signed by key " + f.idA[:16] + "…, which is not trusted (unknown_key); nothing was written"},
			wantFile:   old,
		},
		{
			name: "--verify with the wrong key prints nothing", vars: withKey,
			args: fetch("--verify", "--public-key", f.pubB), code: 1, wantStderr: []string{"(unknown_key)"},
		},
		{
			name: "--verify below --min-version", vars: withKey,
			args: fetch("--verify", "--public-key", f.pubA, "--min-version", "8"), code: 1, wantStderr: []string{"snapshot version 7 is below --min-version 8"},
		},
		{name: "no key", args: fetch(), code: 2, wantStderr: []string{"no server key: set SOLSTICE_SERVER_KEY"}},
		{name: "--wait without --etag", vars: withKey, args: fetch("--wait", "5s"), code: 2, wantStderr: []string{"--wait needs --etag"}},
		{name: "--verify without a key file", vars: withKey, args: fetch("--verify"), code: 2, wantStderr: []string{"--public-key is required"}},
		{name: "--public-key without --verify", vars: withKey, args: fetch("--public-key", f.pubA), code: 2, wantStderr: []string{"are for --verify"}},
		{name: "bad --url", vars: withKey, args: []string{"snapshot", "fetch", "--url", "127.0.0.1:8080", "--env", "production"}, code: 2, wantStderr: []string{"not an http:// or https:// URL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			write(t, out, []byte(old))
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "out" {
					args[i] = out
				}
			}
			code, stdout, stderr := c.runWith(tc.vars, "", args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tc.code, stderr)
			}
			if stdout != tc.wantStdout {
				t.Errorf("stdout = %.200q, want %.200q", stdout, tc.wantStdout)
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr = %q, want it to mention %q", stderr, want)
				}
			}
			if strings.Contains(stderr, "s3cret") {
				t.Errorf("stderr shows the server key: %q", stderr)
			}
			if tc.wantFile != "" {
				if got, err := os.ReadFile(out); err != nil || string(got) != tc.wantFile {
					t.Errorf("-o file = %.100q (%v), want %.100q", got, err, tc.wantFile)
				}
			}
			if tc.check != nil {
				if msg := tc.check(fake.lastRequest()); msg != "" {
					t.Errorf("request: %s", msg)
				}
			}
		})
	}

	// What fetch wrote is the envelope itself: verify accepts it.
	code, envelope, errs := c.runWith(withKey, "", fetch()...)
	if code != 0 {
		t.Fatalf("fetch: exit %d: %s", code, errs)
	}
	if code, out, errs := c.run(envelope, "snapshot", "verify", "--env", "production", "--public-key", f.pubA); code != 0 || !strings.HasPrefix(out, "OK environment=production version=7 ") {
		t.Errorf("verify of the fetched snapshot: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestRoughDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{40 * time.Second, "40s"},
		{5*time.Minute + 12*time.Second, "5m12s"},
		{23*time.Hour + 59*time.Minute + 30*time.Second, "23h59m"},
		{51 * time.Hour, "2d3h"},
	}
	for _, tc := range tests {
		if got := roughDuration(tc.d); got != tc.want {
			t.Errorf("roughDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
