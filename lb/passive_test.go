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
	time.Sleep(15 * time.Millisecond)
	failN(t, lb, a, 1, errConnect)
	if !a.Available() {
		t.Fatal("failures further apart than the window ejected the backend")
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
