// Package testwasm builds Go worker packages for tests, once per source content: modules are
// cached in the user cache directory under a hash of the SDK's and the package's sources, so
// test binaries and repeated runs skip the (slow) wasm build.
package testwasm

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string][]byte{}
)

// Root returns the repository root (the directory holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build returns the module built from the package at rel (relative to the repository root).
func Build(tb testing.TB, rel string) []byte {
	tb.Helper()
	path := BuildFile(tb, rel)
	bin, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// BuildFile returns the path of the module built from the package at rel.
func BuildFile(tb testing.TB, rel string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	root := Root()
	dir := filepath.Join(root, rel)
	h := sha256.New()
	for _, d := range []string{filepath.Join(root, "sdk", "go"), dir} {
		hashTree(tb, h, d)
	}
	h.Write([]byte(runtime.Version()))
	sum := hex.EncodeToString(h.Sum(nil))[:24]
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "verge-test-wasm", strings.ReplaceAll(rel, "/", "_")+"-"+sum+".wasm")
	if _, ok := built[out]; ok {
		return out
	}
	if _, err := os.Stat(out); err == nil {
		built[out] = nil
		return out
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		tb.Fatal(err)
	}
	tmp := out + ".tmp"
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", tmp, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", rel, err, out)
	}
	if err := os.Rename(tmp, out); err != nil {
		tb.Fatal(err)
	}
	built[out] = nil
	return out
}

func hashTree(tb testing.TB, h interface{ Write([]byte) (int, error) }, dir string) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		h.Write([]byte(f))
		h.Write(b)
	}
}
