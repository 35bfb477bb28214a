package sdk

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/snapshot"
)

// Defaults of the optional Config fields.
const (
	DefaultPollWait        = 30 * time.Second
	DefaultMinBackoff      = time.Second
	DefaultMaxBackoff      = time.Minute
	DefaultMaxSnapshotSize = snapshot.DefaultMaxSize
	DefaultStaleAfter      = 2 * time.Minute

	// MaxPollWait is the longest long poll the control plane holds (it
	// caps ?wait= there too).
	MaxPollWait = snapshot.MaxLongPoll
)

// requestGrace is how much longer than the long-poll wait one request may
// take before it is abandoned: time to connect and to transfer a large
// snapshot.
const requestGrace = 30 * time.Second

// Config configures a Client. Environment, BaseURL, ServerKey and
// TrustedKeys are required; every other field has a default.
type Config struct {
	// Environment is the environment whose snapshots the client polls, and
	// the only one it accepts ("production").
	Environment string
	// BaseURL is the control plane's address ("https://flags.example.com"),
	// or a cache or CDN in front of it: trust comes from the signature, not
	// from the transport.
	BaseURL string
	// ServerKey is the environment's server key (`solstice tokens create
	// --server --env ENV`), sent as Authorization: Bearer.
	ServerKey string
	// TrustedKeys are the environment's snapshot public keys (`solstice
	// keys export-public`; see ReadTrustedKeys). During a key rotation,
	// list both the old and the new key.
	TrustedKeys []ed25519.PublicKey

	// ServerID identifies this game server in the control plane's fleet
	// view. Default: hostname:pid.
	ServerID string
	// CacheFile is where the last-known-good snapshot is kept, so that a
	// game server that starts while the control plane is unreachable still
	// serves the configuration it last verified. Empty: no persistence.
	CacheFile string
	// PollWait is how long the control plane may hold a poll open waiting
	// for a new snapshot (default DefaultPollWait, at most MaxPollWait). A
	// negative value disables long polling: every poll answers at once.
	PollWait time.Duration
	// MinBackoff and MaxBackoff bound the wait between polls that failed:
	// exponential from MinBackoff, capped at MaxBackoff, with full jitter
	// (but never below MinBackoff). Successive polls are also at least
	// MinBackoff apart, so a server or cache that does not hold long polls
	// is not hammered. Defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxSnapshotSize caps a snapshot in bytes, while it is read and again
	// after gzip decompression (default DefaultMaxSnapshotSize, the most the
	// control plane ever publishes).
	MaxSnapshotSize int
	// StaleAfter is how long polls may keep failing before the client
	// reports its snapshot as stale (default DefaultStaleAfter). A snapshot
	// past its expiry is stale at once.
	StaleAfter time.Duration

	// HTTPClient sends the requests (default: a client on
	// http.DefaultTransport). Its Timeout, if set, must exceed PollWait.
	HTTPClient *http.Client
	// Logger receives the client's logs (default slog.Default()).
	Logger *slog.Logger
	// Clock tells the time for expiry and staleness (default the wall
	// clock). Waiting between polls always uses real timers.
	Clock solstice.Clock
}

// withDefaults validates c and returns it with every default filled in.
// It returns a KindInvalid *solstice.Error listing every problem.
func (c Config) withDefaults() (Config, error) {
	var fields []solstice.FieldError
	bad := func(field, format string, args ...any) {
		fields = append(fields, solstice.FieldError{Pointer: "/" + field, Message: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(c.Environment) == "" {
		bad("Environment", "is required")
	}
	switch u, err := url.Parse(c.BaseURL); {
	case c.BaseURL == "":
		bad("BaseURL", "is required")
	case err != nil:
		bad("BaseURL", "is not a URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		bad("BaseURL", "must be an http or https URL, got %q", c.BaseURL)
	case u.Host == "":
		bad("BaseURL", "has no host: %q", c.BaseURL)
	case u.RawQuery != "" || u.Fragment != "":
		bad("BaseURL", "must not have a query or fragment: %q", c.BaseURL)
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if strings.TrimSpace(c.ServerKey) == "" {
		bad("ServerKey", "is required (create one with `solstice tokens create --server --env ENV`)")
	}
	if len(c.TrustedKeys) == 0 {
		bad("TrustedKeys", "are required (export them with `solstice keys export-public`)")
	}
	for i, k := range c.TrustedKeys {
		if len(k) != ed25519.PublicKeySize {
			bad("TrustedKeys/"+strconv.Itoa(i), "is %d bytes, want an Ed25519 public key of %d", len(k), ed25519.PublicKeySize)
		}
	}
	if c.ServerID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown-host"
		}
		c.ServerID = host + ":" + strconv.Itoa(os.Getpid())
	}

	switch {
	case c.PollWait == 0:
		c.PollWait = DefaultPollWait
	case c.PollWait > MaxPollWait:
		bad("PollWait", "must be at most %s (the control plane holds a poll no longer), got %s", MaxPollWait, c.PollWait)
	case c.PollWait < 0:
		c.PollWait = -1 // no long poll
	}
	defaultDuration := func(field string, d *time.Duration, def time.Duration) {
		switch {
		case *d == 0:
			*d = def
		case *d < 0:
			bad(field, "must not be negative, got %s", *d)
		}
	}
	defaultDuration("MinBackoff", &c.MinBackoff, DefaultMinBackoff)
	defaultDuration("MaxBackoff", &c.MaxBackoff, DefaultMaxBackoff)
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		bad("MaxBackoff", "must be at least MinBackoff (%s), got %s", c.MinBackoff, c.MaxBackoff)
	}
	defaultDuration("StaleAfter", &c.StaleAfter, DefaultStaleAfter)
	switch {
	case c.MaxSnapshotSize == 0:
		c.MaxSnapshotSize = DefaultMaxSnapshotSize
	case c.MaxSnapshotSize < 0:
		bad("MaxSnapshotSize", "must not be negative, got %d", c.MaxSnapshotSize)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	} else if t := c.HTTPClient.Timeout; t > 0 && c.PollWait > 0 && t <= c.PollWait {
		bad("HTTPClient", "has a Timeout of %s, which cuts every long poll of %s short: raise it or lower PollWait", t, c.PollWait)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = solstice.WallClock
	}
	if len(fields) > 0 {
		return Config{}, solstice.Invalid("invalid sdk.Config", fields...)
	}
	return c, nil
}

// maxKeyFile bounds a trusted-keys file: a few PEM blocks.
const maxKeyFile = 1 << 20

// ReadTrustedKeys reads the Ed25519 public keys a game server trusts from
// a file: PEM "PUBLIC KEY" blocks as `solstice keys export-public` writes
// them, or base64 raw keys (see snapshot.ParsePublicKeys). It returns the
// file's read error, or a KindInvalid *solstice.Error if the file holds no
// key, anything that is not an Ed25519 public key, or more than 1 MiB.
func ReadTrustedKeys(path string) ([]ed25519.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read trusted keys: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read trusted keys %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, solstice.Errorf(solstice.KindInvalid, "trusted keys file %s is over %d bytes", path, maxKeyFile)
	}
	keys, err := snapshot.ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("trusted keys file %s: %w", path, err)
	}
	return keys, nil
}
