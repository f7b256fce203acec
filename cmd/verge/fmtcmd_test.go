package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verge-edge/verge/config"
)

const messy = `# the public listener
listeners:
    -   name: public    # here
        address: "127.0.0.1:8080"
routes:
 - respond: {body: hi}
`

const tidy = `# the public listener
listeners:
  - name: public # here
    address: "127.0.0.1:8080"
routes:
  - respond: {body: hi}
`

// TestFmtThroughBinary drives verge fmt: --check, -w (permissions and a symbolic link kept),
// standard input, and a broken file named with its line.
func TestFmtThroughBinary(t *testing.T) {
	bin := verge(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(f, []byte(messy), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "verge.yaml")
	if err := os.Symlink("real.yaml", link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "fmt", "--check", link)
	out, err := cmd.Output()
	if cmd.ProcessState.ExitCode() != 1 || strings.TrimSpace(string(out)) != link {
		t.Fatalf("fmt --check on a messy file: exit %d (%v), printed %q", cmd.ProcessState.ExitCode(), err, out)
	}
	if out, err := exec.Command(bin, "fmt", "-w", link).CombinedOutput(); err != nil {
		t.Fatalf("fmt -w: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(f)
	if string(got) != tidy {
		t.Fatalf("fmt -w wrote:\n%s\nwant:\n%s", got, tidy)
	}
	if st, _ := os.Lstat(link); st.Mode()&os.ModeSymlink == 0 {
		t.Fatal("fmt -w replaced the symbolic link with a file")
	}
	if st, _ := os.Stat(f); st.Mode().Perm() != 0o640 {
		t.Fatalf("fmt -w changed the mode to %v", st.Mode().Perm())
	}
	if out, err := exec.Command(bin, "fmt", "--check", link).CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("fmt --check on a formatted file: %v %q", err, out)
	}
	cmd = exec.Command(bin, "fmt")
	cmd.Stdin = strings.NewReader(messy)
	if out, err := cmd.Output(); err != nil || string(out) != tidy {
		t.Fatalf("fmt from stdin: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listeners:\n  - name: a\n   address: b\n"), 0o644)
	cmd = exec.Command(bin, "fmt", "-w", bad)
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), bad+":1: did not find expected") {
		t.Fatalf("fmt of a broken file: exit %d, %s", cmd.ProcessState.ExitCode(), out)
	}
	if b, _ := os.ReadFile(bad); string(b) != "listeners:\n  - name: a\n   address: b\n" {
		t.Fatal("fmt changed a file it could not parse")
	}
}

func TestFmtFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"fmt", "-w"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "-w needs a file") {
		t.Fatalf("fmt -w without a file: exit %d, %s", code, &stderr)
	}
	if code := run([]string{"fmt", "-w", "-l", "x.yaml"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Fatalf("fmt -w -l: exit %d", code)
	}
}

func TestSchemaCommand(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"schema"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("schema: exit %d", code)
	}
	if !bytes.Equal(out.Bytes(), config.JSONSchema) {
		t.Fatal("verge schema does not print config.JSONSchema")
	}
	var v map[string]any
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v["$schema"] == nil || v["properties"] == nil {
		t.Fatalf("schema is not a JSON Schema document: %v", err)
	}
	f := filepath.Join(t.TempDir(), "s.json")
	if code := run([]string{"schema", "-o", f}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("schema -o: exit %d", code)
	}
	if b, _ := os.ReadFile(f); !bytes.Equal(b, config.JSONSchema) {
		t.Fatal("schema -o wrote something else")
	}
}
