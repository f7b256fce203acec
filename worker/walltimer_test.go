package worker

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
)

type discardWriter struct{}

func (discardWriter) WriteHeader(*message.Response) error { return nil }
func (discardWriter) Write(p []byte) (int, error)         { return len(p), nil }
func (discardWriter) Finish(*message.Header) error        { return nil }

// TestLateWallTimerSparesNextInvocation: an instance's wall timer is reused by its
// invocations, and one armed for an invocation that ended at its limit can run its function
// after the next invocation of the instance started. That invocation, far from its own
// limit, keeps running.
func TestLateWallTimerSparesNextInvocation(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry(Services{CacheDir: t.TempDir()})
	t.Cleanup(func() { r.Close(ctx) })
	cfg := Config{Name: "late", Module: testwasm.Build(t, "worker/testdata/misbehave"), Limits: Limits{WallTime: time.Minute, MaxInstances: 1}}
	if _, err := r.Deploy(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	w := r.Get("late")
	v := w.cur.Load()
	v.mu.Lock()
	in := v.idle[0]
	v.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		req := &message.Request{Method: "GET", Target: "/sleep", Authority: "example.com", Proto: message.HTTP11}
		_, err := w.Serve(ctx, discardWriter{}, &Request{Message: req})
		done <- err
	}()
	for in.state.Load()&stateMask != stateRunning {
		runtime.Gosched()
	}
	in.wallTimerFired() // the previous invocation's timer, late
	if got := in.state.Load() & stateMask; got != stateRunning {
		t.Errorf("after a late wall timer: state %d, want %d (running)", got, stateRunning)
	}
	in.interrupt(exitWall) // end the sleep
	var we *Error
	if err := <-done; !errors.As(err, &we) || we.Kind != WallLimit {
		t.Fatalf("got %v, want a wall time limit error", err)
	}
}
