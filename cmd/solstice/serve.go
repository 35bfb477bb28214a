package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/fleet"
	"github.com/solsticehq/solstice/guardrails"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/snapshot"
	"github.com/solsticehq/solstice/store"
	"github.com/solsticehq/solstice/telemetry"
	"github.com/solsticehq/solstice/web"
	"github.com/solsticehq/solstice/webhook"
)

// app is the wired control plane: the database and the domain services.
type app struct {
	db    *store.DB
	flags *flags.Service
	auth  *auth.Service
	log   *slog.Logger
}

// openApp opens (and migrates) the database and wires the services.
func openApp(ctx context.Context, c config, log *slog.Logger, opts ...flags.ServiceOption) (*app, error) {
	db, err := store.Open(ctx, store.Config{URL: c.DatabaseURL, DataDir: c.Data})
	if err != nil {
		return nil, err
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	for _, m := range applied {
		log.Info("applied migration", "migration", m)
	}
	a := &app{db: db, flags: flags.NewService(db, opts...), auth: auth.NewService(db, nil), log: log}
	if err := a.flags.EnsureDefaultEnvironments(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("create default environments: %w", err)
	}
	return a, nil
}

// guardrails wires the guardrail job and service: counters from tel with
// the split's treatment share, states and incidents in the database,
// rollbacks through the flags service, incidents announced by hooks.
func (a *app) guardrails(tel *telemetry.Service, hooks *webhook.Dispatcher, c config, log *slog.Logger) (*guardrails.Job, *guardrails.Service) {
	names := make([]string, len(c.Webhooks))
	for i, ep := range c.Webhooks {
		names[i] = ep.Name
	}
	resp := guardrails.NewResponder(a.db, a.flags, guardrails.WithWebhooks(names, hooks.Kick))
	job := guardrails.NewJob(a.db, guardrails.WithShares(tel.Source(), a.flags), a.db, resp,
		guardrails.WithInterval(c.GuardrailInterval), guardrails.WithLogger(log))
	return job, guardrails.NewService(a.db, a.flags, job)
}

func (a *app) Close() { _ = a.db.Close() } // at exit: nothing to do with an error

func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve")
	conf := bindConfig(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := conf()
	if err != nil {
		return err
	}
	log := newLogger(c, e.stderr)
	log.Info("starting solstice", "version", version, "addr", c.Addr, "data", c.Data, "database", redactURL(databaseName(c)))

	// The publisher needs the flags service and the service tells the
	// publisher about every commit; pub is set before any commit can happen.
	var pub *snapshot.Publisher
	a, err := openApp(ctx, c, log, flags.OnRevision(func(ctx context.Context, env string, _ flags.Revision) {
		if pub == nil {
			return // before serving: the first Tick publishes
		}
		if _, err := pub.Publish(context.WithoutCancel(ctx), env); err != nil {
			log.Error("publish snapshot after a change; the sync loop will retry", "environment", env, "err", err)
		}
	}))
	if err != nil {
		return err
	}
	defer a.Close()
	keyring := snapshot.NewKeyring(c.Data, snapshot.WithKeyringLogger(log),
		snapshot.WithKeysFromEnv(func(name string) (string, bool) { v := e.getenv(name); return v, v != "" }))
	tracker := fleet.New(nil)
	pub = snapshot.NewPublisher(a.flags, a.db, keyring,
		snapshot.WithTTL(c.SnapshotTTL), snapshot.WithInterval(c.SyncInterval), snapshot.WithLogger(log),
		snapshot.WithHeads(a.flags),
		snapshot.OnPublish(func(b *snapshot.Built) {
			tracker.Published(b.Environment(), b.Version(), b.IssuedAt())
			log.Info("published snapshot", "environment", b.Environment(), "version", b.Version(), "revision", b.Revision(), "flags", b.FlagCount(), "bytes", len(b.Envelope()), "gzip_bytes", len(b.Gzip()))
		}))
	seeded := false
	if c.Seed {
		seeded, err = seedDemo(solstice.WithActor(ctx, solstice.System("seed")), a.flags)
		if err != nil {
			return fmt.Errorf("seed demo project: %w", err)
		}
		if seeded {
			log.Info("seeded the demo project into the empty database")
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Publish every environment before taking traffic, so the first poll
	// never waits for a build.
	if err := pub.Tick(ctx, time.Now()); err != nil {
		return fmt.Errorf("publish snapshots: %w", err)
	}
	tel := telemetry.New(a.db)
	hooks := webhook.NewDispatcher(a.db, c.Webhooks, webhook.WithLogger(log))
	job, gsvc := a.guardrails(tel, hooks, c, log)
	if seeded {
		if err := seedGuardrail(solstice.WithActor(ctx, solstice.System("seed")), gsvc); err != nil {
			return fmt.Errorf("seed demo guardrail: %w", err)
		}
		if err := seedTelemetry(ctx, tel, time.Now()); err != nil {
			return fmt.Errorf("seed demo telemetry: %w", err)
		}
	}
	ropts := []rollout.Option{rollout.WithSampleSource(rollout.CounterSample(tel.Source())), rollout.WithEvidence(gsvc), rollout.WithLogger(log)}
	rollouts := rollout.NewService(a.db, a.flags, a.db, ropts...)
	scheduler := rollout.NewScheduler(a.db, a.flags, a.db, ropts...)
	ui, err := uiDeps(ctx, e, a, false)
	if err != nil {
		return err
	}
	srv := web.New(web.Deps{Flags: a.flags, Auth: a.auth, Logger: log, Registry: reg, Ready: a.db.Ping, Publisher: pub, Fleet: tracker,
		Telemetry: tel, Guardrails: gsvc, Rollouts: rollouts, UI: ui})

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	hs.RegisterOnShutdown(srv.Drain) // parked long polls answer 304 instead of holding the shutdown
	log.Info("control plane listening", "url", "http://"+ln.Addr().String())
	fmt.Fprintf(e.stderr, "\nSolstice is running at http://%[1]s\n  log in:                 http://%[1]s/login\n  create an admin token:  ./bin/solstice tokens create --name me --role admin\n  stop:                   Ctrl-C\n\n", ln.Addr())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pub.Run(gctx) })
	g.Go(func() error { return job.Run(gctx) })
	g.Go(func() error { return hooks.Run(gctx) })
	g.Go(func() error { return scheduler.Run(gctx) })
	g.Go(func() error { return ui.Accounts.Run(gctx) })
	g.Go(func() error {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", c.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func databaseName(c config) string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return "sqlite:" + c.Data + "/solstice.db"
}

func cmdMigrate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "migrate")
	conf := bindConfig(fs, e, "data", "database-url", "log-level", "log-format")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := conf()
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, store.Config{URL: c.DatabaseURL, DataDir: c.Data})
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(e.stdout, "database is up to date")
	}
	for _, m := range applied {
		fmt.Fprintln(e.stdout, "applied", m)
	}
	return nil
}
