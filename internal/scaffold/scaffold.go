// Package scaffold writes new Go worker projects (`verge init`) and refreshes the copy of the
// worker SDK inside existing ones (`verge init --sdk-only`).
//
// The module github.com/verge-edge/verge is not published to a module proxy, so a project
// cannot fetch the SDK. A project written here carries the SDK embedded in the verge binary
// (see the root package) as a local module in SDKDir, holding only the SDK and the packages
// it imports, and its go.mod reaches it with a replace directive: the project builds with
// nothing but the Go toolchain, offline, and its SDK speaks the host ABI of the binary that
// wrote it.
package scaffold

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	verge "github.com/verge-edge/verge"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/internal/workerabi"
)

// SDKDir is the directory of a project that holds its copy of the SDK module.
const SDKDir = "verge-sdk"

// sdkRequire is the version a project requires of the SDK module: a placeholder, since the
// replace directive points at SDKDir whatever the version.
const sdkRequire = "v0.0.0-00010101000000-000000000000"

// Templates are the project templates, the default first: hello answers every request with a
// greeting; counter has a Durable Object class and a KV namespace.
var Templates = []string{"hello", "counter"}

// maxNameLen bounds a worker name, so that names derived from it (the KV namespace
// "<name>-kv", the Durable Object namespace "<name>-Counter") stay valid storage names.
const maxNameLen = 64

//go:embed templates
var templates embed.FS

// Options says what Init writes.
type Options struct {
	// Dir is the project directory; it is created when missing and may hold other files.
	Dir string
	// Name is the worker's name in worker.yaml and verge.yaml. Empty means Dir's base name,
	// with characters a worker name cannot hold replaced by '-'.
	Name string
	// Module is the module path in go.mod. Empty means the worker's name.
	Module string
	// Template is one of Templates. Empty means "hello".
	Template string
	// Force overwrites existing files; without it Init writes nothing when one of its files
	// exists and returns an *ExistsError.
	Force bool
	// Version is the verge version recorded in the SDK copy's go.mod. Empty means "(devel)".
	Version string
}

// ExistsError reports files Init would overwrite. Init wrote nothing.
type ExistsError struct {
	Paths []string
}

func (e *ExistsError) Error() string {
	if len(e.Paths) == 1 {
		return e.Paths[0] + " already exists"
	}
	return strings.Join(e.Paths, ", ") + " already exist"
}

// ErrUsage classifies a bad option: a name, module path or template Init cannot use.
var ErrUsage = errors.New("bad option")

// data is what the templates see.
type data struct {
	Name, Module, Template, Version string
	SDKDir, SDKModule, SDKRequire   string
	GoVersion                       string
	ABI                             int
}

// projectFile is one file of a project: where it goes and which template makes it.
type projectFile struct {
	name, tmpl string
}

func projectFiles(tmpl string) []projectFile {
	return []projectFile{
		{"go.mod", "common/go.mod.tmpl"},
		{"main.go", tmpl + "/main.go.tmpl"},
		{"worker.yaml", tmpl + "/worker.yaml.tmpl"},
		{"verge.yaml", "common/verge.yaml.tmpl"},
		{"README.md", "common/README.md.tmpl"},
		{".gitignore", "common/gitignore.tmpl"},
	}
}

