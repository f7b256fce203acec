package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func complete(t *testing.T, words ...string) []string {
	t.Helper()
	var out bytes.Buffer
	if code := run(append([]string{"__complete"}, words...), &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("__complete %q: exit %d", words, code)
	}
	return strings.Fields(out.String())
}

func TestCompleteCommandsAndFlags(t *testing.T) {
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{""}, []string{"run", "validate", "fmt", "schema", "proxy", "kv", "completion"}},
		{[]string{"ru"}, []string{"run"}},
		{[]string{"run", "-"}, []string{"--pid-file", "-c"}},
		{[]string{"proxy", "--tls"}, []string{"--tls-cert", "--tls-internal", "--tls-key"}},
		{[]string{"kv", ""}, []string{"delete", "get", "list", "namespaces", "put"}},
		{[]string{"kv", "put", "--t"}, []string{"--token", "--ttl"}},
		{[]string{"cache", "purge", "--a"}, []string{"--admin", "--all"}},
		{[]string{"cluster", "status", "--j"}, []string{"--json"}},
		{[]string{"fmt", "-"}, []string{"--check", "-l", "-w"}},
		{[]string{"dev", "--in"}, []string{"--init"}},
		{[]string{"init", "--t"}, []string{"--template"}},
		{[]string{"completion", "f"}, []string{"fish"}},
		{[]string{"run", "-c", ""}, nil},   // a file: the shell's own completion
		{[]string{"validate", "x.y"}, nil}, // likewise
		{[]string{"nosuch", "--x"}, nil},   // an unknown command has no flags
	} {
		got := complete(t, c.words...)
		slices.Sort(got)
		want := slices.Sorted(slices.Values(c.want))
		if len(c.want) > 0 && c.words[0] == "" {
			// Every listed command is offered (and more).
			for _, w := range c.want {
				if !slices.Contains(got, w) {
					t.Errorf("%q: %q missing from %q", c.words, w, got)
				}
			}
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", c.words, got, want)
		}
	}
}

// TestCompletionCommandsMatchUsage: every command of the usage text is completed, and every
// completed command is one run dispatches.
func TestCompletionCommandsMatchUsage(t *testing.T) {
	inUsage := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  verge ([a-z]+)`).FindAllStringSubmatch(usage, -1) {
		inUsage[m[1]] = true
	}
	listed := map[string]bool{}
	for _, c := range commands {
		listed[c.name] = true
		var errb bytes.Buffer
		run([]string{c.name, "--help"}, &bytes.Buffer{}, &errb)
		if strings.Contains(errb.String(), "unknown command") {
			t.Errorf("completion offers %q, which run does not know", c.name)
		}
	}
	for name := range inUsage {
		if !listed[name] {
			t.Errorf("usage shows %q, which completion does not offer", name)
		}
	}
}

// shellBin puts the verge binary on PATH for a shell test.
func shellEnv(t *testing.T) []string {
	bin := verge(t)
	return append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
}

// TestBashCompletionScript sources the script in a real bash and runs its function.
func TestBashCompletionScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := `source <(verge completion bash)
COMP_WORDS=(verge proxy --tls-); COMP_CWORD=2; _verge_complete; echo "${COMPREPLY[*]}"
COMP_WORDS=(verge ru); COMP_CWORD=1; _verge_complete; echo "${COMPREPLY[*]}"
complete -p verge`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = shellEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] != "--tls-cert --tls-internal --tls-key" || lines[1] != "run" || !strings.Contains(lines[2], "_verge_complete") {
		t.Fatalf("bash completion printed:\n%s", out)
	}
}

// TestZshCompletionScript runs the zsh function with compadd and _files standing in for
// zsh's completion system (which needs a terminal).
func TestZshCompletionScript(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("no zsh (.ci/run installs it)")
	}
	script := `compdef() { :; }
compadd() { shift; print -l -- "${(@P)1}"; }
_files() { print FILES; }
source <(verge completion zsh)
words=(verge kv pu); CURRENT=3; _verge
words=(verge run -c ''); CURRENT=4; _verge`
	cmd := exec.Command("zsh", "-f", "-c", script)
	cmd.Env = shellEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("zsh: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "put\nFILES" {
		t.Fatalf("zsh completion printed:\n%s", out)
	}
}

// TestFishCompletionScript asks a real fish for its completions (complete -C).
func TestFishCompletionScript(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("no fish (.ci/run installs it)")
	}
	script := `verge completion fish | source; complete -C 'verge cluster st'; complete -C 'verge schema -'`
	cmd := exec.Command("fish", "--no-config", "-c", script)
	cmd.Env = shellEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fish: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	if !slices.Contains(got, "status") || !slices.Contains(got, "-o") {
		t.Fatalf("fish completion printed:\n%s", out)
	}
}
