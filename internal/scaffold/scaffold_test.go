package scaffold

import (
	"bytes"
	"errors"
	"go/format"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	verge "github.com/verge-edge/verge"
	"github.com/verge-edge/verge/config"
)

// offlineEnv is an environment in which the go command can reach no module proxy, download
// no toolchain and see no workspace: a project that builds in it needs nothing but its files.
func offlineEnv(extra ...string) []string {
	env := append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
	return append(env, extra...)
}

func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInitProjectsResolveTheSDKOffline: each template's project, and the SDK copy at its
// declared Go version, vet clean for wasip1 and the host with the go command cut off from
// any module proxy, and the project is tidy (go mod tidy changes nothing),
// so a machine with only Go and the verge binary can build it. (The wasm builds and the
// requests run in cmd/verge's TestInit* end-to-end tests.)
func TestInitProjectsResolveTheSDKOffline(t *testing.T) {
	for _, tmpl := range Templates {
		t.Run(tmpl, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "My Worker")
			wrote, err := Init(Options{Dir: dir, Template: tmpl, Module: "example.com/my-worker", Version: "v9.9.9"})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"go.mod", "main.go", "worker.yaml", "verge.yaml", "README.md", ".gitignore", "verge-sdk/go.mod", "verge-sdk/sdk/go/sdk.go", "verge-sdk/internal/workerabi/abi.go"} {
				if !slices.Contains(wrote, f) {
					t.Errorf("Init wrote %v; missing %s", wrote, f)
				}
				if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
					t.Error(err)
				}
			}
			gomod := readFile(t, filepath.Join(dir, "go.mod"))
			for _, want := range []string{"module example.com/my-worker\n", "replace github.com/verge-edge/verge => ./verge-sdk\n", "go " + verge.SDKGoVersion + "\n"} {
				if !strings.Contains(gomod, want) {
					t.Errorf("go.mod lacks %q:\n%s", want, gomod)
				}
			}
			if sdkmod := readFile(t, filepath.Join(dir, "verge-sdk", "go.mod")); !strings.Contains(sdkmod, "v9.9.9") {
				t.Errorf("the SDK copy's go.mod does not record the version:\n%s", sdkmod)
			}
			w, err := config.ParseWorker(filepath.Join(dir, "worker.yaml"), []byte(readFile(t, filepath.Join(dir, "worker.yaml"))))
			if err != nil || w.Name != "My-Worker" {
				t.Fatalf("worker.yaml: %+v, %v; want the name My-Worker", w, err)
			}
			c, err := config.Load(filepath.Join(dir, "verge.yaml"))
			if err != nil || len(c.Workers) != 1 || c.Workers[0].Package != dir || len(c.Workers[0].KV) != len(w.KV) || len(c.Workers[0].DurableObjects) != len(w.DurableObjects) {
				t.Fatalf("verge.yaml: %v; want one worker, the package in %s, the bindings of worker.yaml", err, dir)
			}
			// Vetting the SDK's packages from the project checks them against the copy's go
			// directive (stdversion): a standard library symbol newer than SDKGoVersion would
			// break the build on the oldest Go the project says it supports.
			env := offlineEnv("GOOS=wasip1", "GOARCH=wasm")
			vet := []string{"vet", "./..."}
			for _, p := range verge.SDKPackages {
				vet = append(vet, verge.SDKModule+"/"+p)
			}
			goCmd(t, dir, env, vet...)
			goCmd(t, dir, offlineEnv(), vet...)
			goCmd(t, dir, env, "mod", "tidy")
			if after := readFile(t, filepath.Join(dir, "go.mod")); after != gomod {
				t.Errorf("go mod tidy changed go.mod:\n%s\nwas:\n%s", after, gomod)
			}
			if _, err := os.Stat(filepath.Join(dir, "go.sum")); err == nil {
				t.Error("go mod tidy wrote a go.sum: the project has a dependency outside it")
			}
		})
	}
}

// TestInitSDKCopyIsTheEmbeddedSDK: the copy holds every embedded SDK source but the tests,
// byte for byte, and nothing else but its go.mod.
func TestInitSDKCopyIsTheEmbeddedSDK(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	fs.WalkDir(verge.SDKSource, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
			want[p], _ = verge.SDKSource.ReadFile(p)
		}
		return err
	})
	got := map[string][]byte{}
	root := filepath.Join(dir, SDKDir)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			got[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		}
		return err
	})
	if _, ok := got["go.mod"]; !ok {
		t.Error("the SDK copy has no go.mod")
	}
	delete(got, "go.mod")
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("the SDK copy has %d files, want the %d embedded", len(got), len(want))
	}
	for p, b := range want {
		if !bytes.Equal(got[p], b) {
			t.Errorf("%s differs from the embedded SDK", p)
		}
	}
}

