package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/auth"
	"github.com/solsticehq/solstice/flags"
)

// cliActor is who a CLI command acts as in revisions and the audit log.
func cliActor(e *env) solstice.Actor {
	name := e.getenv("USER")
	if name == "" {
		name = "unknown"
	}
	return solstice.Actor{Name: "cli:" + name, Kind: "cli"}
}

// withApp parses the database settings, opens the app and runs f.
func withApp(ctx context.Context, e *env, conf func() (config, error), f func(ctx context.Context, a *app) error) error {
	c, err := conf()
	if err != nil {
		return err
	}
	if c.LogLevel == "info" {
		c.LogLevel = "warn" // keep CLI output to what the command prints
	}
	a, err := openApp(ctx, c, newLogger(c, e.stderr))
	if err != nil {
		return err
	}
	defer a.Close()
	return f(solstice.WithActor(ctx, cliActor(e)), a)
}

var dbSettings = []string{"data", "database-url", "log-level", "log-format"}

func cmdTokens(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: create, list or revoke")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(e, "tokens "+sub)
	conf := bindConfig(fs, e, dbSettings...)
	switch sub {
	case "create":
		name := fs.String("name", "", "what the token is for (required)")
		role := fs.String("role", "", "admin token role: viewer, editor or admin (default viewer)")
		server := fs.Bool("server", false, "create a read-only game-server key for one environment instead of an admin token")
		envName := fs.String("env", "", "the environment of a server key")
		asJSON := fs.Bool("json", false, "print the token as JSON")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *name == "" {
			return usagef("--name is required")
		}
		in := auth.NewToken{Name: *name, Kind: auth.KindAdmin, Role: auth.Role(*role)}
		if *server {
			if *envName == "" {
				return usagef("--server needs --env")
			}
			in = auth.NewToken{Name: *name, Kind: auth.KindServer, Environment: *envName}
		} else if *envName != "" {
			return usagef("--env is only for server keys (add --server)")
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			if in.Kind == auth.KindServer {
				if _, err := a.flags.Store().GetEnvironment(ctx, in.Environment); err != nil {
					return err
				}
			}
			created, err := a.auth.Create(ctx, in)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(e.stdout, created)
			}
			t := created.Token
			scope := "role " + string(t.Role)
			if t.Kind == auth.KindServer {
				scope = "server key for " + t.Environment
			}
			fmt.Fprintf(e.stdout, "Created %s (%s, %s).\nSecret, shown only this once:\n\n  %s\n\n", t.ID, t.Name, scope, created.Secret)
			return nil
		})
	case "list":
		asJSON := fs.Bool("json", false, "print JSON")
		if err := parse(fs, args); err != nil {
			return err
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			ts, err := a.auth.List(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(e.stdout, map[string]any{"tokens": ts})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tKIND\tROLE/ENV\tCREATED\tLAST USED\tSTATUS")
			for _, t := range ts {
				scope := string(t.Role)
				if t.Kind == auth.KindServer {
					scope = t.Environment
				}
				status := "active"
				if t.RevokedAt != nil {
					status = "revoked " + t.RevokedAt.Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Kind, scope, t.CreatedAt.Format(time.DateTime), ago(t.LastUsedAt), status)
			}
			return tw.Flush()
		})
	case "revoke":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return usagef("usage: solstice tokens revoke ID")
		}
		id := args[0]
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			if err := a.auth.Revoke(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Revoked %s.\n", id)
			return nil
		})
	default:
		return usagef("unknown subcommand %q: want create, list or revoke", sub)
	}
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.DateTime)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// readDocument reads a flags file (YAML or JSON, strictly: unknown fields
// are errors). path "-" is standard input.
func readDocument(e *env, path string) (flags.Document, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(io.LimitReader(e.stdin, 64<<20))
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return flags.Document{}, fmt.Errorf("read %s: %w", path, err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return flags.Document{}, solstice.Errorf(solstice.KindInvalid, "%s is neither valid YAML nor JSON: %v", path, err)
	}
	var doc flags.Document
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(&doc); err != nil {
		return flags.Document{}, solstice.Errorf(solstice.KindInvalid, "%s: %v", path, err)
	}
	return doc, nil
}

func cmdExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "export")
	conf := bindConfig(fs, e, dbSettings...)
	envName := fs.String("env", "", "environment to export (required)")
	format := fs.String("format", "", "yaml or json (default: from the -o file's extension, else yaml)")
	out := fs.String("o", "-", "output file, - for standard output")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *envName == "" {
		return usagef("--env is required")
	}
	if *format == "" {
		*format = "yaml"
		if filepath.Ext(*out) == ".json" {
			*format = "json"
		}
	}
	if *format != "yaml" && *format != "json" {
		return usagef("--format must be yaml or json")
	}
	return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
		doc, err := a.flags.Export(ctx, *envName)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		if *format == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		} else {
			b = append(b, '\n')
		}
		if *out == "-" {
			_, err = e.stdout.Write(b)
			return err
		}
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		fmt.Fprintf(e.stderr, "Exported %d flag(s) and %d segment(s) of %s at revision %d to %s.\n", len(doc.Flags), len(doc.Segments), doc.Environment, doc.Revision, *out)
		return nil
	})
}

