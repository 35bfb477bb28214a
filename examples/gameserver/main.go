// Command gameserver is a game server simulation on the Solstice SDK, to
// run against a control plane and to copy from.
//
// It reads the seasonal-event config (the winter-festival object flag)
// through OpenFeature, evaluated locally from the signed snapshot the SDK
// polls; pins the snapshot at the start of each match, so that a change
// published mid-match reaches the next match and never half of this one;
// and keeps playing on its last-known-good snapshot while the control
// plane is down. In each match, simulated players send action envelopes,
// and the server validates every one (validator.go): the actor, a cooldown
// per action, ownership of used items (the config's drop table decides
// what drops) and a nonce against replays. Some players cheat, so
// rejections show up with their reasons. The server reports telemetry to
// the control plane (sdk.Reporter): the players exposed to each variant of
// the festival's split, their accepted and rejected actions with reasons,
// one session per player and match, and a custom counter of drops.
//
//	export SOLSTICE_SERVER_KEY=sol_server_...   # solstice tokens create --server --env development
//	go run ./examples/gameserver --url http://127.0.0.1:8080 --env development \
//	    --public-key development.pub --cache ./gameserver-cache.snap
//
// See README.md beside this file for a walk-through against `make run`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/solsticehq/solstice/sdk"
	"github.com/solsticehq/solstice/sdk/ofprovider"
)

// options are the command line's settings.
type options struct {
	URL          string        // the control plane (or a cache in front of it)
	Env          string        // the environment whose snapshots to poll
	ServerKey    string        // from $SOLSTICE_SERVER_KEY, never the command line
	PublicKey    string        // the file of trusted snapshot keys
	Cache        string        // the last-known-good snapshot file
	ServerID     string        // this server's name in the fleet view
	Players      int           // players per match
	Match        time.Duration // match length
	TickRate     int           // simulation ticks per second
	Cooldown     time.Duration // between two actions of one kind by one player
	Matches      int           // matches to play; 0: until interrupted
	Seed         uint64        // the players' behaviour
	StaleAfter   time.Duration // failing polls before the config is reported stale
	ReadyTimeout time.Duration // how long to wait for a first snapshot at start
	ReportEvery  time.Duration // how often telemetry is shipped
	Verbose      bool          // the SDK's info logs on stderr

	// How fast polls (and telemetry) are retried after a failure, and how
	// long telemetry may take to ship at the end. Tests shorten them.
	minBackoff, maxBackoff time.Duration
	finalFlush             time.Duration
}

// parseOptions reads the command line and the environment. It returns
// flag.ErrHelp for -h, and an error naming the problem otherwise.
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	o := options{ServerKey: strings.TrimSpace(getenv("SOLSTICE_SERVER_KEY"))}
	fs := flag.NewFlagSet("gameserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8080", "control plane `URL`")
	fs.StringVar(&o.Env, "env", "development", "`environment` to poll")
	fs.StringVar(&o.PublicKey, "public-key", "", "`file` of trusted snapshot keys, from solstice keys export-public (default ENV.pub)")
	fs.StringVar(&o.Cache, "cache", "gameserver-cache.snap", "last-known-good snapshot `file` (empty: none)")
	fs.StringVar(&o.ServerID, "server-id", "", "this server's `name` in the fleet view (default hostname:pid)")
	fs.IntVar(&o.Players, "players", 6, "players per match")
	fs.DurationVar(&o.Match, "match", 20*time.Second, "match length")
	fs.IntVar(&o.TickRate, "tick-rate", 10, "simulation ticks per second")
	fs.DurationVar(&o.Cooldown, "cooldown", 500*time.Millisecond, "cooldown of each action")
	fs.IntVar(&o.Matches, "matches", 0, "matches to play (0: until interrupted)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the players' behaviour")
	fs.DurationVar(&o.StaleAfter, "stale-after", 30*time.Second, "report the config stale after polls have failed this long")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", 30*time.Second, "how long to wait for a first snapshot")
	fs.DurationVar(&o.ReportEvery, "report-every", sdk.DefaultFlushInterval, "how often telemetry is shipped to the control plane")
	fs.BoolVar(&o.Verbose, "v", false, "log the SDK's info messages to stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: SOLSTICE_SERVER_KEY=sol_server_... gameserver [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.PublicKey == "" {
		o.PublicKey = o.Env + ".pub"
	}
	switch {
	case o.ServerKey == "":
		return o, fmt.Errorf("set SOLSTICE_SERVER_KEY to a server key of %q (./bin/solstice tokens create --name demo-gs --server --env %s)", o.Env, o.Env)
	case o.Players < 1:
		return o, fmt.Errorf("--players must be at least 1, got %d", o.Players)
	case o.TickRate < 1 || o.TickRate > 1000:
		return o, fmt.Errorf("--tick-rate must be between 1 and 1000, got %d", o.TickRate)
	case o.Match < time.Second/time.Duration(o.TickRate):
		return o, fmt.Errorf("--match must last at least one tick, got %s", o.Match)
	case o.ReportEvery <= 0:
		return o, fmt.Errorf("--report-every must be positive, got %s", o.ReportEvery)
	}
	o.minBackoff, o.maxBackoff = time.Second, 5*time.Second
	o.finalFlush = sdk.DefaultFinalFlushTimeout
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gameserver:", err)
		os.Exit(2)
	}
	// Ctrl-C or SIGTERM ends the match under way and shuts down cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if o.Verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(ctx, o, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "gameserver:", err)
		os.Exit(1)
	}
}

