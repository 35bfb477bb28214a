package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
	"github.com/solsticehq/solstice/store"
)

// openData opens c's database as user actor, migrated and with the default
// environments, for a test to store what it needs; it is closed when the
// test ends.
func openData(t *testing.T, c *cli, actor string) (context.Context, *store.DB, *flags.Service) {
	t.Helper()
	ctx := solstice.WithActor(context.Background(), solstice.Actor{Name: actor, Kind: "user"})
	db, err := store.Open(ctx, store.Config{DataDir: c.data})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	fs := flags.NewService(db)
	if err := fs.EnsureDefaultEnvironments(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx, db, fs
}

// seedEvent stores, in c's database, a banner flag and an event that turns
// it on from start (UTC, whole minutes) for two days.
func seedEvent(t *testing.T, c *cli, start time.Time) {
	t.Helper()
	ctx, db, fs := openData(t, c, "tester")
	if _, err := fs.CreateFlag(ctx, flags.NewFlag{Key: "festival-banner", Type: flags.TypeBoolean}); err != nil {
		t.Fatal(err)
	}
	// A new boolean flag is served "on" when enabled: start from disabled.
	fc, err := fs.GetConfig(ctx, "production", "festival-banner")
	if err != nil {
		t.Fatal(err)
	}
	fc.Config.Enabled = false
	if _, err := fs.PutConfig(ctx, "production", "festival-banner", fc.Config, fc.Revision, "off until the festival"); err != nil {
		t.Fatal(err)
	}
	local := func(t time.Time) rollout.LocalTime {
		return rollout.Local(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute())
	}
	on := true
	ev := rollout.Event{Key: "winter-festival", Environment: "production", Name: "Winter Festival", TimeZone: "UTC",
		Start: local(start), End: local(start.Add(48 * time.Hour)),
		Phases: []rollout.Phase{{Name: "live", Start: local(start), Changes: []rollout.Change{{Flag: "festival-banner", Enabled: &on}}}}}
	if _, err := rollout.NewService(db, fs, db).PutEvent(ctx, ev, 0); err != nil {
		t.Fatal(err)
	}
}

func TestEventsCommand(t *testing.T) {
	c := newCLI(t)
	start := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Minute)
	seedEvent(t, c, start)

	t.Run("list", func(t *testing.T) {
		out := c.ok("events", "list", "--env", "production")
		for _, want := range []string{"KEY", "winter-festival", "Winter Festival", "scheduled", start.Format(time.DateTime), "festival-banner"} {
			if !strings.Contains(out, want) {
				t.Errorf("list does not say %q:\n%s", want, out)
			}
		}
		var got struct {
			Events []struct {
				Key   string
				Start time.Time
				State struct{ Status string }
			}
		}
		if err := json.Unmarshal([]byte(c.ok("events", "list", "--env", "production", "--json")), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Events) != 1 || got.Events[0].Key != "winter-festival" || !got.Events[0].Start.Equal(start) || got.Events[0].State.Status != "scheduled" {
			t.Errorf("list --json: %+v, want winter-festival, scheduled at %s", got.Events, start)
		}
		if out := c.ok("events", "list", "--env", "staging"); !strings.Contains(out, "no events") {
			t.Errorf("list of an environment without events: %q", out)
		}
	})

	t.Run("show", func(t *testing.T) {
		out := c.ok("events", "show", "--env", "production", "--id", "winter-festival")
		for _, want := range []string{"Winter Festival (winter-festival)", "state:  scheduled", "live", "festival-banner: enabled=true"} {
			if !strings.Contains(out, want) {
				t.Errorf("show does not say %q:\n%s", want, out)
			}
		}
		var d rollout.EventDetail
		if err := json.Unmarshal([]byte(c.ok("events", "show", "--env", "production", "--id", "winter-festival", "--json")), &d); err != nil {
			t.Fatal(err)
		}
		if d.Event.Name != "Winter Festival" || d.State.Status != rollout.EventScheduled || d.Event.UID == "" {
			t.Errorf("show --json: %+v", d)
		}
	})

	t.Run("preview", func(t *testing.T) {
		for _, tc := range []struct {
			at      time.Time
			variant string
		}{
			{start.Add(-time.Hour), "off"},
			{start.Add(time.Hour), "on"},
			{start.Add(49 * time.Hour), "off"}, // the event has ended: set back
		} {
			out := c.ok("events", "preview", "--env", "production", "--flag", "festival-banner", "--at", tc.at.Format(time.RFC3339), "--context", `{"targetingKey":"player-7"}`, "--json")
			var got struct {
				Variant string
				Value   any
				At      time.Time
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got.Variant != tc.variant || !got.At.Equal(tc.at) {
				t.Errorf("preview at %s: %+v, want %s", tc.at, got, tc.variant)
			}
		}
		out := c.ok("events", "preview", "--env", "production", "--flag", "festival-banner", "--at", start.Add(time.Hour).Format(time.RFC3339))
		if !strings.Contains(out, "variant:  on") || !strings.Contains(out, "why:") {
			t.Errorf("preview:\n%s", out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			msg  string
		}{
			{"no subcommand", []string{"events"}, 2, "missing subcommand"},
			{"unknown subcommand", []string{"events", "delete"}, 2, `unknown subcommand "delete"`},
			{"no environment", []string{"events", "list"}, 2, "--env is required"},
			{"no id", []string{"events", "show", "--env", "production"}, 2, "--id is required"},
			{"a flag of another subcommand", []string{"events", "list", "--env", "production", "--at", "x"}, 2, "-at"},
			{"no time", []string{"events", "preview", "--env", "production", "--flag", "festival-banner"}, 2, "--at is required"},
			{"bad time", []string{"events", "preview", "--env", "production", "--flag", "festival-banner", "--at", "tomorrow"}, 2, "not an RFC 3339 time"},
			{"bad context", []string{"events", "preview", "--env", "production", "--flag", "x", "--at", "2030-01-01T00:00:00Z", "--context", "[1]"}, 2, "--context is not a JSON object"},
			{"unknown environment", []string{"events", "list", "--env", "nope"}, 1, "nope"},
			{"unknown event", []string{"events", "show", "--env", "production", "--id", "nope"}, 1, "nope"},
			{"the past", []string{"events", "preview", "--env", "production", "--flag", "festival-banner", "--at", "2020-01-01T00:00:00Z"}, 1, "/at: 2020-01-01T00:00:00Z is before now"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, out, errs := c.run("", tc.args...)
				if code != tc.code || !strings.Contains(errs, tc.msg) {
					t.Errorf("exit %d, stderr %q (stdout %q); want exit %d saying %q", code, errs, out, tc.code, tc.msg)
				}
			})
		}
	})
}