// TestInitRefusesToOverwrite: an existing file makes Init fail, naming it, with nothing
// written; Force overwrites.
func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "main.go")
	os.WriteFile(mine, []byte("package main // mine\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("kept"), 0o644)
	_, err := Init(Options{Dir: dir})
	var ee *ExistsError
	if !errors.As(err, &ee) || !slices.Equal(ee.Paths, []string{mine}) || !strings.Contains(err.Error(), mine) {
		t.Fatalf("Init into a directory with main.go: %v; want an ExistsError naming %s", err, mine)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 || readFile(t, mine) != "package main // mine\n" {
		t.Fatalf("a refused Init changed the directory: %v", ents)
	}

	// A second Init over a whole project names every file, the SDK copy included.
	proj := t.TempDir()
	if _, err := Init(Options{Dir: proj}); err != nil {
		t.Fatal(err)
	}
	_, err = Init(Options{Dir: proj, Template: "counter"})
	if !errors.As(err, &ee) || len(ee.Paths) != 7 || ee.Paths[6] != filepath.Join(proj, SDKDir) {
		t.Fatalf("Init over a project: %v; want the 6 files and %s named", err, SDKDir)
	}

	// A forced overwrite replaces a symbolic link, not the file it points to.
	outside := filepath.Join(t.TempDir(), "outside.txt")
	os.WriteFile(outside, []byte("outside"), 0o644)
	if err := os.Symlink(outside, filepath.Join(dir, "README.md")); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(Options{Dir: dir, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, mine); !strings.Contains(got, "sdk.Serve") {
		t.Fatalf("Force did not overwrite main.go:\n%s", got)
	}
	ents, _ = os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && e.Name() != ".gitignore" {
			t.Errorf("Init left %s behind", e.Name())
		}
	}
	if readFile(t, outside) != "outside" {
		t.Fatal("a forced Init wrote through a symbolic link")
	}
	if readFile(t, filepath.Join(dir, "notes.txt")) != "kept" {
		t.Fatal("Init touched a file it does not write")
	}
}

// TestUpdateSDK: --sdk-only replaces a stale or edited copy whole (a file the new SDK does
// not have is gone), leaves the project's files alone, and points go.mod at the copy whatever
// replacement it had; a directory that is not an SDK copy is refused.
func TestUpdateSDK(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	sdkFile := filepath.Join(dir, SDKDir, "sdk", "go", "sdk.go")
	stale := filepath.Join(dir, SDKDir, "sdk", "go", "removed_in_new_sdk.go")
	os.WriteFile(sdkFile, []byte("package sdk // old\n"), 0o644)
	os.WriteFile(stale, []byte("package sdk\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main // edited\n"), 0o644)
	gomod := readFile(t, filepath.Join(dir, "go.mod"))

	u, err := UpdateSDK(Options{Dir: dir}, "")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := verge.SDKSource.ReadFile("sdk/go/sdk.go")
	if readFile(t, sdkFile) != string(want) {
		t.Error("UpdateSDK did not restore sdk.go")
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file the new SDK does not have survived: %v", err)
	}
	if readFile(t, filepath.Join(dir, "main.go")) != "package main // edited\n" || readFile(t, filepath.Join(dir, "go.mod")) != gomod {
		t.Error("UpdateSDK changed the project's own files")
	}
	if u.GoModEdited || !slices.Contains(u.Wrote, path.Join(SDKDir, "sdk/go/sdk.go")) {
		t.Errorf("UpdateSDK = %+v; want sdk.go written and go.mod left alone", u)
	}
	if ents, _ := os.ReadDir(dir); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), "."+SDKDir) }) {
		t.Errorf("UpdateSDK left temporary directories: %v", ents)
	}

	// A project made by hand, with a replace pointing at a checkout of the repository and
	// one for a single version.
	hand := t.TempDir()
	os.WriteFile(filepath.Join(hand, "go.mod"), []byte("module hand\n\ngo 1.24\n\nrequire github.com/verge-edge/verge v0.1.0\n\nreplace github.com/verge-edge/verge => ../verge\n\nreplace github.com/verge-edge/verge v0.1.0 => ../verge-old\n"), 0o644)
	os.WriteFile(filepath.Join(hand, "main.go"), []byte("package main\n\nimport _ \"github.com/verge-edge/verge/sdk/go\"\n\nfunc main() {}\n"), 0o644)
	if u, err = UpdateSDK(Options{Dir: hand}, ""); err != nil || !u.GoModEdited {
		t.Fatalf("UpdateSDK on a hand-made project: %+v, %v; want go.mod edited", u, err)
	}
	got := goCmd(t, hand, offlineEnv(), "mod", "edit", "-json")
	if !strings.Contains(got, `"Path": "./verge-sdk"`) || strings.Contains(got, "../verge") || !strings.Contains(got, `"Version": "v0.1.0"`) {
		t.Fatalf("go.mod after UpdateSDK:\n%s\nwant one replace, to ./verge-sdk, and the require kept", got)
	}
	goCmd(t, hand, offlineEnv("GOOS=wasip1", "GOARCH=wasm"), "vet", ".")

	// Not a copy of the SDK: refused, untouched; replaced with Force.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "go.mod"), []byte("module other\n\ngo 1.24\n"), 0o644)
	os.MkdirAll(filepath.Join(other, SDKDir), 0o755)
	os.WriteFile(filepath.Join(other, SDKDir, "go.mod"), []byte("module something/else\n"), 0o644)
	if _, err := UpdateSDK(Options{Dir: other}, ""); err == nil || !strings.Contains(err.Error(), filepath.Join(other, SDKDir)) {
		t.Fatalf("UpdateSDK over a foreign %s: %v; want a refusal naming it", SDKDir, err)
	}
	if readFile(t, filepath.Join(other, SDKDir, "go.mod")) != "module something/else\n" {
		t.Fatal("a refused UpdateSDK changed the directory")
	}
	if _, err := UpdateSDK(Options{Dir: other, Force: true}, ""); err != nil || !IsSDKCopy(filepath.Join(other, SDKDir)) {
		t.Fatalf("UpdateSDK with Force: %v", err)
	}

	// No go.mod: nothing to update.
	if _, err := UpdateSDK(Options{Dir: t.TempDir()}, ""); !errors.Is(err, ErrUsage) {
		t.Fatalf("UpdateSDK without go.mod: %v; want ErrUsage", err)
	}
}

