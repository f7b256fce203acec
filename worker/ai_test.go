package worker_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/ai/aitest"
	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/worker"
)

// TestAIBindingHostileWorker: a worker reaches only the binding its configuration names,
// cannot send an oversized or malformed request, and cannot hold more streams than the
// open-body limit or make more calls than its subrequest limit.
func TestAIBindingHostileWorker(t *testing.T) {
	s := &aitest.Server{Name: "p"}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	c, err := ai.NewClient([]ai.Provider{{Name: "p", BaseURL: ts.URL + "/v1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, worker.Config{Name: "aihostile", Module: testwasm.Build(t, "worker/testdata/aihostile"),
		AI:     &worker.AIBinding{Name: "AI", Client: c, Key: "k"},
		Limits: worker.Limits{WallTime: 20 * time.Second, Subrequests: 50}})
	for path, want := range map[string]string{
		"/unbound": codeMsg(workerabi.StatusUnavailable, `no AI binding "OTHER"`),
		"/huge":    codeMsg(workerabi.StatusLimit, "ai: request of "),
		"/nomodel": codeMsg(workerabi.StatusInvalid, "ai: the request must be a JSON object with a model"),
		"/streams": codeMsg(workerabi.StatusLimit, "too many open response bodies (limit 16)"),
		"/ok":      "hello from p",
	} {
		if code, b := get(t, w, path); code != 200 || !strings.HasPrefix(b, want) {
			t.Errorf("%s: %d %q, want %q", path, code, b, want)
		}
	}
	if n := s.Requests(); n != 17 {
		t.Errorf("the provider got %d requests, want 17 (16 streams and /ok)", n)
	}
}

func codeMsg(code int, msg string) string {
	return strings.TrimSpace(string(rune('0'+code))) + " " + msg
}

// TestAIBindingClientClosedWithVersion: the version deployed with an AI binding closes its
// client when a redeploy releases it, so no idle connection to a provider the old
// configuration granted outlives it (one per reload otherwise, until the provider drops it).
func TestAIBindingClientClosedWithVersion(t *testing.T) {
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	ts := httptest.NewUnstartedServer(&aitest.Server{Name: "p"})
	ts.Config.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	openConns := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(open)
	}
	client := func() *ai.Client {
		c, err := ai.NewClient([]ai.Provider{{Name: "p", BaseURL: ts.URL + "/v1"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e := newEnv(t, t.TempDir(), worker.Services{})
	module := testwasm.Build(t, "worker/testdata/aihostile")
	cfg := worker.Config{Name: "aiclose", Module: module, AI: &worker.AIBinding{Name: "AI", Client: client(), Key: "one"},
		Limits: worker.Limits{WallTime: 20 * time.Second, Subrequests: 50}}
	w := e.deploy(t, cfg)
	if code, b := get(t, w, "/ok"); code != 200 || b != "hello from p" {
		t.Fatalf("/ok: %d %q", code, b)
	}
	if n := openConns(); n != 1 {
		t.Fatalf("%d connections to the provider, want 1", n)
	}
	cfg.AI = &worker.AIBinding{Name: "AI", Client: client(), Key: "two"}
	e.deploy(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for openConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replaced version's connection to the provider is still open")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
