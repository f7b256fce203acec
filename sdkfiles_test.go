package verge

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSDKSourceEqualsTree: the SDK embedded in the binary is byte for byte the SDK in the
// tree, with no file missing or extra, so `verge init` never writes a stale or partial copy.
func TestSDKSourceEqualsTree(t *testing.T) {
	var embedded []string
	err := fs.WalkDir(SDKSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		embedded = append(embedded, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var tree []string
	for _, dir := range SDKPackages {
		ents, err := os.ReadDir(filepath.FromSlash(dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".go") {
				tree = append(tree, path.Join(dir, e.Name()))
			}
		}
	}
	slices.Sort(embedded)
	slices.Sort(tree)
	if !slices.Equal(embedded, tree) {
		t.Fatalf("embedded SDK files %v, want the tree's %v (update the go:embed patterns in sdkfiles.go)", embedded, tree)
	}
	for _, p := range tree {
		want, err := os.ReadFile(filepath.FromSlash(p))
		if err != nil {
			t.Fatal(err)
		}
		got, err := SDKSource.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("embedded %s differs from the tree", p)
		}
	}
	if SDKPackages[0] != "sdk/go" {
		t.Errorf("SDKPackages[0] = %q, want the SDK package sdk/go", SDKPackages[0])
	}
}

// TestSDKPackagesClosed: every package the SDK imports, for the wasip1 target and for the
// host, is either in the standard library or embedded (SDKPackages); a scaffolded project
// has no other source for it and no network to fetch one.
func TestSDKPackagesClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, env := range [][]string{{"GOOS=wasip1", "GOARCH=wasm"}, nil} {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./sdk/go")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list %v: %v\n%s", env, err, out)
		}
		var deps []string
		for _, line := range strings.Fields(string(out)) {
			rel, ok := strings.CutPrefix(line, SDKModule+"/")
			if !ok {
				t.Errorf("the SDK imports %s from outside module %s (%v): a scaffolded project could not build offline", line, SDKModule, env)
				continue
			}
			deps = append(deps, rel)
		}
		slices.Sort(deps)
		want := slices.Sorted(slices.Values(SDKPackages))
		if !slices.Equal(deps, want) {
			t.Errorf("the SDK's packages in this module (%v) are %v, want SDKPackages %v (update sdkfiles.go)", env, deps, want)
		}
	}
}
