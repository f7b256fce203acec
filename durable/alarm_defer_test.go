package durable

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sharedAlarms is an AlarmStore with the shared-index extensions (AlarmDeferrer,
// AlarmNotifier) over the SQLite index, recording what the namespace asks of it.
type sharedAlarms struct {
	AlarmStore
	nexts atomic.Int32

	mu       sync.Mutex
	notify   []func()
	deferred map[ID]time.Time // until
	timers   []*time.Timer

	defers      chan time.Time // each Defer's until
	reschedules chan int       // each Reschedule's retries
}

func (s *sharedAlarms) Notify(f func()) func() {
	s.mu.Lock()
	s.notify = append(s.notify, f)
	s.mu.Unlock()
	return func() {}
}

func (s *sharedAlarms) wake() {
	s.mu.Lock()
	fs := s.notify
	s.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func (s *sharedAlarms) Defer(id ID, at, until time.Time) {
	s.mu.Lock()
	s.deferred[id] = until
	s.timers = append(s.timers, time.AfterFunc(time.Until(until), s.wake))
	s.mu.Unlock()
	s.defers <- until
}

func (s *sharedAlarms) Next(ctx context.Context) (Alarm, bool, error) {
	s.nexts.Add(1)
	a, ok, err := s.AlarmStore.Next(ctx)
	if !ok || err != nil {
		return a, ok, err
	}
	s.mu.Lock()
	until := s.deferred[a.ID]
	s.mu.Unlock()
	if time.Now().Before(until) {
		return Alarm{}, false, nil
	}
	return a, true, nil
}

func (s *sharedAlarms) Reschedule(ctx context.Context, id ID, prev, at time.Time, retries int) error {
	err := s.AlarmStore.Reschedule(ctx, id, prev, at, retries)
	s.reschedules <- retries
	return err
}

// sharedStore is a SQLiteStore whose alarm index is a sharedAlarms.
type sharedStore struct {
	*SQLiteStore
	alarms *sharedAlarms
}

func (s *sharedStore) Alarms(context.Context, string) (AlarmStore, error) { return s.alarms, nil }

// switchPlacement fails claims with the error it holds, if any.
type switchPlacement struct{ err atomic.Pointer[error] }

func (p *switchPlacement) set(err error) { p.err.Store(&err) }

func (p *switchPlacement) Claim(context.Context, string, ID) (func(), error) {
	if err := *p.err.Load(); err != nil {
		return nil, err
	}
	return func() {}, nil
}

// warnCounter counts log records at Warn and above.
type warnCounter struct{ n atomic.Int32 }

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(context.Context, slog.Record) error    { w.n.Add(1); return nil }
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnCounter) WithGroup(string) slog.Handler                { return w }

// TestAlarmOwnedElsewhereDefers checks that an alarm whose object another process owns is
// deferred, not failed: no retry counted, no backoff, no warning, no busy loop; that any
// other claim error is still a failed attempt; and that the alarm fires once the object
// can be claimed here.
func TestAlarmOwnedElsewhereDefers(t *testing.T) {
	sq := OpenSQLite(t.TempDir())
	t.Cleanup(func() { sq.Close() })
	ctx := context.Background()
	inner, err := sq.Alarms(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	alarms := &sharedAlarms{AlarmStore: inner, deferred: map[ID]time.Time{}, defers: make(chan time.Time, 16), reschedules: make(chan int, 16)}
	t.Cleanup(func() {
		alarms.mu.Lock()
		defer alarms.mu.Unlock()
		for _, tm := range alarms.timers {
			tm.Stop()
		}
	})
	id := IDFromName("test", "a")
	at := time.Now().Add(-time.Second)
	if err := alarms.Set(ctx, id, at); err != nil {
		t.Fatal(err)
	}

	p := &switchPlacement{}
	p.set(&testOwnedElsewhere{owner: "n2"})
	fired := make(chan int, 4)
	warns := &warnCounter{}
	ns, err := New(ctx, Options{Name: "test", Store: &sharedStore{SQLiteStore: sq, alarms: alarms}, Placement: p,
		Logger: slog.New(warns),
		OnAlarm: func(_ context.Context, _ *Turn, retries int) error {
			fired <- retries
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(context.Background()) })

	guard := time.NewTimer(30 * time.Second)
	defer guard.Stop()
	var until time.Time
	select {
	case until = <-alarms.defers:
	case r := <-alarms.reschedules:
		t.Fatalf("owned elsewhere: rescheduled with retries %d, want deferred", r)
	case <-fired:
		t.Fatal("owned elsewhere: the alarm ran here")
	case <-guard.C:
		t.Fatal("owned elsewhere: the alarm was not deferred")
	}
	if d := time.Until(until); d <= 0 || d > AlarmOwnedElsewhereDelay {
		t.Fatalf("deferred for %v, want (0, %v]", d, AlarmOwnedElsewhereDelay)
	}
	a, ok, err := inner.Get(ctx, id)
	if err != nil || !ok || a.Retries != 0 || !a.At.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("shared entry after deferral: %+v, %v, %v; want unchanged (at %v, retries 0)", a, ok, err, at)
	}
	if n := warns.n.Load(); n != 0 {
		t.Fatalf("deferral logged %d warnings, want none", n)
	}

	// Any other claim error is a failed attempt, as before.
	p.set(errors.New("lease bucket unreachable"))
	select {
	case r := <-alarms.reschedules:
		if r != 1 {
			t.Fatalf("other claim error: rescheduled with retries %d, want 1", r)
		}
	case <-alarms.defers:
		t.Fatal("other claim error: deferred, want a failed attempt")
	case <-guard.C:
		t.Fatal("other claim error: the alarm was not retried")
	}

	// Claimable here: it fires, with the one failed attempt counted.
	p.set(nil)
	select {
	case r := <-fired:
		if r != 1 {
			t.Fatalf("fired with retries %d, want 1", r)
		}
	case <-alarms.defers:
		t.Fatal("deferred again after the claim succeeds")
	case <-guard.C:
		t.Fatal("the alarm never fired")
	}
	if n := alarms.nexts.Load(); n > 20 {
		t.Fatalf("the scheduler read the index %d times for three attempts: it spins", n)
	}
}

// testOwnedElsewhere is a placement's claim error that wraps ErrOwnedElsewhere.
type testOwnedElsewhere struct{ owner string }

func (e *testOwnedElsewhere) Error() string { return "object owned by " + e.owner }
func (e *testOwnedElsewhere) Unwrap() error { return ErrOwnedElsewhere }
