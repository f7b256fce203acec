package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/ai/aitest"
	"github.com/verge-edge/verge/internal/testwasm"
)

// aiCall posts text to the ai example worker and decodes its JSON answer.
func aiCall(t *testing.T, addr, path, text string) (int, map[string]any) {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Post("http://"+addr+path, "text/plain", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %d %q is not JSON", path, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// TestDevAIWorker runs examples/workers/ai with `verge dev` and no provider: the binding
// reaches the built-in model for chat (whole and streamed token by token) and embeddings.
func TestDevAIWorker(t *testing.T) {
	p := startDev(t, t.TempDir(), filepath.Join(testwasm.Root(), "examples", "workers", "ai"))
	code, m := aiCall(t, p.addr, "/summarize", "The gateway caches answers and falls back to the next provider.")
	if code != 200 || m["provider"] != "builtin" || m["summary"] == "" || m["tokens"].(float64) < 1 {
		t.Fatalf("summarize: %d %v\n%s", code, m, p.stderr)
	}
	code, m = aiCall(t, p.addr, "/embed", "hello")
	if code != 200 || m["dimensions"].(float64) < 1 {
		t.Fatalf("embed: %d %v", code, m)
	}
	resp, err := http.Post("http://"+p.addr+"/summarize?stream", "text/plain", strings.NewReader("Stream it."))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-AI-Provider") != "builtin" || len(strings.TrimSpace(string(b))) == 0 {
		t.Fatalf("stream: %d %v %q", resp.StatusCode, resp.Header, b)
	}
}

// TestRunAIWorkerBinding runs the ai example under `verge run` with providers: a failing
// one the binding falls back from, one it does not grant, a stepped stream that reaches the
// client token by token through the worker, and the subrequest limit across calls.
func TestRunAIWorkerBinding(t *testing.T) {
	module := testwasm.BuildFile(t, "examples/workers/ai")
	failing := &aitest.Server{Name: "failing", FailStatus: 500}
	fs := httptest.NewServer(failing)
	t.Cleanup(fs.Close)
	other := &aitest.Server{Name: "other"}
	ots := httptest.NewServer(other)
	t.Cleanup(ots.Close)
	step := make(chan struct{})
	good := &aitest.Server{Name: "good", Step: step}
	gs := httptest.NewServer(good)
	t.Cleanup(gs.Close)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
ai:
  providers:
    - {name: other, base_url: "%s/v1", priority: -5}
    - {name: failing, base_url: "%s/v1"}
    - {name: good, base_url: "%s/v1", priority: 1}
routes: [{name: ai, worker: ai}]
workers:
  - name: ai
    module: %q
    env: {AI_MODEL: m}
    ai: {binding: AI, providers: [failing, good]}
    limits: {subrequests: 2}
`, p.addr, p.pidFile, ots.URL, fs.URL, gs.URL, module)
		writeFile(t, p.cfgFile, y)
	})
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + p.addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	code, m := aiCall(t, p.addr, "/summarize", "Some text.")
	if code != 200 || m["provider"] != "good" || m["summary"] != "hello from good" {
		t.Fatalf("summarize: %d %v\n%s", code, m, p.stderr)
	}
	if failing.Requests() != 1 || other.Requests() != 0 {
		t.Fatalf("failing got %d, other (not granted) %d requests", failing.Requests(), other.Requests())
	}

	// The stream reaches the client token by token: the provider sends the next only after
	// the client read the previous one.
	go func() { step <- struct{}{} }()
	resp, err := http.Post("http://"+p.addr+"/summarize?stream", "text/plain", strings.NewReader("Stream it."))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Each token is awaited as a prefix of the text read so far: the bytes that follow it
	// without a step (the worker's final newline after the last token) may come in the same
	// read, and the last read may return them with io.EOF.
	got, cum := "", ""
	buf := make([]byte, 64)
	var rerr error
	for i, want := range []string{"hello", " from", " good"} {
		if i > 0 {
			select {
			case step <- struct{}{}:
			case <-time.After(30 * time.Second):
				t.Fatalf("the provider could not send token %d", i)
			}
		}
		cum += want
		for !strings.HasPrefix(got, cum) {
			if rerr != nil {
				t.Fatalf("token %d: got %q, then %v", i, got, rerr)
			}
			var n int
			n, rerr = resp.Body.Read(buf)
			got += string(buf[:n])
			if len(got) > len(cum) && !strings.HasPrefix(got, cum) {
				t.Fatalf("token %d: got %q, want it to start with %q", i, got, cum)
			}
		}
	}
	if rerr == nil {
		rest, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		got += string(rest)
	} else if rerr != io.EOF {
		t.Fatal(rerr)
	}
	if got != "hello from good\n" {
		t.Fatalf("the stream was %q, want %q", got, "hello from good\n")
	}

	// Three paragraphs need three calls; the worker may make two.
	code, m = aiCall(t, p.addr, "/paragraphs", "one\n\ntwo\n\nthree")
	if code != 429 || !strings.Contains(fmt.Sprint(m["error"]), "too many subrequests (limit 2)") {
		t.Fatalf("paragraphs: %d %v", code, m)
	}
	// With every granted provider failing, the error names them.
	good.SetFailStatus(503)
	code, m = aiCall(t, p.addr, "/classify", "Why?")
	if code != 502 || !strings.Contains(fmt.Sprint(m["error"]), "provider failing: status 500") || !strings.Contains(fmt.Sprint(m["error"]), "provider good: status 503") {
		t.Fatalf("classify: %d %v", code, m)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
