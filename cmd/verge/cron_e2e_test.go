package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/internal/testwasm"
)

// cronLog is examples/workers/cron's answer to GET /.
type cronLog struct {
	Runs     int            `json:"runs"`
	Slots    map[string]int `json:"slots"`
	LastCron string         `json:"last_cron"`
}

func readCronLog(t *testing.T, addr string) (cronLog, error) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		return cronLog{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var l cronLog
	if resp.StatusCode != 200 {
		return l, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return l, json.Unmarshal(b, &l)
}

// TestDevTestScheduled runs the cron example under `verge dev --test-scheduled`: GET
// /__scheduled runs the scheduled handler with the given cron and time.
func TestDevTestScheduled(t *testing.T) {
	p := startDev(t, t.TempDir(), filepath.Join(testwasm.Root(), "examples", "workers", "cron"), "--test-scheduled")
	c := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (int, string) {
		resp, err := c.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, p.stderr)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/__scheduled?cron=" + url.QueryEscape("*/5 * * * *") + "&time=2026-12-02T12:05:00Z")
	if code != 200 || !strings.Contains(body, `ran scheduled event: cron "*/5 * * * *" at 2026-12-02T12:05:00Z`) {
		t.Fatalf("/__scheduled: %d %q\n%s", code, body, p.stderr)
	}
	// Without cron=, the default expression; in dev every request runs the handler.
	if code, body := get("/__scheduled?time=2026-12-02T12:05:00Z"); code != 200 {
		t.Fatalf("/__scheduled without cron: %d %q", code, body)
	}
	if code, body := get("/__scheduled?cron=" + url.QueryEscape("61 * * * *")); code != 400 || !strings.Contains(body, "out of range") {
		t.Fatalf("/__scheduled with a bad cron: %d %q", code, body)
	}
	l, err := readCronLog(t, p.addr)
	if err != nil {
		t.Fatal(err)
	}
	if l.Runs != 2 || l.Slots["2026-12-02T12:05:00Z"] != 2 || l.LastCron != "* * * * *" {
		t.Fatalf("log after two test runs: %+v", l)
	}
}

// cronConfig is a config serving examples/workers/cron; cluster is the cluster section or
// "". Its triggers fire on 1 January and 1 July: the tests' own slots are the past ones,
// and the scheduler's timer does not fire while they run (short of a test across New
// Year's or 1 July's midnight).
func cronConfig(addr, adminAddr, dir, module, cluster string) string {
	return fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
routes: [{name: w, worker: cron}]
workers:
  - name: cron
    module: %q
    durable_objects: [{binding: LOG, class: RunLog}]
    triggers: {crons: ["0 0 1 1 *", "0 0 1 7 *"]}
    limits: {cpu_time: 10s}
%s`, addr, adminAddr, filepath.Join(dir, "verge.pid"), filepath.Join(dir, "data"), module, cluster)
}

// runSlot fires a slot through the admin API of n.
func runSlot(t *testing.T, n *clusterNode, cron, at string) (admin.ScheduledRun, int, string) {
	t.Helper()
	body, _ := json.Marshal(admin.ScheduledRequest{Cron: cron, Time: at})
	code, b := n.api("POST", "/workers/cron/scheduled", "application/json", body)
	var r admin.ScheduledRun
	if code == 200 {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("scheduled answer %s: %v", b, err)
		}
	}
	return r, code, string(b)
}

// waitCronServing waits until n's worker answers GET /.
func waitCronServing(t *testing.T, n *clusterNode) {
	t.Helper()
	waitFor(t, n.name+" to serve the cron worker", 90*time.Second, func() bool {
		_, err := readCronLog(t, n.addr)
		if err != nil {
			return false
		}
		code, _ := n.api("GET", "/healthz", "", nil)
		return code == 200
	})
}

// waitRuns waits until the log of the worker behind n shows runs runs.
func waitRuns(t *testing.T, n *clusterNode, runs int) cronLog {
	t.Helper()
	var l cronLog
	waitFor(t, fmt.Sprintf("%d scheduled runs to be recorded", runs), 60*time.Second, func() bool {
		var err error
		l, err = readCronLog(t, n.addr)
		return err == nil && l.Runs >= runs
	})
	return l
}

// TestRunCronSlotOnceAcrossRestarts fires slots through the admin API of `verge run`: a slot
// runs once, however often it is asked for; after a restart, the latest slot missed while
// down (this year's 1 January, later than the one fired by hand) runs once by itself, and
// a later restart runs nothing again. The verge_worker_cron_* metrics count the slots.
func TestRunCronSlotOnceAcrossRestarts(t *testing.T) {
	module := testwasm.BuildFile(t, "examples/workers/cron")
	dir := t.TempDir()
	n := &clusterNode{t: t, name: "single", dir: dir, cfgFile: filepath.Join(dir, "verge.yaml"),
		addr: freePort(t), admin: freePort(t), stderr: newLogFile(t)}
	if err := os.WriteFile(n.cfgFile, []byte(cronConfig(n.addr, n.admin, dir, module, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("stderr:\n%s", n.stderr)
		}
	})
	n.start()
	waitCronServing(t, n)
	const jan, jul = "0 0 1 1 *", "0 0 1 7 *"
	lastJan := time.Date(time.Now().UTC().Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	earlier := lastJan.AddDate(-1, 5, 0) // June of the year before: its slot is the 1 January before
	r, code, body := runSlot(t, n, jan, earlier.Format(time.RFC3339))
	if code != 200 || !r.Fired || !r.Slot.Equal(lastJan.AddDate(-1, 0, 0)) {
		t.Fatalf("first run: %d %s", code, body)
	}
	if r, code, body := runSlot(t, n, jan, earlier.Format(time.RFC3339)); code != 200 || r.Fired {
		t.Fatalf("the same slot again: %d %s, want fired false", code, body)
	}
	if _, code, body := runSlot(t, n, "* * * * *", ""); code != 404 || !strings.Contains(body, "no cron trigger") {
		t.Fatalf("a cron the worker does not have: %d %s", code, body)
	}
	if _, code, body := runSlot(t, n, jan, lastJan.AddDate(2, 0, 0).Format(time.RFC3339)); code != 400 || !strings.Contains(body, "future") {
		t.Fatalf("a slot in the future: %d %s", code, body)
	}
	waitRuns(t, n, 1)

	// Restart: this year's 1 January, missed "while down", runs once by itself.
	n.stop()
	n.start()
	waitCronServing(t, n)
	l := waitRuns(t, n, 2)
	if r, code, body := runSlot(t, n, jan, ""); code != 200 || r.Fired || !r.Slot.Equal(lastJan) {
		t.Fatalf("this year's slot after the catch-up: %d %s, want fired false", code, body)
	}
	// Restart again: nothing to catch up. The other trigger runs on request, and then the
	// log shows every slot once.
	n.stop()
	n.start()
	waitCronServing(t, n)
	if r, code, body := runSlot(t, n, jul, "2025-08-01T00:00:00Z"); code != 200 || !r.Fired {
		t.Fatalf("the other trigger: %d %s", code, body)
	}
	l = waitRuns(t, n, 3)
	for _, slot := range []time.Time{lastJan.AddDate(-1, 0, 0), lastJan, time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)} {
		if got := l.Slots[slot.Format(time.RFC3339)]; got != 1 {
			t.Fatalf("log %+v: slot %s ran %d times, want once", l, slot.Format(time.RFC3339), got)
		}
	}
	if l.Runs != 3 {
		t.Fatalf("log %+v: %d runs, want 3", l, l.Runs)
	}
	code, b := n.api("GET", "/metrics", "", nil)
	m := string(b)
	if code != 200 || !strings.Contains(m, `verge_worker_cron_fired_total{worker="cron"} 1`) || !strings.Contains(m, `verge_worker_cron_failed_total{worker="cron"} 0`) ||
		!strings.Contains(m, `verge_worker_invocations_total{kind="scheduled",worker="cron"} 1`) {
		t.Fatalf("metrics after the last restart:\n%s", grepLines(m, "cron"))
	}
}

// TestClusterCronSlotOnce starts a three-node cluster serving the cron example and asks
// every node at once to run the same slot: exactly one runs it.
func TestClusterCronSlotOnce(t *testing.T) {
	module := testwasm.BuildFile(t, "examples/workers/cron")
	ports := make([]string, 0, 12)
	for range 12 {
		ports = append(ports, freePort(t))
	}
	routes := ports[9:12]
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		dir := t.TempDir()
		n := &clusterNode{t: t, name: fmt.Sprintf("n%d", i+1), dir: dir, cfgFile: filepath.Join(dir, "verge.yaml"),
			addr: ports[3*i], admin: ports[3*i+1], nats: ports[3*i+2], stderr: newLogFile(t)}
		cl := fmt.Sprintf(`cluster:
  node: %s
  embedded:
    listen: %q
    cluster_listen: %q
    routes: [%s]
`, n.name, n.nats, routes[i], strings.Join(routes, ", "))
		if err := os.WriteFile(n.cfgFile, []byte(cronConfig(n.addr, n.admin, dir, module, cl)), 0o644); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop()
			if t.Failed() {
				t.Logf("%s stderr:\n%s", n.name, n.stderr.String())
			}
		}
	})
	for _, n := range nodes {
		n.start()
	}
	for _, n := range nodes {
		waitCronServing(t, n)
	}
	// Slots of years past: nodes that never fired the trigger catch nothing up at start.
	const expr = "0 0 1 1 *"
	slots := []string{"2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"}
	for i, slot := range slots {
		var wg sync.WaitGroup
		var mu sync.Mutex
		fired := 0
		var answers []string
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body, _ := json.Marshal(admin.ScheduledRequest{Cron: expr, Time: slot})
				code, b := n.api("POST", "/workers/cron/scheduled", "application/json", body)
				var r admin.ScheduledRun
				json.Unmarshal(b, &r)
				mu.Lock()
				defer mu.Unlock()
				answers = append(answers, fmt.Sprintf("%s: %d %s", n.name, code, b))
				if code == 200 && r.Fired {
					fired++
				}
			}()
		}
		wg.Wait()
		if fired != 1 {
			t.Fatalf("slot %s: %d nodes ran it, want 1:\n%s", slot, fired, strings.Join(answers, "\n"))
		}
		waitRuns(t, nodes[i%3], i+1)
	}
	l := waitRuns(t, nodes[0], len(slots))
	for _, s := range slots {
		if l.Slots[s] != 1 {
			t.Fatalf("log %+v: slot %s ran %d times, want once", l, s, l.Slots[s])
		}
	}
	if l.Runs != len(slots) {
		t.Fatalf("log %+v: %d runs, want %d", l, l.Runs, len(slots))
	}
}
