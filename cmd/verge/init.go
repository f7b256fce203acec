package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/verge-edge/verge/internal/scaffold"
)

// cmdInit writes a Go worker project into DIR (default: the current directory): go.mod,
// main.go, worker.yaml, verge.yaml, README.md, .gitignore and the SDK copy. With --sdk-only
// it refreshes only the SDK copy of an existing project.
func cmdInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("init", "init [--template hello|counter] [--name NAME] [--module PATH] [--force] [--sdk-only] [DIR]", stderr)
	tmpl := fs.String("template", scaffold.Templates[0], "project `template`: "+strings.Join(scaffold.Templates, " or "))
	name := fs.String("name", "", "worker `name` (default: the directory's name)")
	module := fs.String("module", "", "Go module `path` in go.mod (default: the worker's name)")
	force := fs.Bool("force", false, "overwrite existing files")
	sdkOnly := fs.Bool("sdk-only", false, "replace only the project's copy of the SDK ("+scaffold.SDKDir+"/) with this binary's, e.g. after upgrading verge")
	dir, err := parseWithPath(fs, args)
	if err != nil {
		return err
	}
	o := scaffold.Options{Dir: dir, Name: *name, Module: *module, Template: *tmpl, Force: *force, Version: versionString()}
	if *sdkOnly {
		u, err := scaffold.UpdateSDK(o, "")
		if err != nil {
			return initError(stderr, "init", err)
		}
		fmt.Fprintf(stdout, "verge init: wrote the SDK of verge %s into %s (%d files)\n", o.Version, filepath.Join(dir, scaffold.SDKDir), len(u.Wrote))
		if u.GoModEdited {
			fmt.Fprintf(stdout, "verge init: go.mod now requires github.com/verge-edge/verge and replaces it with ./%s\n", scaffold.SDKDir)
		}
		return nil
	}
	return initProject(o, "init", stdout, stderr)
}

// initProject runs scaffold.Init and prints what it wrote and what to do next.
func initProject(o scaffold.Options, cmd string, stdout, stderr io.Writer) error {
	wrote, err := scaffold.Init(o)
	if err != nil {
		return initError(stderr, cmd, err)
	}
	sdk := 0
	for _, f := range wrote {
		if strings.HasPrefix(f, scaffold.SDKDir+"/") {
			sdk++
			continue
		}
		fmt.Fprintf(stdout, "verge %s: wrote %s\n", cmd, filepath.Join(o.Dir, filepath.FromSlash(f)))
	}
	fmt.Fprintf(stdout, "verge %s: wrote %s/ (the worker SDK, %d files)\n", cmd, filepath.Join(o.Dir, scaffold.SDKDir), sdk)
	if cmd == "init" {
		fmt.Fprintf(stdout, "\nNext:\n  cd %s\n  verge dev                  # serves on http://127.0.0.1:8787, rebuilds on change\n  verge run -c verge.yaml    # the same worker behind a route\n", o.Dir)
	}
	return nil
}

// initError prints a scaffold error with what the user can do about it.
func initError(stderr io.Writer, cmd string, err error) error {
	var ee *scaffold.ExistsError
	switch {
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "verge %s: %v; nothing written (--force overwrites; --sdk-only refreshes only the SDK copy of an existing project)\n", cmd, err)
	case errors.Is(err, scaffold.ErrUsage):
		fmt.Fprintf(stderr, "verge %s: %v\n", cmd, err)
		return errUsage
	default:
		fmt.Fprintf(stderr, "verge %s: %v\n", cmd, err)
	}
	return exitError(1)
}
