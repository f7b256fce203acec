package worker_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// TestNotesSQLTransactionsAlarms drives examples/workers/notes: SQL, a failed transaction,
// the key-value API, an alarm that fires and DeleteAll.
func TestNotesSQLTransactionsAlarms(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, worker.Config{
		Name:    "notes",
		Module:  testwasm.Build(t, "examples/workers/notes"),
		Durable: map[string]worker.DurableBinding{"NOTES": {Class: "Notebook"}},
	})
	must := func(method, target, body string, status int, want string) {
		t.Helper()
		rec, err := serve(t, w, method, target, body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		if rec.status != status || (want != "*" && rec.body.String() != want) {
			t.Fatalf("%s %s: got %d %q, want %d %q", method, target, rec.status, rec.body.String(), status, want)
		}
	}
	must("POST", "/notes/a", "first", 200, "1")
	must("POST", "/notes/a", "second", 200, "2")
	must("POST", "/notes/a?fail=1", "rolled back", 500, "*")
	must("GET", "/notes/a", "", 200, "1 first\n2 second\n")
	must("GET", "/notes/b", "", 200, "")
	must("POST", "/notes/a/remind?ms=50", "", 202, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, _ := serve(t, w, "GET", "/notes/a/stats", "")
		if rec.body.String() == "notes=3 alarms=1 pending=false" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alarm did not fire: stats %q", rec.body.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	must("GET", "/notes/a", "", 200, "1 first\n2 second\n3 reminder\n")
	must("DELETE", "/notes/a", "", 204, "")
	must("GET", "/notes/a", "", 200, "")
	must("GET", "/notes/a/stats", "", 200, "notes=0 alarms=0 pending=false")
}

func TestFetchAndSubrequestLimit(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Origin", "yes")
		w.Write([]byte("from origin " + r.URL.Path))
	}))
	t.Cleanup(origin.Close)
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	e := newEnv(t, t.TempDir(), worker.Services{Transport: tr})
	cfg := misbehaveConfig(t, worker.Limits{Subrequests: 3})
	cfg.Fetch.Allow = []string{"127.0.0.1"} // the httptest origin is on loopback
	w := e.deploy(t, cfg)
	u := origin.URL + "/x"
	rec, err := serve(t, w, "GET", "/fetch?n=3&u="+u, "")
	if err != nil {
		t.Fatal(err)
	}
	rec.check(t, 200, "from origin /x")
	rec, _ = serve(t, w, "GET", "/fetch?n=4&u="+u, "")
	if rec.status != 502 || !strings.Contains(rec.body.String(), "too many subrequests") {
		t.Fatalf("over the limit: got %v", rec)
	}
	rec, _ = serve(t, w, "GET", "/fetch?u=ftp://nope", "")
	if rec.status != 502 {
		t.Fatalf("bad scheme: got %v", rec)
	}
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A failed Durable Object request leaves a line in the error log, as a failed worker
// invocation does (issue 12: only the latter were logged).
func TestDurableObjectFailureLogged(t *testing.T) {
	var logs lockedBuffer
	e := newEnv(t, t.TempDir(), worker.Services{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	cfg := misbehaveConfig(t, worker.Limits{})
	cfg.Durable = map[string]worker.DurableBinding{"BOMB": {Class: "Bomb"}}
	w := e.deploy(t, cfg)
	rec, err := serve(t, w, "GET", "/dopanic", "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.status != 502 {
		t.Fatalf("got %v, want the worker's 502 for the failed object", rec)
	}
	got := logs.String()
	for _, want := range []string{`msg="durable object request failed"`, "worker=misbehave", "binding=BOMB", "class=Bomb", "kind=crashed"} {
		if !strings.Contains(got, want) {
			t.Errorf("error log %q: want %q", got, want)
		}
	}
}
