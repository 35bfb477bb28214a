package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/snapshot"
)

// keySettings are the settings of `solstice keys`: the keyring lives in the
// data directory, and the database is not needed.
var keySettings = []string{"data", "log-level", "log-format"}

func cmdKeys(_ context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list, rotate, retire or export-public")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(e, "keys "+sub)
	conf := bindConfig(fs, e, keySettings...)
	envName := fs.String("env", "", "environment whose signing keys to manage (required)")
	switch sub {
	case "list":
		asJSON := fs.Bool("json", false, "print JSON")
		if err := parse(fs, args); err != nil {
			return err
		}
		kr, c, err := openKeyring(e, conf, *envName)
		if err != nil {
			return err
		}
		return keysList(e, kr, c, *envName, *asJSON)
	case "rotate":
		if err := parse(fs, args); err != nil {
			return err
		}
		kr, c, err := openKeyring(e, conf, *envName)
		if err != nil {
			return err
		}
		return keysRotate(e, kr, c, *envName)
	case "retire":
		keyFlag := fs.String("key", "", "id of the key to retire (or give it as the argument); a unique prefix of at least 8 characters will do")
		pos, err := parseArgs(fs, args, 1)
		if err != nil {
			return err
		}
		id := *keyFlag
		switch {
		case len(pos) == 1 && id != "" && pos[0] != id:
			return usagef("two key ids given (%s and --key %s): retire one key at a time", pos[0], id)
		case len(pos) == 1:
			id = pos[0]
		case id == "":
			return usagef("missing the id of the key to retire (see solstice keys list --env %s)", orPlaceholder(*envName))
		}
		kr, c, err := openKeyring(e, conf, *envName)
		if err != nil {
			return err
		}
		return keysRetire(e, kr, c, *envName, id)
	case "export-public":
		out := fs.String("o", "-", "output file, - for standard output")
		if err := parse(fs, args); err != nil {
			return err
		}
		kr, c, err := openKeyring(e, conf, *envName)
		if err != nil {
			return err
		}
		return keysExportPublic(e, kr, c, *envName, *out)
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(e.stdout, "usage: solstice keys %s\n\nSubcommands: list, rotate, retire, export-public. Run `solstice keys list -h` for a subcommand's flags.\n", commands["keys"].usage)
		return flag.ErrHelp
	default:
		return usagef("unknown subcommand %q: want list, rotate, retire or export-public", sub)
	}
}

// openKeyring validates the settings and returns the data directory's
// keyring. Signing keys given in SOLSTICE_SIGNING_KEY_<ENV> replace the
// directory for that environment, as they do for `solstice serve`.
func openKeyring(e *env, conf func() (config, error), envName string) (*snapshot.Keyring, config, error) {
	if envName == "" {
		return nil, config{}, usagef("--env is required")
	}
	c, err := conf()
	if err != nil {
		return nil, c, err
	}
	if c.LogLevel == "info" {
		c.LogLevel = "warn" // the commands say what they did themselves
	}
	lookup := func(name string) (string, bool) {
		v := e.getenv(name)
		return v, v != ""
	}
	kr := snapshot.NewKeyring(c.Data,
		snapshot.WithKeysFromEnv(lookup),
		snapshot.WithKeyringLogger(newLogger(c, e.stderr)))
	return kr, c, nil
}

// requireDataDir refuses to create keys under a data directory that does
// not exist.
//
// NOTE: the Keyring would create it. But the keys the control plane signs
// with live in its data directory, and a keyring created somewhere else (a
// mistyped --data, the wrong working directory) would hand game servers a
// public key that nothing signs with: every snapshot would be rejected.
func requireDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return solstice.Errorf(solstice.KindNotFound, "data directory %s does not exist: point --data (or SOLSTICE_DATA) at the control plane's data directory", dir)
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !fi.IsDir():
		return solstice.Errorf(solstice.KindInvalid, "data directory %s is not a directory", dir)
	}
	return nil
}

// external reports whether keys come from outside the keyring directory
// (an environment variable or a key file).
func external(keys []snapshot.KeyInfo) bool {
	return len(keys) > 0 && keys[0].Source != ""
}

