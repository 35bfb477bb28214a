package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/snapshot"
)

// fetchMaxBytes caps a snapshot response, compressed and decompressed.
// It is above snapshot.DefaultMaxSize so that an oversized snapshot can
// still be fetched and inspected; verifying it refuses it.
const fetchMaxBytes = 64 << 20

func cmdSnapshot(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: verify or fetch")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "verify":
		return snapshotVerify(e, args)
	case "fetch":
		return snapshotFetch(ctx, e, args)
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(e.stdout, "usage: solstice snapshot %s\n\nRun `solstice snapshot verify -h` or `solstice snapshot fetch -h` for the flags.\n", commands["snapshot"].usage)
		return flag.ErrHelp
	default:
		return usagef("unknown subcommand %q: want verify or fetch", sub)
	}
}

// verifier checks a snapshot as a game server would: the checks of
// snapshot.Open, against the keys of the public key files.
type verifier struct {
	keyFiles   []string
	env        string
	minVersion int64
	now        time.Time // zero: the wall clock at the time of the check
	trusted    []ed25519.PublicKey
}

// bind registers the flags shared by verify and fetch --verify.
func (v *verifier) bind(fs *flag.FlagSet) {
	fs.Func("public-key", "`file` of trusted public keys, PEM as `solstice keys export-public` writes it; may be repeated", func(s string) error {
		v.keyFiles = append(v.keyFiles, s)
		return nil
	})
	fs.Int64Var(&v.minVersion, "min-version", 0, "refuse a snapshot whose version is below `N`, as a client holding version N-1 would (rollback)")
}

// load checks the options and reads the trusted keys.
func (v *verifier) load() error {
	if len(v.keyFiles) == 0 {
		return usagef("--public-key is required")
	}
	if v.minVersion < 0 {
		return usagef("--min-version must be at least 1")
	}
	for _, path := range v.keyFiles {
		b, err := readLimited(path, 1<<20)
		if err != nil {
			return err
		}
		keys, err := snapshot.ParsePublicKeys(b)
		if err != nil {
			return fmt.Errorf("public key file %s: %w", path, err)
		}
		v.trusted = append(v.trusted, keys...)
	}
	return nil
}

// open verifies envelope. A rejection is a *rejectedError that names the
// reason.
func (v *verifier) open(envelope []byte) (*snapshot.Opened, error) {
	opts := snapshot.OpenOptions{Trusted: v.trusted, Environment: v.env, Now: v.clock()}
	if v.minVersion > 0 {
		// Open refuses versions up to the held one (HeldPayload is nil, so
		// no content counts as "the one held"): holding N-1 means "at
		// least N".
		opts.HeldVersion = v.minVersion - 1
	}
	o, err := snapshot.Open(envelope, opts)
	if err != nil {
		return nil, v.explain(err)
	}
	return o, nil
}

func (v *verifier) clock() time.Time {
	if v.now.IsZero() {
		return time.Now()
	}
	return v.now
}

// rejectedError is a snapshot that failed verification, with the message
// the CLI prints.
type rejectedError struct {
	msg string
	err *snapshot.VerifyError
}

func (r *rejectedError) Error() string { return r.msg }
func (r *rejectedError) Unwrap() error { return r.err }

// explain turns a *snapshot.VerifyError into a message that ends with its
// stable reason code, so scripts can tell reasons apart.
func (v *verifier) explain(err error) error {
	var ve *snapshot.VerifyError
	if !errors.As(err, &ve) {
		return err
	}
	if ve.Reason == snapshot.ReasonRollback && v.minVersion > 0 {
		// The "held version" is our stand-in for --min-version: say so in
		// the terms the operator used.
		return &rejectedError{msg: fmt.Sprintf("snapshot version %d is below --min-version %d (%s)", ve.Version, v.minVersion, ve.Reason), err: ve}
	}
	return rejection(ve)
}

// rejection is ve with its reason code appended to its message.
func rejection(ve *snapshot.VerifyError) error {
	return &rejectedError{msg: fmt.Sprintf("%s (%s)", ve.Error(), ve.Reason), err: ve}
}

