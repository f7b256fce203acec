package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// objectAnswer is worker/testdata/objects' answer: the object's in-memory count, its stored
// count and the instance hosting it.
type objectAnswer struct {
	mem, stored int
	instance    string
}

func hitObjectAt(t *testing.T, c *http.Client, addr, name, action string) objectAnswer {
	t.Helper()
	code, body, err := doRequest(c, addr, "GET", "/o/"+name+"/"+action, "")
	if err != nil || code != 200 {
		t.Fatalf("%s/%s: %d %q %v", name, action, code, body, err)
	}
	var a objectAnswer
	if _, err := fmt.Sscanf(body, "mem=%d stored=%d instance=%s", &a.mem, &a.stored, &a.instance); err != nil {
		t.Fatalf("%s/%s: answer %q: %v", name, action, body, err)
	}
	return a
}

// checkSharedObjects drives ten objects through a server at addr: they share instances of
// per objects each (their answers name the instance), each keeps its own in-memory count,
// and after one of them crashes its instance, the others living there restart from storage
// with their stored counts intact. It returns how many instances hosted the ten.
func checkSharedObjects(t *testing.T, addr string, per int) int {
	c := &http.Client{Timeout: 20 * time.Second}
	hosts := map[string][]string{}
	for round := 1; round <= 2; round++ {
		for i := range 10 {
			name := fmt.Sprint("e", i)
			a := hitObjectAt(t, c, addr, name, "hit")
			if a.mem != round || a.stored != round {
				t.Fatalf("%s round %d: %+v, want mem and stored %d", name, round, a, round)
			}
			if round == 1 {
				hosts[a.instance] = append(hosts[a.instance], name)
			}
		}
	}
	if want := (10 + per - 1) / per; len(hosts) != want {
		t.Fatalf("ten objects in %d instances (%v), want %d", len(hosts), hosts, want)
	}
	if code, _, _ := doRequest(c, addr, "GET", "/o/e0/crash", ""); code != 502 {
		t.Fatalf("crash: status %d, want 502", code)
	}
	lost := ""
	for inst, names := range hosts {
		for _, n := range names {
			if n == "e0" {
				lost = inst
			}
		}
	}
	for inst, names := range hosts {
		for _, n := range names {
			a := hitObjectAt(t, c, addr, n, "hit")
			if inst == lost && (a.mem != 1 || a.instance == lost) || inst != lost && a.mem != 3 || a.stored != 3 {
				t.Fatalf("%s after e0 crashed its instance: %+v (it lived in %s, the lost one is %s)", n, a, inst, lost)
			}
		}
	}
	return len(hosts)
}

// TestRunObjectsShareInstances runs the objects test worker behind a worker route of `verge
// run` with limits.objects_per_instance: 4, and reads the instances from /metrics.
func TestRunObjectsShareInstances(t *testing.T) {
	mod := testwasm.BuildFile(t, "worker/testdata/objects")
	adminAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
routes: [{name: o, worker: objects}]
workers:
  - name: objects
    module: %q
    durable_objects: [{binding: MEM, class: Mem}]
    limits: {objects_per_instance: 4, cpu_time: 10s}
`, p.addr, adminAddr, p.pidFile, filepath.Join(p.dir, "data"), mod)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		code, _, _ := doRequest(c, p.addr, "GET", "/o/warm/peek", "")
		return code == 200
	})
	if n := checkSharedObjects(t, p.addr, 4); n != 3 {
		t.Fatalf("%d instances", n)
	}
	m := workerSeries(t, adminAddr, "objects")
	// Eleven objects (warm and e0..e9) live: warm, e0 and the others of the lost instance
	// moved to new ones. Instances are fewer than objects.
	live, inst := m["verge_worker_durable_objects"], m["verge_worker_object_instances"]
	if live != 11 || inst < 3 || inst > 5 {
		t.Fatalf("metrics: %v live objects in %v instances, want 11 in 3..5", live, inst)
	}
}

// workerSeries returns the verge_worker_* gauges of worker name from /metrics, by name.
func workerSeries(t *testing.T, adminAddr, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := map[string]float64{}
	suffix := `{worker="` + name + `"}`
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasSuffix(f[0], suffix) {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[strings.TrimSuffix(f[0], suffix)] = v
		}
	}
	return out
}

// TestDevObjectsShareInstances: `verge dev` on the objects test worker, with the default of
// 16 objects per instance: ten objects share one instance.
func TestDevObjectsShareInstances(t *testing.T) {
	dir := filepath.Join(testwasm.Root(), "worker", "testdata", "objects")
	p := startDev(t, t.TempDir(), dir)
	if n := checkSharedObjects(t, p.addr, 16); n != 1 {
		t.Fatalf("%d instances", n)
	}
}
