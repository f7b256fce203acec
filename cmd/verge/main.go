// Command verge is the Verge edge proxy server.
//
//	verge run -c verge.yaml          serve a configuration
//	verge validate -c verge.yaml     check a configuration and exit
//	verge fmt [-w] [FILE...]         reformat configuration files
//	verge schema                     print the JSON Schema of the configuration
//	verge proxy --listen ADDR --upstream URL[,URL...]
//	                                 a reverse proxy without a config file
//	verge reload [-c FILE | --pid-file FILE]
//	                                 tell a running server to reload its configuration
//	verge init [DIR]                 write a new Go worker project (with its own SDK copy)
//	verge dev PATH                   build and serve a Go worker locally, rebuilding on change
//	verge kv get|put|delete|list     read and change local KV namespaces
//	verge cache purge ...            purge cached objects through the admin API
//	verge cluster status             show the cluster through the admin API
//	verge completion bash|zsh|fish   print a shell completion script
//	verge version                    print the version
//
// Signals to `verge run`: SIGHUP reloads the configuration (a bad one is refused and the old
// one keeps serving), SIGUSR2 upgrades the binary without downtime (the new process inherits
// the listening sockets, the old one drains and exits), SIGTERM and SIGQUIT drain gracefully
// within shutdown.grace_period, SIGINT stops at once. docs/operations.md has the details.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3"; otherwise the module
// version or VCS revision recorded by the Go toolchain is shown.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
			v = "(devel) " + s.Value[:12]
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

const usage = `verge: an edge reverse proxy

Usage:
  verge run -c verge.yaml           serve a configuration
  verge validate -c verge.yaml      check a configuration; exit 1 with file:line:column errors
  verge fmt [-w | -l | --check] [FILE...]
                                    reformat configuration files (comments kept)
  verge schema [-o FILE]            print the JSON Schema of the configuration, for editors
  verge proxy --listen ADDR --upstream URL[,URL...]
                                    reverse proxy without a config file
  verge reload [-c FILE | --pid-file FILE | --admin URL]
                                    make a running server reload its configuration
  verge init [--template hello|counter] [--sdk-only] [DIR]
                                    write a Go worker project that builds offline with
                                    only Go and this binary (--sdk-only: refresh its SDK)
  verge dev [--init] [--listen ADDR] [--data DIR] PATH
                                    build the Go worker at PATH and serve it with local
                                    KV and Durable Objects, rebuilding on change
  verge kv get|put|delete|list ...  read and change KV namespaces (local, or a cluster's)
  verge cache purge [--url U] [--prefix P] [--tag T] [--all] [-c FILE | --admin URL]
                                    purge cached objects (on every node of a cluster)
  verge cluster status [-c FILE | --admin URL] [--json]
                                    members, roles, streams and replication lag
  verge completion bash|zsh|fish    print a shell completion script
  verge version                     print the version

Run "verge COMMAND --help" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stderr)
	case "fmt":
		err = cmdFmt(args[1:], os.Stdin, stdout, stderr)
	case "schema":
		err = cmdSchema(args[1:], stdout, stderr)
	case "completion":
		err = cmdCompletion(args[1:], stdout, stderr)
	case "__complete":
		err = cmdComplete(args[1:], stdout)
	case "validate":
		err = cmdValidate(args[1:], stdout, stderr)
	case "proxy":
		err = cmdProxy(args[1:], stdout, stderr)
	case "reload":
		err = cmdReload(args[1:], stdout, stderr)
	case "init":
		err = cmdInit(args[1:], stdout, stderr)
	case "dev":
		err = cmdDev(args[1:], stdout, stderr)
	case "kv":
		err = cmdKV(args[1:], os.Stdin, stdout, stderr)
	case "cache":
		err = cmdCache(args[1:], stdout, stderr)
	case "cluster":
		err = cmdCluster(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "verge", versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "verge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errProbed):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	var ex exitError
	if errors.As(err, &ex) {
		return int(ex)
	}
	fmt.Fprintln(stderr, "verge:", err)
	return 1
}

// errUsage reports a command-line mistake already explained on stderr.
var errUsage = errors.New("usage")

// exitError ends the program with a code after the message was already printed.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// newFlags returns a flag set that prints its usage to stderr and returns errors.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: verge %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping parse errors to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if probed(fs) {
		return errProbed
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "verge %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}
