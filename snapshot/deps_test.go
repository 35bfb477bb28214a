package snapshot_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports enforces that package snapshot (and its test helpers) import
// only the standard library and Solstice's vocabulary: the game-server SDK
// imports snapshot, and must not pull in Echo, gorm or the store.
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"github.com/solsticehq/solstice":                       true,
		"github.com/solsticehq/solstice/flags":                 true,
		"github.com/solsticehq/solstice/snapshot":              true,
		"github.com/solsticehq/solstice/snapshot/snapshottest": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	helpers, _ := filepath.Glob(filepath.Join("snapshottest", "*.go"))
	files = append(files, helpers...)
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") && !strings.Contains(name, "snapshottest") {
			continue // tests may use go-cmp
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			std := !strings.Contains(strings.Split(path, "/")[0], ".")
			if !std && !allowed[path] {
				t.Errorf("%s imports %s: snapshot may import only the standard library, the root package and flags", name, path)
			}
		}
	}
}
