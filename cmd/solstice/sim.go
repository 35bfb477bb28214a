package main

import (
	"context"
	"fmt"

	"github.com/solsticehq/solstice/guardrails/sim"
)

// cmdSim runs simulations of the production decision code. Today:
// `sim guardrails`, the guardrail simulation benchmark.
func cmdSim(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "guardrails" {
		return usagef("usage: solstice sim guardrails [--seed N] [--quick] [--workers N]")
	}
	fs := newFlagSet(e, "sim guardrails")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same report")
	quick := fs.Bool("quick", false, "fewer, shorter runs (as in CI); fails if an A/A false rollback rate exceeds 10% or the naive rule shows less than 30%")
	workers := fs.Int("workers", 0, "runs simulated at once (default: the number of CPUs); does not change the report")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *workers < 0 {
		return usagef("--workers must not be negative")
	}
	rep, err := sim.Run(ctx, sim.Options{Seed: *seed, Quick: *quick, Progress: e.stderr, Workers: *workers})
	if err != nil {
		return err
	}
	if err := rep.WriteText(e.stdout); err != nil {
		return err
	}
	if err := rep.Check(); err != nil {
		return fmt.Errorf("the simulation's checks failed: %w", err)
	}
	return nil
}