// run connects to the control plane and plays matches until ctx ends (or
// o.Matches are played), printing what happens to out.
func run(ctx context.Context, o options, out io.Writer, log *slog.Logger) error {
	gs, err := connect(ctx, o, out, log)
	if err != nil {
		return err
	}
	defer gs.close()
	gs.playMatches(ctx, o.Matches, nil)
	return nil
}

// gameServer is the SDK client, OpenFeature on top of it, the telemetry
// reporter, and the matches.
type gameServer struct {
	opts     options
	client   *sdk.Client
	of       *openfeature.Client
	reporter *sdk.Reporter
	stop     context.CancelFunc // ends the reporter's Run
	reported chan error         // Run's result: its final flush
	con      *console
	matches  int // matches played so far
}

// connect sets the SDK up as a game server does at start: a client that
// verifies and caches snapshots, its events printed, a telemetry reporter,
// and the OpenFeature provider over both. It returns once a snapshot is
// held, from the control plane or the last-known-good file; if there is
// none within o.ReadyTimeout, or the control plane refuses the server key,
// it returns the error.
func connect(ctx context.Context, o options, out io.Writer, log *slog.Logger) (*gameServer, error) {
	keys, err := sdk.ReadTrustedKeys(o.PublicKey)
	if err != nil {
		return nil, err
	}
	client, err := sdk.New(sdk.Config{
		Environment: o.Env,
		BaseURL:     o.URL,
		ServerKey:   o.ServerKey,
		TrustedKeys: keys,
		ServerID:    o.ServerID,
		CacheFile:   o.Cache,
		StaleAfter:  o.StaleAfter,
		// NOTE: a short MaxBackoff, so that the demo recovers within seconds
		// of the control plane's return. A fleet keeps the default (a
		// minute, jittered) so that a restarted control plane is not hit by
		// every server at once.
		MinBackoff: o.minBackoff,
		MaxBackoff: o.maxBackoff,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	// The reporter ships with the client's URL, server key and server id.
	// The provider's hook records, for every evaluation that a split
	// decided, the player's exposure to the variant.
	reporter, err := sdk.NewReporter(client, sdk.WithFlushInterval(o.ReportEvery), sdk.WithFinalFlushTimeout(o.finalFlush))
	if err != nil {
		return nil, err
	}
	con := &console{w: out}
	// Subscribe before anything starts, to see READY even when it comes
	// from the last-known-good file.
	client.Subscribe(con.event)

	con.printf("waiting for a snapshot of %q from %s or the last-known-good file %q", o.Env, o.URL, o.Cache)
	ictx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	// The provider starts the client's polling and waits for its first
	// snapshot; polling then runs until openfeature.Shutdown.
	if err := openfeature.SetProviderWithContextAndWait(ictx, ofprovider.New(client, ofprovider.WithReporter(reporter))); err != nil {
		openfeature.Shutdown()
		if last := client.Stats().LastError; last != nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no configuration to play with after %s: %w (last poll: %w)", o.ReadyTimeout, err, last)
		}
		return nil, fmt.Errorf("no configuration to play with: %w", err)
	}
	// Telemetry ships until close, then once more: Run's final flush.
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	gs := &gameServer{opts: o, client: client, of: openfeature.NewDefaultClient(), reporter: reporter,
		stop: stop, reported: make(chan error, 1), con: con}
	go func() { gs.reported <- reporter.Run(rctx) }()
	return gs, nil
}

// close ships the telemetry that is left and stops polling. The cache
// file keeps the last snapshot for the next start.
func (gs *gameServer) close() {
	gs.stop()
	if err := <-gs.reported; err != nil {
		gs.con.printf("telemetry: the last batches were not delivered: %v", err)
	}
	s := gs.reporter.Stats()
	gs.con.printf("telemetry: %d batches delivered (%d retried), %d refused, %d windows and %d events dropped",
		s.Batches, s.Retries, s.Refused, s.DroppedWindows, s.DroppedEvents)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = openfeature.ShutdownWithContext(ctx)
	gs.con.printf("stopped; matches played: %d", gs.matches)
}

// playMatches plays count matches one after another (count 0: until ctx
// ends) and hands each report to done, if not nil.
func (gs *gameServer) playMatches(ctx context.Context, count int, done func(matchReport)) {
	for i := 0; (count == 0 || i < count) && ctx.Err() == nil; i++ {
		gs.matches++
		r := gs.playMatch(ctx, gs.matches)
		if done != nil {
			done(r)
		}
	}
}

// console prints lines for people to read, from the match loop and from
// the SDK's polling goroutine (events) alike.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// event prints an SDK client event as it happens. It runs on the polling
// goroutine, so it only prints.
func (c *console) event(e sdk.Event) {
	switch e.Kind {
	case sdk.EventConfigurationChanged:
		c.printf("event %s: snapshot version %d (revision %d) changed %s", e.Kind, e.Version, e.Revision, strings.Join(e.FlagChanges, ", "))
	case sdk.EventRejected:
		kept := "none held yet"
		if e.Version > 0 {
			kept = fmt.Sprintf("keeping version %d", e.Version)
		}
		c.printf("event %s (%s): %s; %s", e.Kind, e.Reason, e.Message, kept)
	default:
		c.printf("event %s: %s", e.Kind, e.Message)
	}
}
