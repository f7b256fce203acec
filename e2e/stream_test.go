package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const gib = 1 << 30

// buildVerge compiles cmd/verge once per test binary run.
func buildVerge(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "verge")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/verge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building verge: %v\n%s", err, out)
	}
	return bin
}

// peakRSS reads the high-water mark of a process's resident memory, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A 1 GiB upload and a 1 GiB download pass through the verge binary while its peak RSS stays
// under 64 MiB: bodies stream with backpressure instead of being buffered.
func TestGiBStreamsWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 2 GiB")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	uploaded := make(chan int64, 1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET":
			w.Header().Set("Content-Length", strconv.Itoa(gib))
			io.CopyN(w, zeros{}, gib)
		case "POST":
			n, _ := io.Copy(io.Discard, r.Body)
			uploaded <- n
			fmt.Fprint(w, n)
		}
	}))
	defer origin.Close()

	bin := buildVerge(t)
	addr, pid := startProxy(t, bin, "--upstream", origin.URL)

	client := &http.Client{Timeout: 120 * time.Second}
	resp, err := client.Get("http://" + addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != gib {
		t.Fatalf("download: %d bytes, err %v; want %d", n, err, gib)
	}

	// Chunked upload (unknown length) exercises the chunked codec both ways.
	pr, pw := io.Pipe()
	go func() { io.CopyN(pw, zeros{}, gib); pw.Close() }()
	resp, err = client.Post("http://"+addr+"/up", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := <-uploaded; got != gib {
		t.Fatalf("origin received %d bytes, want %d", got, gib)
	}

	rss := peakRSS(t, pid)
	t.Logf("verge peak RSS after 2 GiB streamed: %.1f MiB", float64(rss)/(1<<20))
	if rss > 64<<20 {
		t.Fatalf("peak RSS %d MiB, want < 64 MiB", rss>>20)
	}
}

// startProxy runs `verge proxy` on a port it picks itself (127.0.0.1:0: no port the test
// picked and freed for another process on the machine to take) and returns the address from
// its "listening" log line, the readiness event, and the process id. The process is killed
// when t ends.
func startProxy(t *testing.T, bin string, args ...string) (addr string, pid int) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "stderr")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"proxy", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("verge stderr:\n%s", b)
		}
	})
	const prefix = "msg=listening listener=proxy url=http://"
	guard := time.Now().Add(30 * time.Second) // a failure guard for a busy machine
	for {
		b, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(b), "\n") {
			if _, rest, ok := strings.Cut(line, prefix); ok {
				addr, _, _ = strings.Cut(rest, " ")
				return addr, cmd.Process.Pid
			}
		}
		if time.Now().After(guard) {
			t.Fatalf("verge proxy did not log its listener:\n%s", b)
		}
		select {
		case <-exited:
			t.Fatalf("verge proxy exited before listening:\n%s", b)
		case <-time.After(10 * time.Millisecond): // poll interval
		}
	}
}