// summary is the one line verify prints for an accepted snapshot.
func summary(o *snapshot.Opened, now time.Time) string {
	p := o.Payload
	exp := time.Unix(p.ExpiresAt, 0).UTC()
	return fmt.Sprintf("OK environment=%s version=%d revision=%d flags=%d segments=%d expires=%s (in %s) signed-by=%s",
		p.Environment, p.Version, p.Revision, len(p.Flags), len(p.Segments),
		exp.Format(time.RFC3339), roughDuration(exp.Sub(now)), strings.Join(o.KeyIDs, ","))
}

// roughDuration formats a positive duration to two units, rounded down:
// "2d3h", "23h59m", "5m12s", "40s".
func roughDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d >= day:
		return fmt.Sprintf("%dd%dh", d/day, d%day/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

func snapshotVerify(e *env, args []string) error {
	fs := newFlagSet(e, "snapshot verify")
	var v verifier
	v.bind(fs)
	fs.StringVar(&v.env, "env", "", "the environment the snapshot must be for (required)")
	fs.Func("now", "check expiry against this `time` (RFC 3339) instead of the clock", func(s string) error {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return errors.New("want an RFC 3339 time such as 2026-11-24T10:00:00Z")
		}
		v.now = t
		return nil
	})
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if v.env == "" {
		return usagef("--env is required")
	}
	if err := v.load(); err != nil {
		return err
	}
	path := "-"
	if len(pos) == 1 {
		path = pos[0]
	}
	in := e.stdin
	if path == "-" {
		if f, ok := e.stdin.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			return usagef("give the snapshot FILE, or pipe it to standard input")
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("read snapshot: %w", err)
		}
		defer f.Close()
		in = f
	}
	envelope, _, err := readEnvelope(in, snapshot.DefaultMaxSize)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	o, err := v.open(envelope)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	_, err = fmt.Fprintln(e.stdout, summary(o, v.clock()))
	return err
}

// readEnvelope reads an envelope of at most limit bytes from r,
// decompressing it first if it starts with the gzip magic bytes (a JSON
// envelope never does). It reports whether it was compressed. Over the
// limit, compressed or not, is a ReasonTooLarge rejection; a gzip stream
// that does not decompress is ReasonMalformed.
func readEnvelope(r io.Reader, limit int) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, false, fmt.Errorf("read snapshot: %w", err)
	}
	if len(b) > limit {
		return nil, false, tooLarge(limit, "")
	}
	if len(b) == 0 {
		return nil, false, rejection(&snapshot.VerifyError{Reason: snapshot.ReasonMalformed, Message: "the snapshot is empty (0 bytes)"})
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b, false, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err == nil {
		b, err = io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	}
	if err != nil {
		return nil, true, rejection(&snapshot.VerifyError{Reason: snapshot.ReasonMalformed, Message: "gzip-compressed snapshot does not decompress", Err: err})
	}
	if len(b) > limit {
		return nil, true, tooLarge(limit, "decompressed ")
	}
	return b, true, nil
}

func tooLarge(limit int, what string) error {
	return rejection(&snapshot.VerifyError{Reason: snapshot.ReasonTooLarge, Message: fmt.Sprintf("%ssnapshot envelope is over the limit of %d bytes", what, limit)})
}

// readLimited reads a small file, refusing one over limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // "open PATH: no such file or directory"
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, solstice.Errorf(solstice.KindInvalid, "%s is over %d bytes", path, limit)
	}
	return b, nil
}

