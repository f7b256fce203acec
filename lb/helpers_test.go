package lb

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// newTestBalancer builds a Balancer over 127.0.0.1 backends with the given weights (ports
// 10001, 10002, ...) and closes it when the test ends.
func newTestBalancer(tb testing.TB, sel Selector, weights ...int) *Balancer {
	tb.Helper()
	cfgs := make([]BackendConfig, len(weights))
	for i, w := range weights {
		cfgs[i] = BackendConfig{Address: fmt.Sprintf("127.0.0.1:%d", 10001+i), Weight: w}
	}
	lb, err := New(Options{Backends: cfgs, Selector: sel})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { lb.Close() })
	return lb
}

// ones returns n weights of 1.
func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// indexOf returns b's position in bs, or -1.
func indexOf(bs []*Backend, b *Backend) int {
	for i, x := range bs {
		if x == b {
			return i
		}
	}
	return -1
}

// waitFor polls cond every millisecond until it holds or 5s pass.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// eventLog records a Balancer's events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) Observe(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) count(k EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// quietLogger discards logs.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
