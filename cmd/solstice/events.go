package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
)

const eventsUsage = "list|show|preview --env E [--id ID] [--at TIME] [--flag KEY] [--context JSON] [--json]"

// eventsCommand is the entry of `solstice events` in the command table.
var eventsCommand = command{"list, show or preview seasonal events and their scheduled changes", eventsUsage, cmdEvents}

// cmdEvents reads seasonal events from the database, as `solstice eval`
// reads flags: list them with their state, show one with its phases and
// the records of its changes, or preview what a context gets from a flag
// at a future time, given every schedule and rollout step.
func cmdEvents(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: list, show or preview")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(e, "events "+sub)
	conf := bindConfig(fs, e, dbSettings...)
	envName := fs.String("env", "", "environment (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	switch sub {
	case "list":
		if err := parse(fs, args); err != nil {
			return err
		}
		if *envName == "" {
			return usagef("--env is required")
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			tl, err := a.rollouts().Timeline(ctx, *envName)
			if err != nil {
				return err
			}
			return printEvents(e.stdout, tl, *asJSON)
		})
	case "show":
		id := fs.String("id", "", "the event's key (required)")
		if err := parse(fs, args); err != nil {
			return err
		}
		switch {
		case *envName == "":
			return usagef("--env is required")
		case *id == "":
			return usagef("--id is required (see solstice events list --env %s)", *envName)
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			d, err := a.rollouts().Detail(ctx, *envName, *id)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(e.stdout, d)
			}
			return printEvent(e.stdout, d)
		})
	case "preview":
		at := fs.String("at", "", "the time to preview, RFC 3339 (required), e.g. 2026-12-20T12:00:00+01:00")
		key := fs.String("flag", "", "flag key (required)")
		ctxJSON := fs.String("context", "{}", `evaluation context as JSON, e.g. '{"targetingKey":"player-7"}'`)
		if err := parse(fs, args); err != nil {
			return err
		}
		switch {
		case *envName == "":
			return usagef("--env is required")
		case *key == "":
			return usagef("--flag is required")
		case *at == "":
			return usagef("--at is required: the future time to preview, in RFC 3339")
		}
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("--at %q is not an RFC 3339 time such as 2026-12-20T12:00:00+01:00", *at)
		}
		var evalCtx flags.Context
		d := json.NewDecoder(strings.NewReader(*ctxJSON))
		d.UseNumber()
		if err := d.Decode(&evalCtx); err != nil {
			return usagef("--context is not a JSON object: %v", err)
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			set, err := a.rollouts().PreviewSet(ctx, *envName, t)
			if err != nil {
				return err
			}
			c, err := flags.Compile(set)
			if err != nil {
				return err
			}
			r := flags.Evaluate(c, *key, evalCtx)
			if *asJSON {
				return writeJSON(e.stdout, map[string]any{
					"at": t.UTC(), "flag": r.Key, "value": r.Value, "variant": r.Variant, "reason": r.Reason,
					"error_code": r.ErrorCode, "revision": set.Revision, "explanation": flags.Explain(r),
				})
			}
			v, _ := json.Marshal(r.Value)
			fmt.Fprintf(e.stdout, "at:       %s\nvalue:    %s\nvariant:  %s\nreason:   %s\n", t.UTC().Format(time.RFC3339), v, r.Variant, r.Reason)
			if r.ErrorCode != "" {
				fmt.Fprintf(e.stdout, "error:    %s %s\n", r.ErrorCode, r.ErrorMessage)
			}
			fmt.Fprintf(e.stdout, "why:      %s\nfrom:     revision %d, with every schedule and rollout step due by then (assuming every gate passes in time)\n", flags.Explain(r), set.Revision)
			return nil
		})
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(e.stdout, "usage: solstice events %s\n\nSubcommands: list, show, preview. Run `solstice events preview -h` for a subcommand's flags.\n", eventsUsage)
		return flag.ErrHelp
	default:
		return usagef("unknown subcommand %q: want list, show or preview", sub)
	}
}

// rollouts returns the rollout service over the app's database. The CLI
// only reads through it: no scheduler runs here.
func (a *app) rollouts() *rollout.Service {
	return rollout.NewService(a.db, a.flags, a.db, rollout.WithLogger(a.log))
}

