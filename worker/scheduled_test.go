package worker_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// body is a ResponseWriter that keeps the response.
type body struct {
	status int
	b      strings.Builder
}

func (r *body) WriteHeader(m *message.Response) error { r.status = m.Status; return nil }
func (r *body) Write(p []byte) (int, error)           { return r.b.Write(p) }
func (r *body) Finish(*message.Header) error          { return nil }

func get(t *testing.T, w *worker.Worker, path string, hdr ...string) (int, string) {
	t.Helper()
	req := &message.Request{Method: "GET", Target: path, Authority: "example.com", Proto: message.HTTP11}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	out := &body{}
	if _, err := w.Serve(context.Background(), out, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return out.status, out.b.String()
}

// TestScheduledHandlerFailures runs a scheduled handler that fails in every way a guest
// can: each failure is an error of the invocation (counted), never of the host, and the
// next run and the next request succeed.
func TestScheduledHandlerFailures(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, worker.Config{Name: "scheduled", Module: testwasm.Build(t, "worker/testdata/scheduled"),
		Limits: worker.Limits{CPUTime: 100 * time.Millisecond, WallTime: 10 * time.Second, MaxInstances: 1}})
	slot := time.Date(2026, 12, 2, 12, 5, 0, 0, time.UTC)
	ctx := context.Background()
	if _, err := w.Scheduled(ctx, worker.ScheduledEvent{Cron: "*/5 * * * *", Time: slot}); err != nil {
		t.Fatal(err)
	}
	if code, b := get(t, w, "/"); code != 200 || b != "*/5 * * * * 2026-12-02T12:05:00Z" {
		t.Fatalf("the event seen by the guest: %d %q", code, b)
	}
	cases := []struct {
		cron string
		kind worker.ErrorKind
		want string
	}{
		{"0 0 * * 1", worker.Crashed, "scheduled handler returned an error"},
		{"0 0 * * 2", worker.Crashed, "scheduled handler returned an error"},
		{"0 0 * * 3", worker.CPULimit, "CPU time"},
		{"0 0 * * 4", worker.Crashed, "exited with code 3"},
	}
	for _, c := range cases {
		_, err := w.Scheduled(ctx, worker.ScheduledEvent{Cron: c.cron, Time: slot})
		var we *worker.Error
		if !errors.As(err, &we) || we.Kind != c.kind || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v, want %v containing %q", c.cron, err, c.kind, c.want)
		}
		if _, err := w.Scheduled(ctx, worker.ScheduledEvent{Cron: "*/5 * * * *", Time: slot}); err != nil {
			t.Fatalf("a run after %s: %v", c.cron, err)
		}
	}
	st := w.Stats()
	if st.Invocations["scheduled"] != 9 || st.Errors["cpu_limit"] != 1 || st.Errors["crashed"] != 3 {
		t.Fatalf("stats: %v %v", st.Invocations, st.Errors)
	}
}

// TestScheduledWithoutHandler: a worker that registered no scheduled handler fails the run
// with an error saying so.
func TestScheduledWithoutHandler(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, worker.Config{Name: "hello", Module: testwasm.Build(t, "examples/workers/hello")})
	_, err := w.Scheduled(context.Background(), worker.ScheduledEvent{Cron: "* * * * *", Time: time.Now()})
	if err == nil {
		t.Fatal("a worker without a scheduled handler ran one")
	}
	if code, _ := get(t, w, "/"); code != 200 {
		t.Fatalf("a request after: %d", code)
	}
}

func servicesEnv(t testing.TB) (*worker.Worker, *worker.Worker) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	auth := e.deploy(t, worker.Config{Name: "auth", Module: testwasm.Build(t, "examples/workers/services/auth"),
		Env: map[string]string{"TOKEN": "s3cret", "USER": "alice"}, Limits: worker.Limits{CPUTime: 50 * time.Millisecond}})
	gw := e.deploy(t, worker.Config{Name: "gateway", Module: testwasm.Build(t, "examples/workers/services/gateway"),
		Services: map[string]string{"AUTH": "auth", "SELF": "gateway"}, Limits: worker.Limits{CPUTime: 10 * time.Second, Subrequests: 3}})
	return gw, auth
}

// TestServiceBindingLimits: a service call counts as one subrequest of the caller, and the
// callee's CPU limit fails the call without touching the caller.
func TestServiceBindingLimits(t *testing.T) {
	gw, auth := servicesEnv(t)
	if code, b := get(t, gw, "/hello", "Authorization", "Bearer s3cret"); code != 200 || b != "hello alice\n" {
		t.Fatalf("/hello: %d %q", code, b)
	}
	if code, b := get(t, gw, "/spin"); code != 502 || !strings.Contains(b, "cpu") {
		t.Fatalf("/spin: %d %q", code, b)
	}
	if a, g := auth.Stats().Errors["cpu_limit"], gw.Stats().Errors["cpu_limit"]; a != 1 || g != 0 {
		t.Fatalf("cpu_limit errors: auth %d, gateway %d; want 1 and 0", a, g)
	}
	// Each hop of the loop makes one call, within its own subrequest budget: the depth
	// limit ends it.
	if code, b := get(t, gw, "/loop"); code != 508 || !strings.Contains(b, "limit 16") {
		t.Fatalf("/loop: %d %q", code, b)
	}
}

// BenchmarkServiceCall is gateway's /hello: a request whose worker calls another through a
// service binding (both warm, in-process) and reads its JSON answer.
func BenchmarkServiceCall(b *testing.B) {
	gw, _ := servicesEnv(b)
	req := &message.Request{Method: "GET", Target: "/hello", Authority: "example.com", Proto: message.HTTP11}
	req.Header.Add("Authorization", "Bearer s3cret")
	wr := &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}
	out := &discard{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gw.Serve(ctx, out, wr); err != nil || out.status != 200 {
			b.Fatal(err, out.status)
		}
	}
}

// BenchmarkScheduled is one run of a scheduled handler that does nothing.
func BenchmarkScheduled(b *testing.B) {
	e := newEnv(b, b.TempDir(), worker.Services{})
	w := e.deploy(b, worker.Config{Name: "scheduled", Module: testwasm.Build(b, "worker/testdata/scheduled")})
	ev := worker.ScheduledEvent{Cron: "*/5 * * * *", Time: time.Date(2026, 12, 2, 12, 5, 0, 0, time.UTC)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Scheduled(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestServiceResponseStreams: a callee's flushed bytes reach the caller, and through it the
// client, while the callee still runs (it waits for the gate, which opens only once "a"
// arrived at the client).
func TestServiceResponseStreams(t *testing.T) {
	_, w, _ := streamEnv(t, worker.Limits{})
	g := newGate(t)
	out := newFlushSink()
	done := serveStreamAsync(w, out, "/service?p="+url.QueryEscape("/flush?wait="+g.srv.URL+"/gate"))
	awaitFlush(t, out, "a")
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.status != 200 || out.body.String() != "ab" {
		t.Fatalf("got %d %q, want 200 \"ab\"", out.status, out.body.String())
	}
}
