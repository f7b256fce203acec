package containers_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge/containers"
)

// TestPodmanClientDiesWithVerge kills -9 a process that started a `podman run` (a fake
// podman that never creates a container, as one still pulling the image) and checks that the
// client dies with it: left running, it would create its container after the next Verge
// removed the orphans.
func TestPodmanClientDiesWithVerge(t *testing.T) {
	if os.Getenv("VERGE_TEST_PODMAN_CLIENT") != "" {
		podmanClientHelper()
		return
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "podman")
	pidFile := filepath.Join(dir, "pid")
	os.WriteFile(fake, []byte("#!/bin/sh\necho $$ > \"$FAKE_PODMAN_PID\"\nexec sleep 600\n"), 0o755)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPodmanClientDiesWithVerge$")
	cmd.Env = append(os.Environ(), "VERGE_TEST_PODMAN_CLIENT="+fake, "FAKE_PODMAN_PID="+pidFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "started\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	var pid int
	waitFor(t, "the fake podman to write its pid", func() bool {
		b, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, "the podman client to die with its parent", func() bool { return !alive(pid) })
}

// podmanClientHelper starts a `podman run` with the fake podman and waits to be killed.
func podmanClientHelper() {
	p := &containers.Podman{Path: os.Getenv("VERGE_TEST_PODMAN_CLIENT")}
	_, err := p.Start(context.Background(), &containers.Spec{Name: "x", Image: "img", Port: 1, HostPort: 1})
	if err != nil {
		os.Stdout.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("started\n")
	select {}
}

// alive tells whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitFor polls cond every 10ms for up to 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
