package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/rollout"
)

// seedExperiments stores, in c's database, a flag with a treatment, a
// control and a baseline, an experiment that ran and was aborted (so it has
// its decision), one still a draft, and a plain plan.
func seedExperiments(t *testing.T, c *cli) {
	t.Helper()
	ctx, db, fs := openData(t, c, "alice")
	_, err := fs.CreateFlag(ctx, flags.NewFlag{Key: "winter-festival", Type: flags.TypeString, DefaultVariant: "baseline", Variants: []flags.Variant{
		{Key: "baseline", Value: json.RawMessage(`"classic"`)}, {Key: "control", Value: json.RawMessage(`"classic"`)}, {Key: "festival", Value: json.RawMessage(`"snow"`)}}})
	if err != nil {
		t.Fatal(err)
	}
	svc := rollout.NewService(db, fs, db)
	plan := func(id string, experiment bool) rollout.Plan {
		return rollout.Plan{ID: id, Environment: "production", Flag: "winter-festival", Treatment: "festival", Control: "control", Baseline: "baseline",
			Experiment: experiment, Steps: []rollout.Step{{Weight: 1000, MinDuration: rollout.Duration(time.Hour)}}}
	}
	for _, p := range []rollout.Plan{plan("winter-test", true), plan("later", true), plan("plain", false)} {
		if _, err := svc.PutPlan(ctx, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Start(ctx, "production", "winter-test", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Abort(ctx, "production", "winter-test", "wrong art", flags.AnyVersion); err != nil {
		t.Fatal(err)
	}
}

func TestRolloutsCommand(t *testing.T) {
	c := newCLI(t)
	seedExperiments(t, c)

	t.Run("memo", func(t *testing.T) {
		// The ID may come before or after the flags.
		for _, args := range [][]string{{"rollouts", "decision", "--env", "production", "winter-test"}, {"rollouts", "decision", "winter-test", "--env", "production"}} {
			out := c.ok(args...)
			for _, want := range []string{"# Experiment decision: winter-festival, plan winter-test\n", "**Roll back: keep `baseline`.**", "aborted by alice: wrong art", "## Next steps"} {
				if !strings.Contains(out, want) {
					t.Errorf("%v does not say %q:\n%s", args, want, out)
				}
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		var d rollout.ExperimentDecision
		if err := json.Unmarshal([]byte(c.ok("rollouts", "decision", "--env", "production", "--json", "winter-test")), &d); err != nil {
			t.Fatal(err)
		}
		if d.Outcome != rollout.OutcomeRollBack || d.Plan != "winter-test" || d.Status != rollout.StatusRolledBack || len(d.Timeline) != 2 {
			t.Errorf("decision --json: %+v, want roll_back of winter-test with its two transitions", d)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			msg  string
		}{
			{"no subcommand", []string{"rollouts"}, 2, "missing subcommand"},
			{"unknown subcommand", []string{"rollouts", "list"}, 2, `unknown subcommand "list"`},
			{"no environment", []string{"rollouts", "decision", "winter-test"}, 2, "--env is required"},
			{"no id", []string{"rollouts", "decision", "--env", "production"}, 2, "the plan's ID is required"},
			{"two ids", []string{"rollouts", "decision", "--env", "production", "a", "b"}, 2, `unexpected argument "b"`},
			{"unknown plan", []string{"rollouts", "decision", "--env", "production", "nope"}, 1, `"nope" not found`},
			{"not ended", []string{"rollouts", "decision", "--env", "production", "later"}, 1, "experiment later is draft: its decision is written when it ends"},
			{"not an experiment", []string{"rollouts", "decision", "--env", "production", "plain"}, 1, "rollout plain is not an experiment"},
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
