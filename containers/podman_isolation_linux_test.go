package containers_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/containers"
)

// TestPodmanIsolation runs one instance for each of two owners (two Verges on one host) and
// checks what Podman was asked for is what the kernel enforces: the memory and CPU caps in
// the container's cgroup, its port reachable on 127.0.0.1 only; then that the next Manager
// of the first owner removes its orphan and leaves the other owner's container running.
func TestPodmanIsolation(t *testing.T) {
	p := podman(t)
	const image = "localhost/verge-containers-test:1"
	buildImage(t, p, image)
	ctx := context.Background()
	ownerA, ownerB := fmt.Sprintf("iso-a-%d", os.Getpid()), fmt.Sprintf("iso-b-%d", os.Getpid())
	cleanupOwner(t, p, ownerA)
	cleanupOwner(t, p, ownerB)
	cfg := []containers.ClassConfig{{Class: "C", Image: image, Port: 8080, Memory: 64 << 20, CPU: 0.5}}
	newManager := func(owner string) *containers.Manager {
		m, err := containers.New(containers.Options{Driver: p, Owner: owner, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetClasses("w", cfg); err != nil {
			t.Fatal(err)
		}
		return m
	}
	mA, mB := newManager(ownerA), newManager(ownerB)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		mB.Close(cctx)
	})
	get(t, mA, "w", "C", "x", "/")
	get(t, mB, "w", "C", "x", "/")

	names, err := p.Running(ctx, ownerB)
	if err != nil || len(names) != 1 {
		t.Fatalf("owner B: containers %v (%v), want one", names, err)
	}
	out, err := exec.Command("podman", append(globalArgs(p), "inspect", "--format", "{{.State.Pid}}", names[0])...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman inspect: %v\n%s", err, out)
	}
	pid := strings.TrimSpace(string(out))
	if mem := cgroupValue(t, pid, "memory", "memory.limit_in_bytes", "memory.max"); mem != strconv.Itoa(64<<20) {
		t.Errorf("memory limit %q, want %d", mem, 64<<20)
	}
	if v1 := cgroupValue(t, pid, "cpu", "cpu.cfs_quota_us", ""); v1 != "" {
		period := cgroupValue(t, pid, "cpu", "cpu.cfs_period_us", "")
		q, _ := strconv.Atoi(v1)
		per, _ := strconv.Atoi(period)
		if per == 0 || q*2 != per {
			t.Errorf("cpu quota %s per %s, want half", v1, period)
		}
	} else if v2 := cgroupValue(t, pid, "", "", "cpu.max"); v2 != "50000 100000" {
		t.Errorf("cpu.max %q, want 50000 100000", v2)
	}

	// The port answers on 127.0.0.1 and on no other address of the host.
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	addr, release, err := mB.Acquire(actx, "w", "C", "x")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	release()
	if ip := otherAddress(); ip != "" {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("the instance's port %s accepts connections on %s", port, ip)
		}
	} else {
		t.Log("no non-loopback address to check the port against")
	}

	// A's Manager is gone without Close (kill -9); its next one removes A's container
	// only.
	mA2, err := containers.New(containers.Options{Driver: p, Owner: ownerA, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := mA2.RemoveOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if names, err := p.Running(ctx, ownerA); err != nil || len(names) != 0 {
		t.Fatalf("owner A after its next start: containers %v (%v), want none", names, err)
	}
	if names, err := p.Running(ctx, ownerB); err != nil || len(names) != 1 {
		t.Fatalf("owner B after A's next start: containers %v (%v), want its one", names, err)
	}
	if got, want := get(t, mB, "w", "C", "x", "/"), "hello from  args=[]\n"; got != want {
		t.Fatalf("owner B's instance: got %q, want %q", got, want)
	}
}

// cgroupValue reads a file of pid's cgroup: v1file under the v1 controller's hierarchy, or
// v2file under the unified one; "" when there is no such file.
func cgroupValue(t *testing.T, pid, controller, v1file, v2file string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var file string
		switch {
		case f[0] == "0" && f[1] == "" && v2file != "":
			file = filepath.Join("/sys/fs/cgroup", f[2], v2file)
		case controller != "" && v1file != "" && hasController(f[1], controller):
			file = filepath.Join("/sys/fs/cgroup", f[1], f[2], v1file)
		default:
			continue
		}
		if v, err := os.ReadFile(file); err == nil {
			return strings.TrimSpace(string(v))
		}
	}
	return ""
}

func hasController(list, c string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == c {
			return true
		}
	}
	return false
}

// otherAddress returns an IPv4 address of the host that is not loopback, or "".
func otherAddress() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}
