package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// TestContainersStreamedBody POSTs 64 MiB through `verge run` serving
// examples/workers/containers with Podman: the front worker passes the request to the
// object, which passes it to its container's /sha256; the host streams the body both
// times, so the container gets every byte in order and verge's peak RSS grows by far less
// than the body (buffered, it would hold the whole body at least once).
func TestContainersStreamedBody(t *testing.T) {
	needPodman(t)
	module := testwasm.BuildFile(t, "examples/workers/containers")
	data := filepath.Join(t.TempDir(), "data")
	removeOwnedContainers(t, containerOwner(t, data))
	p := startContainersVerge(t, data, module)
	c := &http.Client{Timeout: 120 * time.Second}
	post := func(size int64) string {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+p.addr+"/app/big/sha256", &patternReader{left: size})
		req.ContentLength = size
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST of %d bytes: %v", size, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST of %d bytes: %d %q %v", size, resp.StatusCode, b, err)
		}
		return string(b)
	}
	want := func(size int64) string {
		h := sha256.New()
		io.Copy(h, &patternReader{left: size})
		return fmt.Sprintf("%d %s\n", size, hex.EncodeToString(h.Sum(nil)))
	}
	// Warm up (starts the container, grows the pools to their working size).
	if got := post(1 << 20); got != want(1<<20) {
		t.Fatalf("1 MiB: %q, want %q", got, want(1<<20))
	}
	pid := p.cmd.Process.Pid
	resetPeak(t, pid)
	base := procMem(t, pid, "VmRSS")
	const size = 64 << 20
	start := time.Now()
	if got := post(size); got != want(size) {
		t.Fatalf("64 MiB: %q, want %q", got, want(size))
	}
	took := time.Since(start)
	peak := procMem(t, pid, "VmHWM")
	t.Logf("64 MiB through the worker, the object and the container in %v (%.0f MB/s); verge's RSS %d MiB, peak %d MiB",
		took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6, base>>20, peak>>20)
	if peak-base > size/2 {
		t.Fatalf("verge's peak RSS grew by %d MiB for a %d MiB body: it was buffered", (peak-base)>>20, size>>20)
	}
}
