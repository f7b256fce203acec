package clustered

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/cron"
)

type fakeClock struct{ t atomic.Pointer[time.Time] }

func (c *fakeClock) set(t time.Time) { c.t.Store(&t) }
func (c *fakeClock) now() time.Time  { return *c.t.Load() }
func at(hour, min int) time.Time     { return time.Date(2026, 12, 2, hour, min, 0, 0, time.UTC) }

type recorder struct {
	mu  sync.Mutex
	evs []cron.Event
}

func (r *recorder) fire(_ context.Context, ev cron.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func (r *recorder) take() []cron.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

func waitRuns(t *testing.T, s *cron.Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSchedulerClusterFiresOnce runs a scheduler on each node of a 3-node cluster, all at
// the same (fake) time: each slot runs on exactly one node.
func TestSchedulerClusterFiresOnce(t *testing.T) {
	c := clustertest.Start(t, 3)
	clk := &fakeClock{}
	clk.set(at(12, 0).Add(30 * time.Second))
	rec := &recorder{}
	var ss []*cron.Scheduler
	for _, n := range c.Nodes {
		s := cron.New(cron.Options{Claims: New(n), Fire: rec.fire, Now: clk.now, ClaimTimeout: 30 * time.Second})
		if err := s.Set([]cron.Trigger{{Worker: "w", Cron: "* * * * *"}}); err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		ss = append(ss, s)
	}
	runAll := func() {
		var wg sync.WaitGroup
		for _, s := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.RunDue(context.Background())
			}()
		}
		wg.Wait()
		for _, s := range ss {
			waitRuns(t, s)
		}
	}
	runAll() // first sight: nothing fired yet anywhere
	if evs := rec.take(); len(evs) != 0 {
		t.Fatalf("fired %v before the first slot", evs)
	}
	const slots = 5
	for m := 1; m <= slots; m++ {
		clk.set(at(12, m).Add(time.Duration(m) * time.Second))
		runAll()
		evs := rec.take()
		if len(evs) != 1 || !evs[0].Time.Equal(at(12, m)) {
			t.Fatalf("slot 12:%02d fired %v, want once", m, evs)
		}
	}
	var fired, skipped uint64
	for _, s := range ss {
		for _, st := range s.Stats() {
			fired += st.Fired
			skipped += st.Skipped
			if st.Failed != 0 {
				t.Fatalf("failures: %+v", st)
			}
		}
	}
	if fired != slots || skipped != 2*slots {
		t.Fatalf("fired %d, skipped %d; want %d and %d", fired, skipped, slots, 2*slots)
	}
	// A node that restarts catches up on nothing: the latest slot was claimed.
	s := cron.New(cron.Options{Claims: New(c.Nodes[0]), Fire: rec.fire, Now: clk.now})
	defer s.Close(context.Background())
	if err := s.Set([]cron.Trigger{{Worker: "w", Cron: "* * * * *"}}); err != nil {
		t.Fatal(err)
	}
	s.RunDue(context.Background())
	waitRuns(t, s)
	if evs := rec.take(); len(evs) != 0 {
		t.Fatalf("restart fired %v", evs)
	}
}
