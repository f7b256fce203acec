package overload

import (
	"crypto/sha256"
	"testing"
	"time"
)

func TestStateMachine(t *testing.T) {
	m := New(Thresholds{CPU: 0.9, QueueDelay: 10 * time.Millisecond}, 0, nil)
	steps := []struct {
		s    Sample
		want bool
	}{
		{Sample{CPU: 0.5}, false},
		{Sample{CPU: 0.95}, true},                                  // over CPU
		{Sample{CPU: 0.85}, true},                                  // between 80% and 100%: stays
		{Sample{CPU: 0.1}, true},                                   // one calm sample
		{Sample{CPU: 0.1, QueueDelay: 9 * time.Millisecond}, true}, // queue delay not calm: resets
		{Sample{CPU: 0.1}, true},
		{Sample{CPU: 0.1}, false}, // two calm samples in a row
		{Sample{QueueDelay: 20 * time.Millisecond}, true},
	}
	for i, st := range steps {
		if got := m.Update(st.s); got != st.want || m.Overloaded() != st.want {
			t.Fatalf("step %d (%+v): overloaded %v, want %v", i, st.s, got, st.want)
		}
	}
	if n := m.Transitions.Load(); n != 2 {
		t.Fatalf("transitions %d, want 2", n)
	}
	m.SetThresholds(Thresholds{})
	m.Update(Sample{CPU: 1})
	if m.Update(Sample{CPU: 1}) {
		t.Fatal("all-zero thresholds still judge overload")
	}
	var nilMon *Monitor
	if nilMon.Overloaded() {
		t.Fatal("a nil monitor is overloaded")
	}
}

// TestMeasure checks that a sample after some work reports CPU and memory.
func TestMeasure(t *testing.T) {
	m := New(Thresholds{CPU: 0.5}, 0, nil)
	m.Measure()
	sum := [32]byte{}
	for range 200000 {
		sum = sha256.Sum256(sum[:])
	}
	s := m.Measure()
	if s.CPU <= 0 || s.Memory <= 0 {
		t.Fatalf("sample after work: %+v", s)
	}
	m.Start()
	m.Close()
}
