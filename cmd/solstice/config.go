package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/solsticehq/solstice/webhook"
)

// config is the configuration shared by the commands that open the
// database. Each field has a flag and a SOLSTICE_* environment variable; a
// flag given on the command line wins over the variable, which wins over the
// default. docs/configuration.md documents every one.
type config struct {
	Addr            string
	Data            string
	DatabaseURL     string
	LogLevel        string
	LogFormat       string
	Seed            bool
	ShutdownTimeout time.Duration
	SnapshotTTL     time.Duration
	SyncInterval    time.Duration
	// GuardrailInterval is how often the guardrail job evaluates every
	// guardrail; Webhooks the endpoints its incidents are announced to.
	GuardrailInterval time.Duration
	Webhooks          []webhook.Endpoint
}

// setting describes one configuration value.
type setting struct {
	flag, env, def, help string
	set                  func(c *config, v string) error
}

var settings = []setting{
	{"addr", "SOLSTICE_ADDR", "127.0.0.1:8080", "listen address of the HTTP server",
		func(c *config, v string) error { c.Addr = v; return nil }},
	{"data", "SOLSTICE_DATA", "./data", "data directory (SQLite database, signing keys)",
		func(c *config, v string) error { c.Data = v; return nil }},
	{"database-url", "SOLSTICE_DATABASE_URL", "", "database: empty for SQLite in the data directory, or a postgres:// URL",
		func(c *config, v string) error { c.DatabaseURL = v; return nil }},
	{"log-level", "SOLSTICE_LOG_LEVEL", "info", "log level: debug, info, warn, error",
		func(c *config, v string) error { c.LogLevel = v; return nil }},
	{"log-format", "SOLSTICE_LOG_FORMAT", "auto", "log format: auto (JSON unless on a terminal), json, text",
		func(c *config, v string) error { c.LogFormat = v; return nil }},
	{"seed", "SOLSTICE_SEED", "true", "seed a demo project into an empty database on start",
		func(c *config, v string) error {
			b, err := strconv.ParseBool(v)
			c.Seed = b
			return err
		}},
	{"snapshot-ttl", "SOLSTICE_SNAPSHOT_TTL", "24h", "how long a signed snapshot is valid; it is re-signed at half its TTL",
		func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err == nil && d < time.Minute {
				err = fmt.Errorf("must be at least 1m")
			}
			c.SnapshotTTL = d
			return err
		}},
	{"sync-interval", "SOLSTICE_SYNC_INTERVAL", "1s", "how often to look for changes made by other processes (CLI, replicas) and publish them",
		func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err == nil && d <= 0 {
				err = fmt.Errorf("must be positive")
			}
			c.SyncInterval = d
			return err
		}},
	{"guardrail-interval", "SOLSTICE_GUARDRAIL_INTERVAL", "10s", "how often the guardrail job evaluates every guardrail",
		func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err == nil && d < 100*time.Millisecond {
				err = fmt.Errorf("must be at least 100ms")
			}
			c.GuardrailInterval = d
			return err
		}},
	{"webhooks", "SOLSTICE_WEBHOOKS", "", "webhook endpoints that hear of guardrail incidents: name=URL;secret=whsec_..., comma-separated (docs/webhooks.md)",
		func(c *config, v string) error {
			eps, err := webhook.ParseEndpoints(v)
			c.Webhooks = eps
			return err
		}},
	{"shutdown-timeout", "SOLSTICE_SHUTDOWN_TIMEOUT", "15s", "how long a graceful shutdown waits for requests in flight",
		func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			c.ShutdownTimeout = d
			return err
		}},
}

// bindConfig registers the named settings (all when names is empty) on fs.
// Defaults come from the environment where set. The returned function
// validates and returns the configuration after fs.Parse.
func bindConfig(fs *flag.FlagSet, e *env, names ...string) func() (config, error) {
	var c config
	values := map[string]*string{}
	for _, s := range settings {
		if len(names) > 0 && !slices.Contains(names, s.flag) {
			continue
		}
		def := s.def
		if v := e.getenv(s.env); v != "" {
			def = v
		}
		values[s.flag] = fs.String(s.flag, def, fmt.Sprintf("%s (env %s)", s.help, s.env))
	}
	return func() (config, error) {
		for _, s := range settings {
			v := s.def
			if p, ok := values[s.flag]; ok {
				v = *p
			}
			if err := s.set(&c, v); err != nil {
				return c, usagef("invalid -%s %q: %v", s.flag, v, err)
			}
		}
		if _, err := parseLevel(c.LogLevel); err != nil {
			return c, usagef("%v", err)
		}
		switch c.LogFormat {
		case "auto", "json", "text":
		default:
			return c, usagef("invalid -log-format %q: want auto, json or text", c.LogFormat)
		}
		return c, nil
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger returns the process logger: JSON when not writing to a terminal
// (or when asked), human-readable text on one.
func newLogger(c config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	text := c.LogFormat == "text"
	if c.LogFormat == "auto" {
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			text = true
		}
	}
	if text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// redactURL hides a password in a database URL for logs.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				return u[:i+3] + rest[:colon] + ":***" + rest[at:]
			}
		}
	}
	return u
}
