package lb

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
)

var errConnect = fault.New(fault.Upstream, fault.ConnectRefused, errors.New("connection refused"))

func passiveBalancer(t *testing.T, p PassiveHealth, ev *eventLog) *Balancer {
	t.Helper()
	var obs Observer
	if ev != nil {
		obs = ev
	}
	lb, err := New(Options{
		Backends: []BackendConfig{{Address: "127.0.0.1:10001"}, {Address: "127.0.0.1:10002"}},
		Passive:  p,
		Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	return lb
}

// failN selects b n times through lb and reports err for each.
func failN(t *testing.T, lb *Balancer, b *Backend, n int, err error) {
	t.Helper()
	for range n {
		b.st.inflight.Add(1) // as Select would
		lb.Report(b, err)
	}
}

func TestPassiveEjection(t *testing.T) {
	var ev eventLog
	lb := passiveBalancer(t, PassiveHealth{MaxFails: 3, Cooldown: 50 * time.Millisecond}, &ev)
	bs := lb.Backends()
	a := bs[0]

	failN(t, lb, a, 2, errConnect)
	if !a.Available() {
		t.Fatal("ejected after 2 failures, want 3")
	}
	failN(t, lb, a, 1, errConnect)
	if a.Available() {
		t.Fatal("still available after 3 consecutive failures")
	}
	if st := a.Status(); !st.Ejected || st.Ejections != 1 || st.Fails != 3 || st.InFlight != 0 {
		t.Fatalf("got status %+v, want ejected once after 3 fails, nothing in flight", st)
	}
	for range 10 {
		b := lb.Select(nil)
		if b != bs[1] {
			t.Fatalf("got %v during cool-down, want the other backend", b)
		}
		b.Done(true)
	}

	// After the cool-down a failed trial ejects again at once.
	waitFor(t, "cool-down over", a.Available)
	failN(t, lb, a, 1, errConnect)
	if a.Available() {
		t.Fatal("failed trial did not eject again")
	}
	if got := ev.count(BackendEjected); got != 2 {
		t.Fatalf("got %d ejections, want 2", got)
	}

	// A successful trial restores it and resets the streak.
	waitFor(t, "second cool-down over", a.Available)
	a.st.inflight.Add(1)
	lb.Report(a, nil)
	if got := ev.count(BackendRestored); got != 1 {
		t.Fatalf("got %d restored events, want 1", got)
	}
	failN(t, lb, a, 2, errConnect)
	if !a.Available() {
		t.Fatal("ejected after 2 failures following recovery, want a fresh streak of 3")
	}
}

func TestPassiveNeutralAndSuccess(t *testing.T) {
	tests := []struct {
		name  string
		errs  []error
		eject bool
	}{
		{"three failures", []error{errConnect, errConnect, errConnect}, true},
		{"plain errors count", []error{errors.New("x"), errors.New("y"), errors.New("z")}, true},
		{"success breaks the streak", []error{errConnect, errConnect, nil, errConnect, errConnect}, false},
		{"client cancel is neutral", []error{errConnect, errConnect, context.Canceled,
			fault.New(fault.Downstream, fault.ConnectionClosed, nil),
			fault.New(fault.Upstream, fault.Canceled, nil)}, false},
		{"wrapped cancel is neutral", []error{errConnect, errConnect,
			fmt.Errorf("copy body: %w", context.Canceled)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb := passiveBalancer(t, PassiveHealth{}, nil)
			a := lb.Backends()[0]
			for _, err := range tt.errs {
				a.st.inflight.Add(1)
				lb.Report(a, err)
			}
			if got := !a.Available(); got != tt.eject {
				t.Errorf("got ejected=%v, want %v", got, tt.eject)
			}
			if got := a.InFlight(); got != 0 {
				t.Errorf("got %d in flight, want 0", got)
			}
		})
	}
}

func TestPassiveWindow(t *testing.T) {
	lb := passiveBalancer(t, PassiveHealth{MaxFails: 2, Window: 10 * time.Millisecond}, nil)
	a := lb.Backends()[0]
	failN(t, lb, a, 1, errConnect)
	time.Sleep(15 * time.Millisecond) // the window passes (a longer sleep under load is fine)
	failN(t, lb, a, 1, errConnect)
	if !a.Available() {
		t.Fatal("failures further apart than the window ejected the backend")
	}
	// Two failures within the window eject. The window is an hour here: with 10 ms, a test
	// descheduled between the two failures on a busy machine would see them apart.
	lb = passiveBalancer(t, PassiveHealth{MaxFails: 2, Window: time.Hour}, nil)
	a = lb.Backends()[0]
	failN(t, lb, a, 1, errConnect)
	if !a.Available() {
		t.Fatal("one failure ejected the backend (MaxFails 2)")
	}
	failN(t, lb, a, 1, errConnect)
	if a.Available() {
		t.Fatal("two failures within the window did not eject")
	}
}

func TestPassiveDisabled(t *testing.T) {
	lb := passiveBalancer(t, PassiveHealth{MaxFails: -1}, nil)
	a := lb.Backends()[0]
	failN(t, lb, a, 10, errConnect)
	if !a.Available() || a.Status().Fails != 10 {
		t.Fatalf("got available=%v fails=%d, want available with 10 counted", a.Available(), a.Status().Fails)
	}
}

// A group of one server never ejects it: requests keep going to it, so it answers again as
// soon as it is back (issue 12: a 2 s origin restart made every request 503 for 10 s).
func TestPassiveNeverEjectsOnlyBackend(t *testing.T) {
	var ev eventLog
	lb, err := New(Options{Backends: []BackendConfig{{Address: "127.0.0.1:10001"}}, Observer: &ev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	a := lb.Backends()[0]
	failN(t, lb, a, 10*DefaultMaxFails, errConnect)
	if !a.Available() || a.Status().Ejected || ev.count(BackendEjected) != 0 {
		t.Fatalf("got available=%v status %+v ejections=%d, want the only backend kept", a.Available(), a.Status(), ev.count(BackendEjected))
	}
	if got := lb.Select(nil); got != a {
		t.Fatalf("got %v, want the only backend", got)
	}
	a.Done(true)
	if st := a.Status(); st.Fails != uint64(10*DefaultMaxFails) || st.ConsecutiveFails != 0 {
		t.Fatalf("got %+v, want the failures counted and the streak reset by the success", st)
	}
}

// The last available backend of a larger group is not ejected either.
func TestPassiveNeverEjectsLastAvailable(t *testing.T) {
	lb := passiveBalancer(t, PassiveHealth{MaxFails: 2, Cooldown: time.Hour}, nil)
	bs := lb.Backends()
	failN(t, lb, bs[0], 2, errConnect)
	if bs[0].Available() {
		t.Fatal("first backend not ejected while the second was available")
	}
	failN(t, lb, bs[1], 10, errConnect)
	if !bs[1].Available() {
		t.Fatal("the last available backend was ejected")
	}
	for range 4 {
		if b := lb.Select(nil); b != bs[1] {
			t.Fatalf("got %v, want the last available backend", b)
		} else {
			b.Done(false)
		}
	}
}

// With every backend ejected or down, Select falls back to the ejected ones that are healthy
// (panic mode), and a success there restores the backend at once.
func TestPassivePanicMode(t *testing.T) {
	var ev eventLog
	lb := passiveBalancer(t, PassiveHealth{MaxFails: 1, Cooldown: time.Hour}, &ev)
	bs := lb.Backends()
	failN(t, lb, bs[0], 1, errConnect) // ejected for an hour
	bs[1].st.healthy.Store(false)      // an active check takes the other down
	b := lb.Select(nil)
	if b != bs[0] {
		t.Fatalf("got %v, want the ejected but healthy backend in panic mode", b)
	}
	if bs[0].Available() {
		t.Fatal("ejected backend available before any success")
	}
	b.Done(true)
	if !bs[0].Available() || ev.count(BackendRestored) != 1 {
		t.Fatalf("got available=%v restored=%d, want restored by the panic-mode success", bs[0].Available(), ev.count(BackendRestored))
	}
	bs[0].Drain()
	if got := lb.Select(nil); got != nil {
		t.Fatalf("got %v, want nil with one backend draining and the other down", got)
	}
}

// A reload that disables passive ejection ends the ejections it carries over; one that
// shortens the cool-down shortens the running ones.
func TestPassiveReloadReevaluates(t *testing.T) {
	store := NewStateStore()
	cfg := []BackendConfig{{Address: "127.0.0.1:10001"}, {Address: "127.0.0.1:10002"}}
	old, err := New(Options{Backends: cfg, Store: store, Passive: PassiveHealth{MaxFails: 1, Cooldown: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	failN(t, old, old.Backends()[0], 1, errConnect)
	if !old.Backends()[0].Status().Ejected {
		t.Fatal("not ejected")
	}

	shorter, err := New(Options{Backends: cfg, Store: store, Passive: PassiveHealth{MaxFails: 1, Cooldown: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer shorter.Close()
	st := shorter.Backends()[0].Status()
	if !st.Ejected || time.Until(st.EjectedUntil) > time.Minute {
		t.Fatalf("got %+v, want still ejected for at most the new minute", st)
	}

	var ev eventLog
	off, err := New(Options{Backends: cfg, Store: store, Passive: PassiveHealth{MaxFails: -1}, Observer: &ev})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	a := off.Backends()[0]
	if !a.Available() || a.Status().Ejected || ev.count(BackendRestored) != 1 {
		t.Fatalf("got available=%v status %+v restored=%d, want the ejection cleared by the reload", a.Available(), a.Status(), ev.count(BackendRestored))
	}
	seen := map[*Backend]int{}
	for range 4 {
		b := off.Select(nil)
		seen[b]++
		b.Done(true)
	}
	if seen[a] != 2 {
		t.Fatalf("got %v, want both backends used in turn", seen)
	}
}
