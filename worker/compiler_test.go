//go:build linux

package worker_test

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/verge-edge/verge/worker"
)

// TestCompilerUnavailableWarns reproduces systemd's MemoryDenyWriteExecute=true, under which
// wazero silently interprets workers about 40 times slower: in a child process that may not
// make memory executable (prctl PR_SET_MDWE, what the systemd setting applies), the first
// registry logs one warning naming the cause and the setting, and workers still serve.
func TestCompilerUnavailableWarns(t *testing.T) {
	if os.Getenv("VERGE_TEST_MDWE") == "1" {
		compilerUnavailableChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCompilerUnavailableWarns$", "-test.v")
	cmd.Env = append(os.Environ(), "VERGE_TEST_MDWE=1")
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "--- SKIP") {
		t.Skipf("child skipped:\n%s", out)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCompilerUnavailableWarns") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func compilerUnavailableChild(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_MDWE, unix.PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0); err != nil {
		t.Skipf("prctl(PR_SET_MDWE) not supported: %v", err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e := newEnv(t, t.TempDir(), worker.Services{Logger: log})
	newEnv(t, t.TempDir(), worker.Services{Logger: log}) // a second registry: no second warning
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{CPUTime: 10e9}))
	rec, err := serve(t, w, "GET", "/", "")
	if err != nil {
		t.Fatal(err)
	}
	rec.check(t, 200, "ok 0")
	got := logs.String()
	if n := strings.Count(got, "WebAssembly compiler unavailable"); n != 1 || !strings.Contains(got, "MemoryDenyWriteExecute") {
		t.Fatalf("got %d warnings, want one naming MemoryDenyWriteExecute; logs:\n%s", n, got)
	}
	t.Logf("warning: %s", got[:strings.IndexByte(got, '\n')])
}
