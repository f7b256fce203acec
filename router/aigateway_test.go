package router

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/verge-edge/verge/observe"
)

// aiMetricsRecorder keeps the AI samples a Deps.Metrics receives.
type aiMetricsRecorder struct {
	nopMetrics
	mu      sync.Mutex
	samples []observe.AISample
}

func (m *aiMetricsRecorder) ObserveAI(s *observe.AISample) {
	m.mu.Lock()
	m.samples = append(m.samples, *s)
	m.mu.Unlock()
}

// abortingExchange records Abort.
type abortingExchange struct {
	*fakeExchange
	aborted bool
}

func (e *abortingExchange) Abort(error) { e.aborted = true }

// TestAIGatewayThroughPhases serves an ai_gateway route on the neutral exchange: the local
// model in process answers with the route's response header operations and request ID, the
// metrics and the access log get the AI numbers, and a stream that breaks off after its
// head aborts the exchange instead of ending it as if complete.
func TestAIGatewayThroughPhases(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is cut mid-stream
	}))
	defer broken.Close()
	y := `listeners: [{name: main, address: 127.0.0.1:8080}]
request_id: {enabled: true}
ai:
  providers:
    - {name: builtin, type: local}
    - {name: broken, base_url: "` + broken.URL + `/v1", models: [b]}
routes:
  - name: ai
    response_headers: {set: {X-Route: ai}}
    ai_gateway: {}
`
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	m := &aiMetricsRecorder{}
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: failTransport{}, Metrics: m, AccessLogWriter: lockedWriter{&logMu, &logBuf}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(context.Background()) })
	h := in.Handler("main")

	body := `{"model":"verge-tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":4}`
	ex := newExchange("POST", "x", "/v1/chat/completions")
	ex.req.Body, ex.req.ContentLength = strings.NewReader(body), int64(len(body))
	h.ServeExchange(ex)
	if ex.resp.Status != 200 || ex.resp.Header.Get("X-Route") != "ai" || ex.resp.Header.Get("X-Request-ID") == "" ||
		ex.resp.Header.Get("X-Verge-AI-Provider") != "builtin" || !ex.finished || !strings.Contains(ex.body.String(), `"usage"`) {
		t.Fatalf("chat: %d %v finished=%v %s", ex.resp.Status, ex.resp.Header.Fields(), ex.finished, ex.body.String())
	}

	sb := `{"model":"b","stream":true,"messages":[]}`
	ax := &abortingExchange{fakeExchange: newExchange("POST", "x", "/v1/chat/completions")}
	ax.req.Body, ax.req.ContentLength = strings.NewReader(sb), int64(len(sb))
	h.ServeExchange(ax)
	if ax.resp.Status != 200 || !ax.aborted || ax.finished || !strings.Contains(ax.body.String(), `"hi"`) {
		t.Fatalf("broken stream: %d aborted=%v finished=%v %q", ax.resp.Status, ax.aborted, ax.finished, ax.body.String())
	}

	in.access.Flush()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) != 2 || m.samples[0].Provider != "builtin" || m.samples[0].TokensOut < 1 || m.samples[0].FirstByte <= 0 || m.samples[1].Provider != "broken" {
		t.Errorf("samples %+v", m.samples)
	}
	logMu.Lock()
	log := logBuf.String()
	logMu.Unlock()
	if !strings.Contains(log, `"ai_provider":"builtin","ai_model":"verge-tiny"`) || !strings.Contains(log, "the response broke off") {
		t.Errorf("access log:\n%s", log)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestWorkerAIKeyStable: the key of a worker's AI binding (part of its version's config hash)
// is the same when the same configuration is loaded again, with a provider API key, so a
// reload that changes nothing keeps the worker; a rotated key file changes it.
func TestWorkerAIKeyStable(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "p.key")
	if err := os.WriteFile(keyFile, []byte("secret-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w.wasm"), []byte("\x00asm"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := `listeners: [{name: main, address: "127.0.0.1:0"}]
ai:
  providers:
    - {name: p, base_url: "http://127.0.0.1:1/v1", api_key: {file: "` + keyFile + `"}, prices: {m: {input: 1, output: 2}}}
routes: [{name: w, worker: w}]
workers:
  - {name: w, module: "` + filepath.Join(dir, "w.wasm") + `", ai: {binding: AI}}
`
	key := func() string {
		t.Helper()
		b, err := workerAI(mustConfig(t, y).Workers[0].AI)
		if err != nil {
			t.Fatal(err)
		}
		return b.Key
	}
	k1, k2 := key(), key()
	if k1 != k2 {
		t.Fatalf("the same config gave keys %s and %s", k1, k2)
	}
	if err := os.WriteFile(keyFile, []byte("secret-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k3 := key(); k3 == k1 {
		t.Fatalf("a rotated API key kept the key %s", k3)
	}
}

// TestLocalProviderConcurrency: a local provider's max_concurrency (default 2) is both the
// client's cap and the model's generation slots, also for a model opened by an earlier
// configuration, so the gateway skips a full local model instead of being refused by it.
func TestLocalProviderConcurrency(t *testing.T) {
	for _, tc := range []struct {
		field string
		want  int
	}{{"", 2}, {", max_concurrency: 5", 5}, {", max_concurrency: 1", 1}} {
		cfg := mustConfig(t, `listeners: [{name: main, address: "127.0.0.1:0"}]
ai:
  providers:
    - {name: tiny, type: local`+tc.field+`}
routes: [{name: ai, ai_gateway: {}}]
`)
		ps, err := AIProviders(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := localModels.Load("")
		if got := m.(*localModel).m.MaxConcurrent(); ps[0].MaxConcurrency != tc.want || got != tc.want {
			t.Errorf("%q: client cap %d, model slots %d, want %d", tc.field, ps[0].MaxConcurrency, got, tc.want)
		}
	}
}
