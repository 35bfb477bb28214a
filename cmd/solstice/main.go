// Command solstice is the single binary of Solstice: the control plane
// (serve), database migrations, credentials, and the flags-as-code and
// evaluation tools. Run `solstice help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/solsticehq/solstice"
)

// command is one subcommand.
type command struct {
	summary string
	usage   string // arguments after the command name
	run     func(ctx context.Context, e *env, args []string) error
}

// env is what a command runs with; tests substitute every field.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":   {"start the control plane", "[flags]", cmdServe},
		"migrate": {"apply pending database migrations and exit", "[flags]", cmdMigrate},
		"tokens":  {"create, list or revoke admin tokens and server keys", "create|list|revoke [flags]", cmdTokens},
		"eval":    {"evaluate a flag for a context, against the database or an exported file", "--env E --flag KEY [--context JSON] [--file FILE]", cmdEval},
		"export":  {"write an environment's flags and segments as YAML or JSON", "--env E [--format yaml|json] [-o FILE]", cmdExport},
		"apply":   {"apply a flags file to an environment as one revision", "--env E -f FILE [--dry-run] [-m MESSAGE]", cmdApply},
		"version": {"print the version", "", cmdVersion},
		"events":  eventsCommand,
		"users":   {"create, list or change the accounts of the web UI", "create|list|set-password|set-roles|disable|enable [flags]", cmdUsers},
		"demo":    {"run the guardrails' golden path in one process: a rollout, a fault, an automatic rollback, and checks of every invariant", "[--seed N] [--keep]", cmdDemo},

		"rollouts": rolloutsCommand,
		"keys":     {"list, rotate or retire an environment's snapshot signing keys, or export their public keys", "list|rotate|retire|export-public --env E [KEYID] [--json] [-o FILE]", cmdKeys},
		"sim":      {"simulate the guardrails' decisions (A/A and A/B traffic, a naive z-test beside them)", "guardrails [--seed N] [--quick] [--workers N]", cmdSim},
		"snapshot": {"verify a signed snapshot file, or fetch one from the control plane", "verify --public-key FILE --env E [--min-version N] [--now TIME] [FILE|-] | fetch --env E [--url URL] [-o FILE] [--etag ETAG [--wait 30s]] [--verify --public-key FILE]", cmdSnapshot},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// usageError is a mistake in the command line: exit code 2 and a hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// run executes one command line and returns the process exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fmt.Fprintf(e.stdout, "usage: solstice %s %s\n\n%s\n", args[1], c.usage, c.summary)
				return 0
			}
		}
		printUsage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "solstice: unknown command %q\n\n", args[0])
		printUsage(e.stderr)
		return 2
	}
	err := c.run(ctx, e, args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "solstice %s: %s\nusage: solstice %s %s\n", args[0], ue.msg, args[0], c.usage)
		return 2
	default:
		fmt.Fprintf(e.stderr, "solstice %s: %s\n", args[0], describe(err))
		for _, f := range solstice.ErrorFields(err) {
			fmt.Fprintf(e.stderr, "  %s: %s\n", f.Pointer, f.Message)
		}
		return 1
	}
}

// describe returns the message for a failed command. Internal errors keep
// their chain: the operator running the CLI is the one who needs it.
func describe(err error) string {
	var se *solstice.Error
	if errors.As(err, &se) && se.Kind == solstice.KindInvalid && len(se.Fields) > 0 {
		return se.Message
	}
	return err.Error()
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Solstice: the control plane for live-service game events.")
	fmt.Fprintln(w, "\nusage: solstice <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `solstice <command> -h` for a command's flags. Every flag can also be set with a SOLSTICE_* environment variable; see docs/configuration.md.")
}

func cmdVersion(_ context.Context, e *env, _ []string) error {
	fmt.Fprintln(e.stdout, "solstice", version)
	return nil
}

// newFlagSet returns a flag set that reports errors as usage errors and
// prints its help to e.stdout.
func newFlagSet(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("solstice "+name, flag.ContinueOnError)
	fs.SetOutput(e.stdout)
	return fs
}

// parse parses args, turning flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(out)
		fmt.Fprintf(out, "usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "flag provided but not defined: "))
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
