package containers

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// exitedProc is a Process that has exited already.
type exitedProc struct {
	done chan struct{}
	code int
}

func (p *exitedProc) Done() <-chan struct{}      { return p.done }
func (p *exitedProc) ExitCode() int              { return p.code }
func (p *exitedProc) Stop(context.Context) error { return nil }

// TestStopAfterCrash: an instance that crashed just before its idle timer fired (its
// watcher has not settled it yet) is reported as crashed, not as asleep.
func TestStopAfterCrash(t *testing.T) {
	for _, c := range []struct {
		code   int
		reason string
		want   string
		state  State
	}{
		{3, "sleep", "crashed", Crashed},
		{0, "sleep", "exited", Stopped},
		{3, "stopped", "crashed", Crashed},
	} {
		exits := make(chan Exit, 1)
		m, err := New(Options{Driver: &ProcessDriver{}, Owner: "t", Logger: slog.New(slog.DiscardHandler), OnExit: func(x Exit) { exits <- x }})
		if err != nil {
			t.Fatal(err)
		}
		m.SetClasses("w", []ClassConfig{{Class: "C", Image: "x"}})
		m.mu.Lock()
		cl, in, _ := m.lookup("w", "C", "o", true)
		p := &exitedProc{done: make(chan struct{}), code: c.code}
		close(p.done)
		in.state, in.proc, in.started = Running, p, time.Now()
		cl.running++
		m.running++
		m.mu.Unlock()
		if err := m.stopInstance(context.Background(), in, c.reason); err != nil {
			t.Fatal(err)
		}
		x := <-exits
		if x.Reason != c.want || x.Code != c.code {
			t.Errorf("code %d, stop for %s: exit %+v, want reason %s", c.code, c.reason, x, c.want)
		}
		m.mu.Lock()
		st, restart, running := in.state, in.restart != nil, m.running
		if in.restart != nil {
			in.restart.Stop()
		}
		m.mu.Unlock()
		if st != c.state || running != 0 {
			t.Errorf("code %d, stop for %s: state %v, %d running; want %v, 0", c.code, c.reason, st, running, c.state)
		}
		if wantRestart := c.want == "crashed" && c.reason == "sleep"; restart != wantRestart {
			t.Errorf("code %d, stop for %s: restart scheduled %v, want %v", c.code, c.reason, restart, wantRestart)
		}
	}
}
