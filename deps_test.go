package solstice_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The dependency policy of the design notes, as a statement in a test (in
// the manner of go/build/deps_test.go): domain packages know no adapters,
// only store imports gorm, only web imports Echo, and a game server can
// import sdk without pulling in any of them.
var (
	adapters = []string{
		"github.com/labstack/echo", "gorm.io/", "database/sql",
		"github.com/solsticehq/solstice/store", "github.com/solsticehq/solstice/web",
		"github.com/solsticehq/solstice/cmd",
	}
	policy = map[string][]string{ // package pattern → forbidden import prefixes (transitive)
		".":                adapters,
		"./flags":          adapters,
		"./auth":           adapters,
		"./snapshot/...":   adapters,
		"./rollout/...":    adapters,
		"./guardrails/...": adapters,
		"./telemetry/...":  adapters,
		"./webhook/...":    adapters,
		"./accounts/...":   adapters,
		"./review/...":     adapters,
		"./sdk/...":        adapters,
		"./examples/...":   adapters, // examples use what a game server imports
		"./store/...":      {"github.com/labstack/echo", "github.com/solsticehq/solstice/web", "github.com/solsticehq/solstice/cmd"},
		"./web/...":        {"gorm.io/", "database/sql", "github.com/solsticehq/solstice/store", "github.com/solsticehq/solstice/cmd"},
	}
)

func TestDependencyPolicy(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	for pattern, forbidden := range policy {
		t.Run(pattern, func(t *testing.T) {
			// -deps lists the packages and everything they import; test files
			// are not included, so tests may use real adapters.
			out, err := exec.Command("go", "list", "-e", "-deps", "-f", `{{if not .Standard}}{{.ImportPath}}{{end}}{{if eq .ImportPath "database/sql"}}database/sql{{end}}`, pattern).CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "matched no packages") {
					return // the package does not exist yet
				}
				t.Fatalf("go list %s: %v\n%s", pattern, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				if strings.HasSuffix(dep, "storetest") || strings.HasSuffix(dep, "snapshottest") {
					continue
				}
				for _, f := range forbidden {
					if dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
						t.Errorf("%s depends on %s, which the design forbids", pattern, dep)
					}
				}
			}
		})
	}
}