func snapshotFetch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "snapshot fetch")
	base := fs.String("url", "http://127.0.0.1:8080", "base URL of the control plane")
	var v verifier
	fs.StringVar(&v.env, "env", "", "environment to fetch (required)")
	key := fs.String("key", "", "the environment's server key (default $SOLSTICE_SERVER_KEY; prefer the variable: other users can read a command line)")
	out := fs.String("o", "-", "write the envelope to this `file` (replaced only after a successful fetch), - for standard output")
	etag := fs.String("etag", "", "ETag of the snapshot already held: the server answers not modified while it is current")
	wait := fs.Duration("wait", 0, "with --etag: how long the server may wait for a newer snapshot before answering not modified")
	verify := fs.Bool("verify", false, "verify the snapshot (with --public-key) and write it only if it passes")
	v.bind(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if v.env == "" {
		return usagef("--env is required")
	}
	secret := *key
	if secret == "" {
		secret = e.getenv("SOLSTICE_SERVER_KEY")
	}
	if secret == "" {
		return usagef("no server key: set SOLSTICE_SERVER_KEY (or give --key)")
	}
	switch {
	case *wait < 0:
		return usagef("--wait must not be negative")
	case *wait > 0 && *etag == "":
		return usagef("--wait needs --etag: the server waits for a snapshot newer than that one")
	case !*verify && (len(v.keyFiles) > 0 || v.minVersion != 0):
		return usagef("--public-key and --min-version are for --verify")
	}
	if *verify {
		if err := v.load(); err != nil {
			return err
		}
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url %q is not an http:// or https:// URL", *base)
	}
	u = u.JoinPath("v1", "snapshots", v.env)
	if *wait > 0 {
		q := u.Query()
		q.Set("wait", wait.String())
		u.RawQuery = q.Encode()
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		fmt.Fprintf(e.stderr, "warning: sending the server key to %s over unencrypted http\n", u.Host)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	// NOTE: setting Accept-Encoding ourselves turns off the transport's
	// transparent decompression, so that the size cap applies to what
	// arrives and to what it decompresses to.
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", "solstice-cli/"+version)
	req.Header.Set(snapshot.HeaderServerID, serverID())
	if *etag != "" {
		req.Header.Set("If-None-Match", quoteETag(*etag))
	}
	client := &http.Client{Timeout: *wait + 10*time.Second}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer res.Body.Close()

	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		fmt.Fprintf(e.stderr, "not modified: the snapshot of %s is still %s\n", v.env, quoteETag(*etag))
		return nil
	default:
		return fetchError(res)
	}
	body, err := decodeBody(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "ETag: %s\nSolstice-Snapshot-Version: %s\n", printable(res.Header.Get("ETag"), 200), printable(res.Header.Get(snapshot.HeaderVersion), 40))
	if *verify {
		o, err := v.open(body)
		if err != nil {
			return fmt.Errorf("verify: %w; nothing was written", err)
		}
		fmt.Fprintln(e.stderr, summary(o, v.clock()))
	}
	if *out == "-" {
		_, err := e.stdout.Write(body)
		return err
	}
	if err := writeFileReplace(*out, body, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Wrote %d bytes to %s.\n", len(body), *out)
	return nil
}

// decodeBody reads a snapshot response body within fetchMaxBytes,
// decompressing it if it is gzip-encoded.
func decodeBody(res *http.Response) ([]byte, error) {
	ce := strings.ToLower(strings.TrimSpace(res.Header.Get("Content-Encoding")))
	if ce != "" && ce != "gzip" && ce != "identity" {
		return nil, fmt.Errorf("fetch: the server sent Content-Encoding %q; only gzip was asked for", printable(ce, 40))
	}
	body, gzipped, err := readEnvelope(res.Body, fetchMaxBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if ce == "gzip" && !gzipped {
		return nil, errors.New("fetch: the server sent Content-Encoding gzip, but the body is not gzip")
	}
	return body, nil
}

// fetchError describes an error response: the title and detail of a
// problem+json document, else the status and the start of the body.
func fetchError(res *http.Response) error {
	b, gzipped, err := readEnvelope(res.Body, 64<<10)
	if err != nil && !gzipped {
		b = nil
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if mt == "application/problem+json" && json.Unmarshal(b, &p) == nil && (p.Title != "" || p.Detail != "") {
		title := p.Title
		if title == "" {
			title = http.StatusText(res.StatusCode)
		}
		msg := fmt.Sprintf("fetch: %d %s", res.StatusCode, printable(title, 200))
		if p.Detail != "" {
			msg += ": " + printable(p.Detail, 1000)
		}
		return errors.New(msg)
	}
	msg := "fetch: server answered " + res.Status
	if s := printable(string(b), 200); s != "" && err == nil {
		msg += ": " + s
	}
	return errors.New(msg)
}

// printable returns s with control characters removed (a server's text
// must not drive the terminal), trimmed and cut to at most max bytes.
func printable(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return ' '
		case r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

// quoteETag adds the double quotes of an entity tag that a shell removed.
func quoteETag(t string) string {
	if strings.HasPrefix(t, `"`) || strings.HasPrefix(t, `W/"`) {
		return t
	}
	return strconv.Quote(t)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverID is what the CLI calls itself in the control plane's fleet view.
func serverID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "unknown"
	}
	return "cli-" + h
}
