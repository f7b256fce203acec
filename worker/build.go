package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// BuildOptions configure BuildGo.
type BuildOptions struct {
	// Go is the go command. Empty means "go" from PATH.
	Go string
	// Env is added to the environment of the build (GOOS and GOARCH are always set).
	Env []string
	// Timeout bounds the build. Zero means 5 minutes.
	Timeout time.Duration
}

// BuildGo builds the Go worker package in dir into a WebAssembly module at out with the
// local Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o out .
//
// (-buildmode=c-shared makes a WASI reactor whose _initialize runs the Go runtime's and the
// packages' initialization once; the SDK's //go:wasmexport functions are then called per
// request). The compiler's output is part of the error on failure.
func BuildGo(ctx context.Context, dir, out string, o BuildOptions) error {
	goCmd := o.Go
	if goCmd == "" {
		goCmd = "go"
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-buildmode=c-shared", "-o", abs, ".")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), o.Env...), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return &BuildError{Dir: dir, Err: err, Output: strings.TrimSpace(stderr.String())}
	}
	return nil
}

// BuildError is a failed BuildGo: the go command's error and its output, verbatim (compiler
// messages with file:line:column).
type BuildError struct {
	Dir    string
	Err    error
	Output string
}

func (e *BuildError) Error() string { return fmt.Sprintf("build %s: %v\n%s", e.Dir, e.Err, e.Output) }

func (e *BuildError) Unwrap() error { return e.Err }

// SourceStamp summarizes the Go sources under dir (names, sizes and modification times of
// .go files, go.mod and go.sum), so that a watcher can tell when to rebuild. It walks at most
// 10,000 files and skips hidden directories and testdata.
func SourceStamp(dir string) (string, error) {
	var lines []string
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != dir && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		if !strings.HasSuffix(name, ".go") && name != "go.mod" && name != "go.sum" {
			return nil
		}
		if n++; n > 10000 {
			return fs.SkipAll
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %d %d", p, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("watch %s: %w", dir, err)
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:]), nil
}
