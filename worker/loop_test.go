package worker_test

import (
	"errors"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/worker"
)

// TestLoopingWorkerDoesNotFreezeTheProcess runs a worker looping forever on one P while
// other goroutines collect garbage and wait on timers. Compiled guest code is not
// preemptible, so without the guest's periodic yields the timers would not run (one P) and
// a collection's stop-the-world would wait forever for the guest's goroutine, while the
// limit timer that would stop it cannot fire: the whole process would hang.
func TestLoopingWorkerDoesNotFreezeTheProcess(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const cpu = 200 * time.Millisecond
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{CPUTime: cpu, WallTime: 10 * time.Second, Memory: 64 << 20}))

	var ticks atomic.Int64
	var sink atomic.Pointer[[]byte]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // garbage: collections start by themselves, each with two stops of the world
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b := make([]byte, 256<<10)
			sink.Store(&b)
			if i%16 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	go func() { // timers: what other requests, deadlines and the limits themselves rely on
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ticks.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})

	time.Sleep(20 * time.Millisecond)
	cycles0, ticks0 := gcCycles(), ticks.Load()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := serve(t, w, "GET", "/loop", "")
		done <- err
	}()
	// An explicit collection while the guest loops: it must stop the guest's goroutine.
	gcDone := make(chan struct{})
	go func() {
		time.Sleep(cpu / 4)
		runtime.GC()
		close(gcDone)
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("looping worker not stopped after 10s")
	}
	took := time.Since(start)
	cycles, ticksDuring := gcCycles()-cycles0, ticks.Load()-ticks0
	var we *worker.Error
	if !errors.As(err, &we) || we.Kind != worker.CPULimit {
		t.Fatalf("got %v, want a CPU limit error", err)
	}
	// The guest's CPU time cannot exceed the wall time; how much longer than the limit the
	// wall time is depends on how much of the one P and the machine the guest got.
	if took < cpu {
		t.Errorf("stopped after %v, before the %v CPU limit", took, cpu)
	}
	t.Logf("stopped after %v (limit %v); meanwhile %d collections and %d ticks of 5ms", took, cpu, cycles, ticksDuring)
	if cycles < 1 || ticksDuring < int64(cpu/(5*time.Millisecond))/4 {
		t.Errorf("while the guest looped: %d collections, %d ticks; want the other goroutines to keep running", cycles, ticksDuring)
	}
	select {
	case <-gcDone:
	case <-time.After(10 * time.Second):
		t.Fatal("runtime.GC not done 10s after the loop")
	}
	rec, err := serve(t, w, "GET", "/", "")
	if err != nil {
		t.Fatalf("request after the loop: %v", err)
	}
	rec.check(t, 200, "ok 0")
}

// gcCycles returns the number of completed garbage collections, without stopping the world.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
