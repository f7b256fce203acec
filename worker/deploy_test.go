package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// TestStageServesOldVersionUntilCommit: a staged version does not serve until Commit, which
// switches at once; a discarded one never serves.
func TestStageServesOldVersionUntilCommit(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	hello := worker.Config{Name: "app", Module: testwasm.Build(t, "examples/workers/hello")}
	w := e.deploy(t, hello)
	counter := counterConfig(t)
	counter.Name = "app"
	s, err := e.reg.Stage(context.Background(), counter)
	if err != nil {
		t.Fatal(err)
	}
	if s.Worker() != w {
		t.Fatal("staged version belongs to another worker handle")
	}
	rec, _ := serve(t, w, "GET", "/anything", "")
	rec.check(t, 200, "hello from /anything\n") // still the old version
	info := s.Commit()
	if cur, _ := w.Version(); cur.ID != info.ID {
		t.Fatalf("current version %s, want the committed %s", cur.ID, info.ID)
	}
	rec, _ = serve(t, w, "GET", "/anything", "")
	rec.check(t, 404, "not found\n") // the counter's answer

	s, err = e.reg.Stage(context.Background(), hello)
	if err != nil {
		t.Fatal(err)
	}
	s.Discard()
	rec, _ = serve(t, w, "GET", "/anything", "")
	rec.check(t, 404, "not found\n")
}

// TestFailedStageKeepsServing: a module that does not compile leaves the current version
// serving, and a worker that never had one is forgotten.
func TestFailedStageKeepsServing(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, worker.Config{Name: "app", Module: testwasm.Build(t, "examples/workers/hello")})
	bad := []byte("\x00asm\x01\x00\x00\x00")
	if _, err := e.reg.Deploy(context.Background(), worker.Config{Name: "app", Module: bad}); err == nil {
		t.Fatal("deploying a module without verge_handle succeeded")
	}
	rec, err := serve(t, w, "GET", "/x", "")
	if err != nil {
		t.Fatal(err)
	}
	rec.check(t, 200, "hello from /x\n")
	if _, err := e.reg.Stage(context.Background(), worker.Config{Name: "other", Module: bad}); err == nil {
		t.Fatal("staging a module without verge_handle succeeded")
	}
	if e.reg.Get("other") != nil {
		t.Fatal("a failed first stage left a worker behind")
	}
}

// TestReservedWorkerServesOnceDeployed: a request for a reserved worker (routes exist, its
// module is compiling) waits for the first version instead of failing.
func TestReservedWorkerServesOnceDeployed(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w, err := e.reg.Reserve("late")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.Version(); ok {
		t.Fatal("a reserved worker has a version")
	}
	type result struct {
		rec *recorder
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := serve(t, w, "GET", "/first", "")
		done <- result{rec, err}
	}()
	if _, err := e.reg.Deploy(context.Background(), worker.Config{Name: "late", Module: testwasm.Build(t, "examples/workers/hello")}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("request waiting for the first version: %v", r.err)
	}
	r.rec.check(t, 200, "hello from /first\n")
}

// TestReservedWorkerFailedDeploy: requests waiting for a worker whose first deploy fails are
// answered Unavailable with the reason, and so are the ones that come later.
func TestReservedWorkerFailedDeploy(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w, err := e.reg.Reserve("broken")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := serve(t, w, "GET", "/", "")
		done <- err
	}()
	if _, err := e.reg.Deploy(context.Background(), worker.Config{Name: "broken", Module: []byte("\x00asm\x01\x00\x00\x00")}); err == nil {
		t.Fatal("deploying a module without verge_handle succeeded")
	}
	for _, err := range []error{<-done, func() error { _, err := serve(t, w, "GET", "/", ""); return err }()} {
		var we *worker.Error
		if !errors.As(err, &we) || we.Kind != worker.Unavailable || we.StatusCode() != 503 {
			t.Fatalf("got %v, want Unavailable (503)", err)
		}
		if !strings.Contains(err.Error(), "verge_handle") {
			t.Errorf("error %q does not say why the deploy failed", err)
		}
	}
	if e.reg.Get("broken") != nil {
		t.Fatal("the worker is still registered")
	}
	// A request whose client is gone stops waiting.
	w2, _ := e.reg.Reserve("never")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w2.Serve(ctx, &recorder{}, &worker.Request{Message: &message.Request{Method: "GET", Target: "/", Authority: "example.com", Proto: message.HTTP11}}); err == nil {
		t.Fatal("a canceled request for a worker without a version succeeded")
	}
}