// Init writes a worker project into o.Dir: go.mod, main.go, worker.yaml (for verge dev),
// verge.yaml (for verge run), README.md, .gitignore and the SDK copy in SDKDir. It returns
// the paths it wrote, relative to o.Dir. Unless o.Force is set it checks every file first and
// writes none when one exists.
func Init(o Options) ([]string, error) {
	d, err := o.data()
	if err != nil {
		return nil, err
	}
	files := projectFiles(d.Template)
	if !o.Force {
		var exist []string
		for _, f := range append(files, projectFile{name: SDKDir}) {
			p := filepath.Join(o.Dir, f.name)
			if _, err := os.Lstat(p); err == nil {
				exist = append(exist, p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		if len(exist) > 0 {
			return nil, &ExistsError{Paths: exist}
		}
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		if out[f.name], err = render(f.tmpl, d); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	// What verge dev and verge run will read must be accepted by them: check it before
	// writing anything (the package directory, o.Dir, exists now).
	if _, err := config.ParseWorker(filepath.Join(o.Dir, "worker.yaml"), out["worker.yaml"]); err != nil {
		return nil, fmt.Errorf("generated worker.yaml: %w", err)
	}
	if _, err := config.Parse(filepath.Join(o.Dir, "verge.yaml"), out["verge.yaml"]); err != nil {
		return nil, fmt.Errorf("generated verge.yaml: %w", err)
	}
	var wrote []string
	for _, f := range files {
		if err := writeFile(filepath.Join(o.Dir, f.name), out[f.name]); err != nil {
			return wrote, err
		}
		wrote = append(wrote, f.name)
	}
	sdk, err := writeSDK(o.Dir, d, o.Force)
	return append(wrote, sdk...), err
}

// writeFile writes a file through a temporary one renamed over it: a forced overwrite
// replaces a symbolic link instead of writing where it points, and an interrupted write
// leaves the previous file.
func writeFile(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".new-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// data validates the options and applies their defaults.
func (o Options) data() (*data, error) {
	d := &data{
		Name: o.Name, Module: o.Module, Template: o.Template, Version: o.Version,
		SDKDir: SDKDir, SDKModule: verge.SDKModule, SDKRequire: sdkRequire,
		GoVersion: verge.SDKGoVersion, ABI: workerabi.Version,
	}
	if d.Template == "" {
		d.Template = Templates[0]
	}
	if !slices.Contains(Templates, d.Template) {
		return nil, fmt.Errorf("%w: template %q: want one of %s", ErrUsage, d.Template, strings.Join(Templates, ", "))
	}
	if d.Version == "" {
		d.Version = "(devel)"
	}
	if d.Name == "" {
		abs, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, err
		}
		d.Name = NameFrom(filepath.Base(abs))
	} else if !workerName.MatchString(d.Name) || len(d.Name) > maxNameLen {
		return nil, fmt.Errorf("%w: worker name %q: use up to %d letters, digits, '_', '-' and '.', starting with a letter, digit or '_'", ErrUsage, d.Name, maxNameLen)
	}
	if d.Module == "" {
		d.Module = d.Name
	}
	if err := checkModulePath(d.Module); err != nil {
		return nil, fmt.Errorf("%w: module path %q: %v", ErrUsage, d.Module, err)
	}
	return d, nil
}

// workerName is what config accepts as a worker name.
var workerName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// NameFrom turns a directory name into a worker name: runs of characters a worker name cannot
// hold become '-', leading '-' and '.' and trailing '.' are dropped, and the result is cut to
// 64 bytes; "worker" when nothing is left.
func NameFrom(base string) string {
	var b strings.Builder
	dash := false
	for _, r := range base {
		ok := r < 0x80 && (r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimLeft(b.String(), "-.")
	if len(s) > maxNameLen {
		s = s[:maxNameLen]
	}
	s = strings.TrimRight(s, ".-")
	if s == "" {
		return "worker"
	}
	return s
}

// checkModulePath accepts what the go command accepts as a main module's path, in the common
// subset: slash-separated elements of ASCII letters, digits and "-._~", none empty, none
// starting or ending with '.'. It refuses the SDK's own module, which the replace directive
// claims.
func checkModulePath(p string) error {
	if p == verge.SDKModule || strings.HasPrefix(p, verge.SDKModule+"/") {
		return fmt.Errorf("the SDK's module %s is reserved", verge.SDKModule)
	}
	if len(p) > 512 {
		return errors.New("longer than 512 bytes")
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == "" {
			return errors.New("empty path element")
		}
		if elem[0] == '.' || elem[len(elem)-1] == '.' {
			return fmt.Errorf("element %q starts or ends with '.'", elem)
		}
		for _, r := range elem {
			if !(r == '-' || r == '.' || r == '_' || r == '~' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return fmt.Errorf("character %q: use ASCII letters, digits and \"-._~\"", r)
			}
		}
	}
	return nil
}

func render(name string, d *data) ([]byte, error) {
	t, err := template.ParseFS(templates, "templates/"+name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sdkFiles returns the SDK copy's files by slash-separated path relative to SDKDir: its
// go.mod and the embedded SDK sources without their tests.
func sdkFiles(d *data) (map[string][]byte, error) {
	mod, err := render("common/sdk.go.mod.tmpl", d)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"go.mod": mod}
	for _, dir := range verge.SDKPackages {
		ents, err := fs.ReadDir(verge.SDKSource, dir)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			name := path.Join(dir, e.Name())
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			if files[name], err = verge.SDKSource.ReadFile(name); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}

// writeSDK writes the SDK copy into a new directory next to dir/SDKDir and then puts it in
// place, so that a failure leaves the previous copy whole. An existing dir/SDKDir that is not
// an SDK copy (its go.mod does not declare the SDK's module) is replaced only when force is
// set. It returns the paths written, relative to dir.
func writeSDK(dir string, d *data, force bool) ([]string, error) {
	files, err := sdkFiles(d)
	if err != nil {
		return nil, err
	}
	dst := filepath.Join(dir, SDKDir)
	_, err = os.Lstat(dst)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if exists && !force && !IsSDKCopy(dst) {
		return nil, fmt.Errorf("%s is not a copy of the verge SDK (its go.mod does not declare module %s); move it away, or --force replaces it", dst, verge.SDKModule)
	}
	tmp, err := os.MkdirTemp(dir, "."+SDKDir+"-new-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		p := filepath.Join(tmp, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if exists {
		// The previous copy waits next to the new one until the new one is in place.
		old := tmp + "-old"
		if err := os.Rename(dst, old); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, dst); err != nil {
			if rerr := os.Rename(old, dst); rerr != nil {
				return nil, fmt.Errorf("%w (and restoring the previous copy: %v; it is in %s)", err, rerr, old)
			}
			return nil, err
		}
		if err := os.RemoveAll(old); err != nil {
			return nil, fmt.Errorf("remove the previous SDK copy: %w", err)
		}
	} else if err := os.Rename(tmp, dst); err != nil {
		return nil, err
	}
	wrote := make([]string, len(names))
	for i, n := range names {
		wrote[i] = path.Join(SDKDir, n)
	}
	return wrote, nil
}

// IsSDKCopy reports whether dir holds a copy of the SDK written by Init or UpdateSDK: its
// go.mod declares the SDK's module.
func IsSDKCopy(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == verge.SDKModule {
			return true
		}
	}
	return false
}

// Update is what UpdateSDK did.
type Update struct {
	// Wrote are the SDK copy's files, relative to the project directory.
	Wrote []string
	// GoModEdited says whether go.mod lacked the require or replace directive that reaches
	// the copy, and got it.
	GoModEdited bool
}

// UpdateSDK replaces the SDK copy in o.Dir with this binary's SDK, leaving the project's own
// files alone, and makes sure go.mod requires the SDK's module and replaces it with the copy
// (editing it with `goCmd mod edit` when it does not). o.Dir must hold a go.mod. An existing
// SDKDir that is not an SDK copy is replaced only with o.Force.
func UpdateSDK(o Options, goCmd string) (Update, error) {
	var u Update
	d, err := o.data()
	if err != nil {
		return u, err
	}
	gomod := filepath.Join(o.Dir, "go.mod")
	if _, err := os.Stat(gomod); err != nil {
		return u, fmt.Errorf("%w: %s: no Go module to update (%v)", ErrUsage, o.Dir, err)
	}
	if u.Wrote, err = writeSDK(o.Dir, d, o.Force); err != nil {
		return u, err
	}
	u.GoModEdited, err = reachSDK(o.Dir, goCmd)
	return u, err
}

// reachSDK makes the go.mod in dir require the SDK's module and replace it with ./SDKDir.
func reachSDK(dir, goCmd string) (bool, error) {
	if goCmd == "" {
		goCmd = "go"
	}
	out, err := goModEdit(dir, goCmd, "-json")
	if err != nil {
		return false, err
	}
	var m struct {
		Require []struct{ Path string }
		Replace []struct {
			Old struct{ Path, Version string }
			New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return false, fmt.Errorf("read %s: %w", filepath.Join(dir, "go.mod"), err)
	}
	var args []string
	if !slices.ContainsFunc(m.Require, func(r struct{ Path string }) bool { return r.Path == verge.SDKModule }) {
		args = append(args, "-require="+verge.SDKModule+"@"+sdkRequire)
	}
	// A replacement of one version takes precedence over one of all versions: drop those,
	// and replace all versions with the copy unless that is done already.
	ours := false
	for _, r := range m.Replace {
		switch {
		case r.Old.Path != verge.SDKModule:
		case r.Old.Version != "":
			args = append(args, "-dropreplace="+verge.SDKModule+"@"+r.Old.Version)
		case r.New.Version == "" && filepath.ToSlash(filepath.Clean(r.New.Path)) == SDKDir:
			ours = true
		}
	}
	if !ours {
		args = append(args, "-replace="+verge.SDKModule+"=./"+SDKDir)
	}
	if len(args) == 0 {
		return false, nil
	}
	if _, err := goModEdit(dir, goCmd, args...); err != nil {
		return false, err
	}
	return true, nil
}

func goModEdit(dir, goCmd string, args ...string) ([]byte, error) {
	cmd := exec.Command(goCmd, append([]string{"mod", "edit"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod edit %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
