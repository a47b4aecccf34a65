package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fl-secure/fl-secure"

// layers is the architecture: a package may import only packages of a
// lower layer. Building blocks at the bottom, the CLI at the top:
//
//	cmd → bench → protocol/local → protocol → secagg / he / fl → dp → building blocks
var layers = map[string]int{
	"internal/field":    0, // Shamir sharing over the edwards25519 scalar field
	"internal/prg":      0, // AES-CTR mask expansion
	"internal/edsig":    0, // Ed25519 verification, batched
	"internal/wire":     0, // strict binary encoding
	"internal/atrest":   0, // private files encrypted at rest
	"protocol/wire":     0, // the gRPC schema (generated)
	"dp":                1,
	"dp/dptest":         2,
	"dp/ledgertest":     2,
	"fl":                2,
	"he":                2,
	"secagg":            2,
	"dp/report":         2,
	"secagg/secaggtest": 3,
	"protocol":          4,
	"protocol/local":    5,
	"bench":             6,
	"cmd/fl-secure":     7,
}

// TestLayout checks that every import inside the module points down the
// layers, that every package has a layer, and that the README names every
// package, so that the tree, the table and the architecture agree.
func TestLayout(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	imports := map[string][]string{} // package → module packages it imports
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); p != root && err == nil {
				return filepath.SkipDir // a module of its own (protocol/wire/internal/gen)
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		pkg := filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		if _, ok := imports[pkg]; !ok {
			imports[pkg] = nil
		}
		for _, im := range f.Imports {
			ip, _ := strconv.Unquote(im.Path.Value)
			if dep, ok := strings.CutPrefix(ip, module+"/"); ok && !slices.Contains(imports[pkg], dep) {
				imports[pkg] = append(imports[pkg], dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for pkg, deps := range imports {
		l, ok := layers[pkg]
		if !ok {
			t.Errorf("package %s has no layer: add it to layers in layout_test.go and to the README's table", pkg)
			continue
		}
		for _, dep := range deps {
			if dl, ok := layers[dep]; ok && dl >= l {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", pkg, l, dep, dl)
			}
		}
		if !strings.Contains(string(readme), "`"+pkg+"`") && !strings.Contains(string(readme), "`"+path.Base(pkg)+"`") {
			t.Errorf("the README does not name package %s", pkg)
		}
	}
	for pkg := range layers {
		if _, ok := imports[pkg]; !ok {
			t.Errorf("layers names %s, which is not a package of the tree", pkg)
		}
	}
}