// activeIDs returns the ids of the active keys, in the order given.
func activeIDs(keys []snapshot.KeyInfo) []string {
	var ids []string
	for _, k := range keys {
		if k.Status == snapshot.KeyActive {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// keyJSON is one key in `solstice keys list --json`.
type keyJSON struct {
	ID        string             `json:"id"`
	Status    snapshot.KeyStatus `json:"status"`
	CreatedAt *time.Time         `json:"created_at"` // null for an external key
	RetiredAt *time.Time         `json:"retired_at"` // null while active
	Source    string             `json:"source"`     // "keyring", "env:NAME" or "file:PATH"
	PublicKey []byte             `json:"public_key"` // raw 32 bytes, base64
}

func keysList(e *env, kr *snapshot.Keyring, c config, envName string, asJSON bool) error {
	keys, err := kr.List(envName)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		if err := requireDataDir(c.Data); err != nil {
			return err
		}
	}
	if asJSON {
		out := make([]keyJSON, len(keys))
		for i, k := range keys {
			out[i] = keyJSON{ID: k.ID, Status: k.Status, CreatedAt: timePtr(k.CreatedAt), RetiredAt: timePtr(k.RetiredAt), Source: source(k), PublicKey: k.Public}
		}
		return writeJSON(e.stdout, map[string]any{"environment": envName, "keys": out})
	}
	if len(keys) == 0 {
		fmt.Fprintf(e.stdout, "%s has no signing key yet. The control plane creates one at its first publish; to create it now and get its public key, run:\n  solstice keys export-public --env %s > %s.pub\n", envName, envName, envName)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tSTATUS\tCREATED\tRETIRED\tSOURCE")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Status, orDash(k.CreatedAt), orDash(k.RetiredAt), source(k))
	}
	return tw.Flush()
}

func keysRotate(e *env, kr *snapshot.Keyring, c config, envName string) error {
	before, err := kr.List(envName)
	if err != nil {
		return err
	}
	if !external(before) { // for external keys, Rotate explains why it cannot
		if err := requireDataDir(c.Data); err != nil {
			return err
		}
	}
	old := activeIDs(before)
	k, err := kr.Rotate(envName)
	if err != nil {
		return err
	}
	w := e.stdout
	if len(old) == 0 {
		fmt.Fprintf(w, "Created the first signing key of %s: %s\n\nGive game servers its public key:\n  solstice keys export-public --env %s > %s.pub\n", envName, k.ID, envName, envName)
		return nil
	}
	fmt.Fprintf(w, "Added signing key %s to %s.\n\n", k.ID, envName)
	fmt.Fprintf(w, "%s now has %d active keys, and every snapshot carries a signature by each of them.\n", envName, len(old)+1)
	fmt.Fprintf(w, "  1. Give every game server of %s the new public key (the file holds all active keys):\n       solstice keys export-public --env %s > %s.pub\n", envName, envName, envName)
	fmt.Fprintf(w, "  2. A running control plane picks the new key up at its next publish; no restart is needed.\n")
	fmt.Fprintf(w, "  3. Only when every game server trusts the new key, retire the old one:\n")
	for _, id := range old {
		fmt.Fprintf(w, "       solstice keys retire --env %s %s\n", envName, id)
	}
	return nil
}

func keysRetire(e *env, kr *snapshot.Keyring, c config, envName, id string) error {
	keys, err := kr.List(envName)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		if err := requireDataDir(c.Data); err != nil {
			return err
		}
	}
	if id, err = resolveKeyID(envName, keys, id); err != nil {
		return err
	}
	k, err := kr.Retire(envName, id)
	if err != nil {
		return err
	}
	after, err := kr.List(envName)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Retired signing key %s of %s: it signs nothing from now on, and its private key is deleted.\n", k.ID, envName)
	fmt.Fprintf(e.stdout, "Still active: %s.\n", strings.Join(activeIDs(after), ", "))
	fmt.Fprintf(e.stdout, "A running control plane drops the retired key's signature at its next publish; game servers that trust only the retired key will reject snapshots from then on.\n")
	return nil
}

// minKeyPrefix is the shortest key id prefix retire accepts in place of
// the whole id.
const minKeyPrefix = 8

// resolveKeyID returns the key id that id names: itself, or the one key
// whose id starts with it (at least minKeyPrefix characters). An unknown id
// is returned as is, for Retire to report.
func resolveKeyID(envName string, keys []snapshot.KeyInfo, id string) (string, error) {
	id = strings.TrimSuffix(strings.ToLower(id), "…")
	var matches []string
	for _, k := range keys {
		if k.ID == id {
			return id, nil
		}
		if len(id) >= minKeyPrefix && strings.HasPrefix(k.ID, id) {
			matches = append(matches, k.ID)
		}
	}
	if len(matches) > 1 {
		return "", solstice.Errorf(solstice.KindInvalid, "key id prefix %s matches %d keys of %s: give more of it", id, len(matches), envName)
	}
	if len(matches) == 1 {
		return matches[0], nil
	}
	return id, nil
}

func keysExportPublic(e *env, kr *snapshot.Keyring, c config, envName, out string) error {
	before, err := kr.List(envName)
	if err != nil {
		return err
	}
	created := len(activeIDs(before)) == 0
	if created {
		if err := requireDataDir(c.Data); err != nil {
			return err
		}
	}
	pem, err := kr.ExportPublic(envName)
	if err != nil {
		return err
	}
	after, err := kr.List(envName)
	if err != nil {
		return err
	}
	active := activeIDs(after)
	if created && len(active) > 0 {
		fmt.Fprintf(e.stderr, "%s had no signing key: created %s.\n", envName, active[0])
	}
	if out == "-" {
		_, err := e.stdout.Write(pem)
		return err
	}
	if err := writeFileReplace(out, pem, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Wrote the %d active public key(s) of %s to %s.\n", len(active), envName, out)
	return nil
}

func source(k snapshot.KeyInfo) string {
	if k.Source == "" {
		return "keyring"
	}
	return k.Source
}

func orDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func orPlaceholder(envName string) string {
	if envName == "" {
		return "E"
	}
	return envName
}

// parseArgs parses flags and up to max positional arguments in any order
// (`retire KEYID --env E` as well as `retire --env E KEYID`), turning flag
// errors into usage errors as parse does.
func parseArgs(fs *flag.FlagSet, args []string, max int) ([]string, error) {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fmt.Fprintf(out, "usage of %s:\n", fs.Name())
			fs.PrintDefaults()
			return nil, err
		}
		if err != nil {
			return nil, usagef("%s", strings.TrimPrefix(err.Error(), "flag provided but not defined: "))
		}
		if fs.NArg() == 0 {
			break
		}
		if n := len(args) - fs.NArg(); n > 0 && args[n-1] == "--" {
			pos = append(pos, fs.Args()...) // after "--", everything is an argument
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) > max {
		return nil, usagef("unexpected argument %q", pos[max])
	}
	return pos, nil
}

// writeFileReplace writes data to a temporary file beside path and renames
// it into place, so that a failure never leaves a half-written file where
// a good one was.
func writeFileReplace(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
