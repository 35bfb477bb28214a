package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/solsticehq/solstice/rollout"
)

const rolloutsUsage = "decision --env E ID [--json]"

// rolloutsCommand is the entry of `solstice rollouts` in the command table.
var rolloutsCommand = command{"print the decision memo of an experiment that has ended", rolloutsUsage, cmdRollouts}

// cmdRollouts reads rollout plans from the database. `decision` prints the
// Markdown decision memo of an experiment plan that has ended (or, with
// --json, the decision itself, as the API serves it).
func cmdRollouts(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: decision")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(e, "rollouts "+sub)
	conf := bindConfig(fs, e, dbSettings...)
	envName := fs.String("env", "", "environment (required)")
	asJSON := fs.Bool("json", false, "print the decision as JSON instead of the Markdown memo")
	switch sub {
	case "decision":
		pos, err := parseArgs(fs, args, 1)
		if err != nil {
			return err
		}
		switch {
		case *envName == "":
			return usagef("--env is required")
		case len(pos) == 0:
			return usagef("the plan's ID is required: solstice rollouts decision --env %s ID", *envName)
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			d, err := a.rollouts().Decision(ctx, *envName, pos[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(e.stdout, d)
			}
			_, err = io.WriteString(e.stdout, rollout.Memo(d))
			return err
		})
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(e.stdout, "usage: solstice rollouts %s\n\nSubcommands: decision. Run `solstice rollouts decision -h` for its flags.\n", rolloutsUsage)
		return flag.ErrHelp
	default:
		return usagef("unknown subcommand %q: want decision", sub)
	}
}