func TestNameFrom(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"hello", "hello"},
		{"My Worker", "My-Worker"},
		{"..hidden", "hidden"},
		{"a  b//c", "a-b-c"},
		{"ünïcode", "n-code"},
		{"---", "worker"},
		{"", "worker"},
		{"v1.2.", "v1.2"},
		{strings.Repeat("x", 100), strings.Repeat("x", 64)},
	} {
		if got := NameFrom(c.in); got != c.want {
			t.Errorf("NameFrom(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestInitRefusesBadOptions: a bad template, worker name or module path is ErrUsage and
// writes nothing.
func TestInitRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Template: "nope"},
		{Name: "has space"},
		{Name: "-dash"},
		{Name: strings.Repeat("x", 65)},
		{Module: "github.com/verge-edge/verge"},
		{Module: "github.com/verge-edge/verge/mine"},
		{Module: "a//b"},
		{Module: "a/.b"},
		{Module: "with space"},
		{Module: "/abs"},
	} {
		o.Dir = filepath.Join(t.TempDir(), "p")
		if _, err := Init(o); !errors.Is(err, ErrUsage) {
			t.Errorf("Init(%+v) = %v, want ErrUsage", o, err)
		}
		if _, err := os.Stat(o.Dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Init(%+v) created the directory", o)
		}
	}
}

// TestHelloExampleCompiles: the KV and Durable Object example commented in the hello
// template's main.go is gofmt-clean Go that compiles next to the handler (with the imports it
// names), so the documentation a new project starts from cannot rot.
func TestHelloExampleCompiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	src := readFile(t, filepath.Join(dir, "main.go"))
	_, rest, ok := strings.Cut(src, "\n//\tfunc visit(")
	if !ok {
		t.Fatal("main.go has no commented visit example")
	}
	var code strings.Builder
	code.WriteString("func visit(")
	for i, line := range strings.Split(rest, "\n") {
		if i == 0 {
			code.WriteString(line + "\n")
			continue
		}
		switch {
		case line == "//":
			code.WriteString("\n")
		case strings.HasPrefix(line, "//\t"):
			code.WriteString(strings.TrimPrefix(line, "//\t") + "\n")
		case line == "":
		default:
			t.Fatalf("unexpected line after the example: %q", line)
		}
	}
	if !strings.HasPrefix(rest, "w sdk.ResponseWriter") {
		t.Fatalf("visit's signature changed: %.40q", rest)
	}
	file := "package main\n\nimport (\n\t\"io\"\n\t\"strconv\"\n\n\tsdk \"github.com/verge-edge/verge/sdk/go\"\n)\n\n" + code.String()
	formatted, err := format.Source([]byte(file))
	if err != nil {
		t.Fatalf("the example does not parse: %v\n%s", err, file)
	}
	if string(formatted) != file {
		t.Errorf("the example is not gofmt-clean:\n%s\nwant:\n%s", file, formatted)
	}
	os.WriteFile(filepath.Join(dir, "example.go"), []byte(file), 0o644)
	goCmd(t, dir, offlineEnv("GOOS=wasip1", "GOARCH=wasm"), "vet", ".")
}
