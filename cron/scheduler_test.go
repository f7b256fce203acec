package cron

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ t atomic.Pointer[time.Time] }

func (c *fakeClock) set(t time.Time) { c.t.Store(&t) }
func (c *fakeClock) now() time.Time  { return *c.t.Load() }
func at(hour, min int) time.Time     { return time.Date(2026, 12, 2, hour, min, 0, 0, time.UTC) }
func waitRuns(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// recorder collects fired events.
type recorder struct {
	mu  sync.Mutex
	evs []Event
	err error
}

func (r *recorder) fire(_ context.Context, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return r.err
}

func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

func newFileScheduler(t *testing.T, path string, clk *fakeClock, rec *recorder) *Scheduler {
	t.Helper()
	s := New(Options{Claims: NewFileClaims(path), Fire: rec.fire, Now: clk.now})
	if err := s.Set([]Trigger{{Worker: "w", Cron: "*/5 * * * *"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func expectSlots(t *testing.T, got []Event, want ...time.Time) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("fired %v, want slots %v", got, want)
	}
	for i := range want {
		if !got[i].Time.Equal(want[i]) || got[i].Worker != "w" || got[i].Cron != "*/5 * * * *" {
			t.Fatalf("fired %+v, want slot %s", got[i], want[i])
		}
	}
}

func TestSchedulerSingleNodeRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cron", "state.json")
	clk := &fakeClock{}
	rec := &recorder{}
	ctx := context.Background()

	clk.set(at(12, 3))
	s := newFileScheduler(t, path, clk, rec)
	if next := s.RunDue(ctx); !next.Equal(at(12, 5)) {
		t.Fatalf("next = %s, want 12:05", next)
	}
	waitRuns(t, s)
	expectSlots(t, rec.take()) // never fired before: waits for its next slot

	clk.set(at(12, 5).Add(2 * time.Second))
	s.RunDue(ctx)
	s.RunDue(ctx) // the same slot again: nothing
	waitRuns(t, s)
	expectSlots(t, rec.take(), at(12, 5))

	// A restart within the same slot period fires nothing.
	clk.set(at(12, 7))
	s2 := newFileScheduler(t, path, clk, rec)
	s2.RunDue(ctx)
	waitRuns(t, s2)
	expectSlots(t, rec.take())

	// Down from 12:07 to 12:22: the slots 12:10, 12:15 and 12:20 were missed; only the
	// latest fires, once, however often the process restarts.
	clk.set(at(12, 22))
	for range 3 {
		s3 := newFileScheduler(t, path, clk, rec)
		s3.RunDue(ctx)
		waitRuns(t, s3)
	}
	expectSlots(t, rec.take(), at(12, 20))

	// Woken late (12:36 for the 12:25 slot): the latest due slot, once.
	s4 := newFileScheduler(t, path, clk, rec)
	s4.RunDue(ctx)
	clk.set(at(12, 36))
	s4.RunDue(ctx)
	waitRuns(t, s4)
	expectSlots(t, rec.take(), at(12, 35))

	// By hand: a slot claimed already is not run again; a later one is.
	if _, ok, err := s4.FireSlot(ctx, "w", "*/5 * * * *", at(12, 36)); err != nil || ok {
		t.Fatalf("FireSlot(12:35 again) = %v, %v; want not fired", ok, err)
	}
	clk.set(at(12, 41))
	ev, ok, err := s4.FireSlot(ctx, "w", "*/5 * * * *", at(12, 41))
	if err != nil || !ok || !ev.Time.Equal(at(12, 40)) {
		t.Fatalf("FireSlot(12:41) = %+v, %v, %v; want slot 12:40 fired", ev, ok, err)
	}
	if _, _, err := s4.FireSlot(ctx, "w", "* * * * *", at(12, 41)); !errors.Is(err, ErrNoTrigger) {
		t.Fatalf("FireSlot(unknown cron) = %v, want ErrNoTrigger", err)
	}
	waitRuns(t, s4)
	expectSlots(t, rec.take(), at(12, 40))
	st := s4.Stats()
	if len(st) != 1 || st[0].Fired != 2 || st[0].Skipped != 1 {
		t.Fatalf("stats = %+v, want 2 fired, 1 skipped", st)
	}
}

func TestSchedulerCountsFailures(t *testing.T) {
	clk := &fakeClock{}
	clk.set(at(12, 3))
	var calls atomic.Int32
	s := New(Options{Claims: NewFileClaims(filepath.Join(t.TempDir(), "s.json")), Now: clk.now, Fire: func(context.Context, Event) error {
		if calls.Add(1) == 1 {
			return errors.New("handler failed")
		}
		panic("boom")
	}})
	defer s.Close(context.Background())
	if err := s.Set([]Trigger{{Worker: "w", Cron: "* * * * *"}}); err != nil {
		t.Fatal(err)
	}
	s.RunDue(context.Background())
	for _, m := range []int{4, 5} {
		clk.set(at(12, m))
		s.RunDue(context.Background())
		waitRuns(t, s)
	}
	st := s.Stats()
	if len(st) != 1 || st[0].Fired != 2 || st[0].Failed != 2 {
		t.Fatalf("stats = %+v, want 2 fired and 2 failed", st)
	}
}

func TestSchedulerSetRejectsBadCron(t *testing.T) {
	s := New(Options{Claims: NewFileClaims(filepath.Join(t.TempDir(), "s.json")), Fire: (&recorder{}).fire})
	defer s.Close(context.Background())
	if err := s.Set([]Trigger{{Worker: "w", Cron: "61 * * * *"}}); err == nil {
		t.Fatal("Set accepted a bad expression")
	}
}

func TestSchedulerTimerFires(t *testing.T) {
	// The real timer: a slot due now (the clock is set past it) fires without RunDue.
	clk := &fakeClock{}
	clk.set(at(12, 3))
	path := filepath.Join(t.TempDir(), "s.json")
	rec := &recorder{}
	s := newFileScheduler(t, path, clk, rec)
	s.RunDue(context.Background()) // sets the next slot, 12:05
	clk.set(at(12, 5))
	s.Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		n := s.stats["w"]
		s.mu.Unlock()
		if n != nil && n.Fired == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the timer did not fire the due slot")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	expectSlots(t, rec.take(), at(12, 5))
}