func cmdApply(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "apply")
	conf := bindConfig(fs, e, dbSettings...)
	envName := fs.String("env", "", "environment to apply to (default: the file's environment)")
	file := fs.String("f", "", "flags file, YAML or JSON, - for standard input (required)")
	dry := fs.Bool("dry-run", false, "show what would change and change nothing")
	msg := fs.String("m", "", "revision message")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usagef("-f FILE is required")
	}
	doc, err := readDocument(e, *file)
	if err != nil {
		return err
	}
	if *envName == "" {
		*envName = doc.Environment
	}
	if *envName == "" {
		return usagef("--env is required (the file names no environment)")
	}
	return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
		plan, err := a.flags.Apply(ctx, *envName, doc, flags.ApplyOptions{DryRun: *dry, Message: *msg})
		if err != nil {
			return err
		}
		printPlan(e.stdout, plan)
		return nil
	})
}

// printPlan writes a plan as a readable diff.
func printPlan(w io.Writer, p flags.Plan) {
	if p.Empty() {
		fmt.Fprintf(w, "%s already matches the file: nothing to change.\n", p.Environment)
		return
	}
	fmt.Fprintf(w, "Changes to %s:\n", p.Environment)
	sym := map[string]string{"create": "+", "update": "~"}
	for _, c := range p.Definitions {
		fmt.Fprintf(w, "  %s flag definition %s\n", sym[c.Op], c.Key)
		printFields(w, c.Fields)
	}
	for _, c := range p.Objects {
		fmt.Fprintf(w, "  %s %s %s\n", sym[c.Op], c.Kind, c.Key)
		if c.Op == "update" {
			printFields(w, c.Fields)
		}
	}
	switch {
	case p.DryRun:
		fmt.Fprintln(w, "Dry run: nothing was changed.")
	case p.Revision != nil:
		fmt.Fprintf(w, "Applied as revision %d of %s.\n", p.Revision.Number, p.Environment)
	default:
		fmt.Fprintln(w, "Applied.")
	}
}

func printFields(w io.Writer, fields []flags.FieldChange) {
	for _, f := range fields {
		before, after := "(none)", "(none)"
		if f.Before != nil {
			before = string(f.Before)
		}
		if f.After != nil {
			after = string(f.After)
		}
		fmt.Fprintf(w, "      %s: %s → %s\n", f.Pointer, before, after)
	}
}

func cmdEval(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "eval")
	conf := bindConfig(fs, e, dbSettings...)
	envName := fs.String("env", "", "environment (required unless --file names one)")
	key := fs.String("flag", "", "flag key (required)")
	ctxJSON := fs.String("context", "{}", `evaluation context as JSON, e.g. '{"targetingKey":"player-7","country":"FR"}'`)
	file := fs.String("file", "", "evaluate against an exported flags file instead of the database")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *key == "" {
		return usagef("--flag is required")
	}
	var evalCtx flags.Context
	d := json.NewDecoder(strings.NewReader(*ctxJSON))
	d.UseNumber()
	if err := d.Decode(&evalCtx); err != nil {
		return usagef("--context is not a JSON object: %v", err)
	}
	show := func(r flags.Result, rev int64) error {
		if *asJSON {
			return writeJSON(e.stdout, map[string]any{
				"flag": r.Key, "value": r.Value, "variant": r.Variant, "reason": r.Reason,
				"error_code": r.ErrorCode, "revision": rev, "explanation": flags.Explain(r),
			})
		}
		v, _ := json.Marshal(r.Value)
		fmt.Fprintf(e.stdout, "value:    %s\nvariant:  %s\nreason:   %s\n", v, r.Variant, r.Reason)
		if r.ErrorCode != "" {
			fmt.Fprintf(e.stdout, "error:    %s %s\n", r.ErrorCode, r.ErrorMessage)
		}
		fmt.Fprintf(e.stdout, "why:      %s\nrevision: %d\n", flags.Explain(r), rev)
		return nil
	}
	if *file != "" {
		doc, err := readDocument(e, *file)
		if err != nil {
			return err
		}
		if *envName != "" && doc.Environment != "" && *envName != doc.Environment {
			return usagef("--env %s but %s holds %s", *envName, *file, doc.Environment)
		}
		c, err := flags.Compile(doc.Set())
		if err != nil {
			return err
		}
		return show(flags.Evaluate(c, *key, evalCtx), doc.Revision)
	}
	if *envName == "" {
		return usagef("--env is required")
	}
	return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
		c, err := a.flags.Compiled(ctx, *envName)
		if err != nil {
			return err
		}
		return show(flags.Evaluate(c, *key, evalCtx), c.Revision())
	})
}