// eventSummary is one line of `solstice events list`.
type eventSummary struct {
	Key      string             `json:"key"`
	Name     string             `json:"name"`
	TimeZone string             `json:"time_zone"`
	Start    time.Time          `json:"start"`
	End      time.Time          `json:"end"`
	State    rollout.EventState `json:"state"`
	Flags    []string           `json:"flags"`
}

func printEvents(w io.Writer, tl rollout.Timeline, asJSON bool) error {
	out := make([]eventSummary, 0, len(tl.Events))
	for _, ev := range tl.Events {
		var recs []rollout.Record
		for _, r := range tl.Records {
			if r.EventUID == ev.UID {
				recs = append(recs, r)
			}
		}
		times, err := ev.Times()
		if err != nil {
			return fmt.Errorf("event %s: %w", ev.Key, err)
		}
		out = append(out, eventSummary{Key: ev.Key, Name: ev.Name, TimeZone: ev.TimeZone, Start: times.Start, End: times.End,
			State: rollout.StateOf(ev, recs), Flags: ev.Flags()})
	}
	if asJSON {
		return writeJSON(w, map[string]any{"events": out})
	}
	if len(out) == 0 {
		fmt.Fprintln(w, "no events")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tNAME\tSTATE\tSTART (UTC)\tEND (UTC)\tFLAGS")
	for _, s := range out {
		state := string(s.State.Status)
		if s.State.Phase != "" {
			state += " (" + s.State.Phase + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Key, s.Name, state, s.Start.UTC().Format(time.DateTime), s.End.UTC().Format(time.DateTime), strings.Join(s.Flags, ", "))
	}
	return tw.Flush()
}

func printEvent(w io.Writer, d rollout.EventDetail) error {
	ev := d.Event
	times, err := ev.Times()
	if err != nil {
		return fmt.Errorf("event %s: %w", ev.Key, err)
	}
	state := string(d.State.Status)
	if d.State.Phase != "" {
		state += ", phase " + d.State.Phase
	}
	fmt.Fprintf(w, "%s (%s), version %d\n", ev.Name, ev.Key, ev.Version)
	fmt.Fprintf(w, "state:  %s\n", state)
	fmt.Fprintf(w, "window: %s to %s %s (%s to %s UTC)\n", ev.Start, ev.End, ev.TimeZone, times.Start.UTC().Format(time.DateTime), times.End.UTC().Format(time.DateTime))
	if ev.CancelledAt != nil {
		fmt.Fprintf(w, "cancelled at %s by %s\n", ev.CancelledAt.UTC().Format(time.DateTime), ev.CancelledBy)
	}
	fmt.Fprintln(w, "phases:")
	for i, ph := range ev.Phases {
		fmt.Fprintf(w, "  %-12s %s (%s UTC)\n", ph.Name, ph.Start, times.Phases[i].UTC().Format(time.DateTime))
		for _, c := range ph.Changes {
			fmt.Fprintf(w, "    %s\n", describeChange(c))
		}
	}
	if len(ev.EndState) > 0 {
		fmt.Fprintln(w, "at the end, after setting back what it changed:")
		for _, c := range ev.EndState {
			fmt.Fprintf(w, "    %s\n", describeChange(c))
		}
	}
	if len(d.Records) > 0 {
		fmt.Fprintln(w, "applied:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range d.Records {
			what := string(r.Kind)
			if r.Phase != "" {
				what += " " + r.Phase
			}
			late := ""
			if r.Late > 0 {
				late = r.Late.String() + " late"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.Due.UTC().Format(time.DateTime), what, r.Status, late, r.Outcome)
		}
		return tw.Flush()
	}
	return nil
}

// describeChange says in a few words what a change sets.
func describeChange(c rollout.Change) string {
	var parts []string
	if c.Enabled != nil {
		parts = append(parts, fmt.Sprintf("enabled=%t", *c.Enabled))
	}
	if c.Serve != "" {
		parts = append(parts, "serve "+c.Serve)
	}
	if len(c.Values) > 0 {
		parts = append(parts, fmt.Sprintf("new values for %d variants", len(c.Values)))
	}
	if c.Config != nil {
		parts = append(parts, "the whole configuration")
	}
	if c.Rollout != "" {
		parts = append(parts, "start rollout "+c.Rollout)
	}
	return c.Flag + ": " + strings.Join(parts, ", ")
}
