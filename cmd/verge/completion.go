package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// commands are the verge commands and their subcommands, for completion (a test checks
// them against run's dispatch and the usage text).
var commands = []struct {
	name string
	subs []string
}{
	{"run", nil},
	{"validate", nil},
	{"fmt", nil},
	{"schema", nil},
	{"proxy", nil},
	{"reload", nil},
	{"init", nil},
	{"dev", nil},
	{"kv", []string{"get", "put", "delete", "list", "namespaces"}},
	{"cache", []string{"purge"}},
	{"cluster", []string{"status"}},
	{"completion", []string{"bash", "zsh", "fish"}},
	{"version", nil},
	{"help", nil},
}

// probeWriter, passed as a command's stderr, makes its flag parsing hand the flag set over
// instead of parsing (probeFlags): completion learns a command's flags from the command
// itself, so the two cannot drift apart.
type probeWriter struct {
	fs *flag.FlagSet
}

func (*probeWriter) Write(p []byte) (int, error) { return len(p), nil }

var errProbed = errors.New("flags probed")

// probed reports whether fs belongs to a command run for its flags, and records it.
func probed(fs *flag.FlagSet) bool {
	if pw, ok := fs.Output().(*probeWriter); ok {
		pw.fs = fs
		return true
	}
	return false
}

// commandFlags returns the flags of the command line words (command and subcommand), nil
// when it has none.
func commandFlags(words []string) *flag.FlagSet {
	pw := &probeWriter{}
	run(words, io.Discard, pw)
	return pw.fs
}

// cmdComplete prints the completions of the last of args (the word being typed; the others
// are the words before it, without "verge"), one per line. Nothing printed means the shell's
// own file completion.
func cmdComplete(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		args = []string{""}
	}
	cur, before := args[len(args)-1], args[:len(args)-1]
	var out []string
	add := func(c string) {
		if strings.HasPrefix(c, cur) {
			out = append(out, c)
		}
	}
	switch {
	case len(before) == 0:
		for _, c := range commands {
			add(c.name)
		}
	case strings.HasPrefix(cur, "-"):
		words := before[:1]
		if subs := subcommands(before[0]); subs != nil && len(before) > 1 && slices.Contains(subs, before[1]) {
			words = before[:2]
		}
		if fs := commandFlags(words); fs != nil {
			fs.VisitAll(func(f *flag.Flag) {
				if len(f.Name) == 1 {
					add("-" + f.Name)
				} else {
					add("--" + f.Name)
				}
			})
		}
	case len(before) == 1 && subcommands(before[0]) != nil:
		for _, s := range subcommands(before[0]) {
			add(s)
		}
	}
	// After a flag that takes a value, or at a file argument: nothing, so files.
	for _, c := range out {
		fmt.Fprintln(stdout, c)
	}
	return nil
}

func subcommands(cmd string) []string {
	for _, c := range commands {
		if c.name == cmd {
			return c.subs
		}
	}
	return nil
}

// cmdCompletion prints the completion script of a shell.
func cmdCompletion(args []string, stdout, stderr io.Writer) error {
	const use = "Usage: verge completion bash|zsh|fish\n\n" +
		"  bash: source <(verge completion bash)   (or save it in /etc/bash_completion.d/verge)\n" +
		"  zsh:  source <(verge completion zsh)    (after compinit)\n" +
		"  fish: verge completion fish > ~/.config/fish/completions/verge.fish\n"
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, use)
		return nil
	}
	if len(args) != 1 {
		fmt.Fprint(stderr, use)
		return errUsage
	}
	var script string
	switch args[0] {
	case "bash":
		script = bashCompletion
	case "zsh":
		script = zshCompletion
	case "fish":
		script = fishCompletion
	default:
		fmt.Fprintf(stderr, "verge completion: unknown shell %q\n\n%s", args[0], use)
		return errUsage
	}
	_, err := io.WriteString(stdout, script)
	return err
}

// The scripts ask the binary being completed (`verge __complete WORDS...`) for the
// candidates; when it has none, the shell completes file names.
const bashCompletion = `# bash completion for verge: source <(verge completion bash)
_verge_complete() {
  local IFS=$'\n'
  COMPREPLY=($("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -o bashdefault -F _verge_complete verge
`

const zshCompletion = `#compdef verge
# zsh completion for verge: source <(verge completion zsh), after compinit
_verge() {
  local -a c
  c=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if (( ${#c} )) && [[ -n ${c[1]} ]]; then
    compadd -a c
  else
    _files
  fi
}
compdef _verge verge
`

const fishCompletion = `# fish completion for verge: verge completion fish > ~/.config/fish/completions/verge.fish
function __verge_complete
    set -l words (commandline -opc)
    $words[1] __complete $words[2..-1] (commandline -ct) 2>/dev/null
end
complete -c verge -a '(__verge_complete)'
`
