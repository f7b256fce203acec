package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/verge-edge/verge/worker"
)

// TestStatsCountInvocationsErrorsAndObjects runs requests, failures and a Durable Object
// through a registry and checks what Registry.Stats (the /metrics source) reports.
func TestStatsCountInvocationsErrorsAndObjects(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{CPUTime: time.Second, WallTime: 5 * time.Second, Memory: 64 << 20}))
	if _, err := serve(t, w, "GET", "/panic", ""); err == nil {
		t.Fatal("/panic succeeded")
	}
	if _, err := serve(t, w, "GET", "/exit", ""); err == nil {
		t.Fatal("/exit succeeded")
	}
	const ok = 5
	for range ok {
		if rec, err := serve(t, w, "GET", "/spin?n=100000", ""); err != nil || rec.status != 200 {
			t.Fatalf("spin: %v %v", rec, err)
		}
	}
	all := e.reg.Stats()
	if len(all) != 1 || all[0].Worker != "misbehave" {
		t.Fatalf("stats of %d workers: %+v", len(all), all)
	}
	st := all[0]
	if got, want := st.Invocations["fetch"], uint64(ok+2); got != want {
		t.Errorf("fetch invocations = %d, want %d", got, want)
	}
	if got := st.Invocations["object"] + st.Invocations["alarm"]; got != 0 {
		t.Errorf("object and alarm invocations = %d, want 0", got)
	}
	if got := st.Errors["crashed"]; got != 2 {
		t.Errorf("crashed errors = %d, want 2", got)
	}
	for _, k := range []string{"cpu_limit", "wall_limit", "no_response", "overloaded", "unavailable", "memory_limit"} {
		if n, present := st.Errors[k]; !present || n != 0 {
			t.Errorf("errors[%s] = %d (present %v), want 0 and present", k, n, present)
		}
	}
	if st.CPU <= 0 {
		t.Errorf("CPU = %v, want > 0", st.CPU)
	}
	// Failed instances were discarded; the one of the good requests is pooled.
	if st.IdleInstances < 1 || st.BusyInstances != 0 {
		t.Errorf("instances idle %d busy %d, want >= 1 and 0", st.IdleInstances, st.BusyInstances)
	}
	if st.Memory <= 0 {
		t.Errorf("memory = %d, want > 0", st.Memory)
	}

	// A CPU limit is its own kind.
	w2 := e.deploy(t, func() worker.Config {
		c := misbehaveConfig(t, worker.Limits{CPUTime: 20 * time.Millisecond, WallTime: 10 * time.Second})
		c.Name = "looper"
		return c
	}())
	if _, err := serve(t, w2, "GET", "/loop", ""); err == nil {
		t.Fatal("/loop succeeded")
	}
	if st := w2.Stats(); st.Errors["cpu_limit"] != 1 || st.Invocations["fetch"] != 1 {
		t.Errorf("looper: errors %v invocations %v, want one cpu_limit of one fetch", st.Errors, st.Invocations)
	}
}

// TestStatsCountLiveObjectsAndEvictions checks the Durable Object figures: a live object,
// its invocation, and its eviction when the worker is removed.
func TestStatsCountLiveObjectsAndEvictions(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, counterConfig(t))
	for _, name := range []string{"a", "b", "a"} {
		if rec, err := serve(t, w, "GET", "/counter/"+name, ""); err != nil || rec.status != 200 {
			t.Fatalf("counter %s: %v %v", name, rec, err)
		}
	}
	st := w.Stats()
	if st.LiveObjects != 2 {
		t.Errorf("live objects = %d, want 2", st.LiveObjects)
	}
	if st.Invocations["fetch"] != 3 || st.Invocations["object"] != 3 {
		t.Errorf("invocations = %v, want 3 fetch and 3 object", st.Invocations)
	}
	if st.Evictions != 0 {
		t.Errorf("evictions = %d before any", st.Evictions)
	}
	if err := e.reg.Remove(context.Background(), "counter"); err != nil {
		t.Fatal(err)
	}
	st = w.Stats()
	if st.LiveObjects != 0 || st.Evictions != 2 {
		t.Errorf("after removal: live %d evictions %d, want 0 and 2", st.LiveObjects, st.Evictions)
	}
	if n := len(e.reg.Stats()); n != 0 {
		t.Errorf("registry stats list %d workers after removal", n)
	}
}
