package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemo runs the golden path end to end, as `make demo` does: it fails
// when any of the demo's invariants fails.
func TestDemo(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		var out bytes.Buffer
		if err := runDemo(t.Context(), demoOptions{Seed: seed, Dir: t.TempDir(), Out: &out}); err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, out.String())
		}
		for _, want := range []string{
			"guardrail TRIPPED", "(the rollback) published", "caught up on", "Incident #1 evidence",
			"duplicate=true", "demo passed",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("seed %d: the transcript lacks %q:\n%s", seed, want, out.String())
			}
		}
		if strings.Contains(out.String(), "FAIL") {
			t.Errorf("seed %d: a check failed:\n%s", seed, out.String())
		}
	}
}

func TestDemoCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"demo", "--seed", "3"}, &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
	if code != 0 || !strings.Contains(out.String(), "demo passed") {
		t.Fatalf("solstice demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	code = run(t.Context(), []string{"demo", "--seed", "x"}, &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
	if code != 2 {
		t.Errorf("solstice demo --seed x exited %d, want 2 (usage)", code)
	}
}
