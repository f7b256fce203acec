package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func openTiny(t testing.TB, o Options) *Model {
	t.Helper()
	m, err := OpenOptions("", o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestHandlerChat(t *testing.T) {
	srv := httptest.NewServer(openTiny(t, Options{}).Handler())
	defer srv.Close()
	resp, b := post(t, srv.URL+"/v1/chat/completions", `{"model":"verge-tiny","messages":[{"role":"user","content":"Hello"}],"max_tokens":20,"seed":7,"temperature":0.7}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var out struct {
		Object  string
		Model   string
		Choices []struct {
			Message      Message
			FinishReason string `json:"finish_reason"`
		}
		Usage Usage
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Object != "chat.completion" || out.Model != "verge-tiny" || len(out.Choices) != 1 || out.Choices[0].Message.Role != "assistant" {
		t.Fatalf("got %s", b)
	}
	u := out.Usage
	if u.PromptTokens == 0 || u.CompletionTokens == 0 || u.CompletionTokens > 20 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Fatalf("usage %+v", u)
	}
	// The same seed gives the same text.
	_, b2 := post(t, srv.URL+"/v1/chat/completions", `{"model":"verge-tiny","messages":[{"role":"user","content":"Hello"}],"max_tokens":20,"seed":7,"temperature":0.7}`)
	var out2 struct{ Choices []struct{ Message Message } }
	json.Unmarshal(b2, &out2)
	if out2.Choices[0].Message.Content != out.Choices[0].Message.Content {
		t.Fatalf("seeded outputs differ: %q vs %q", out.Choices[0].Message.Content, out2.Choices[0].Message.Content)
	}
}

// readSSE reads server-sent events until [DONE] or EOF, returning the data lines.
func readSSE(t *testing.T, r io.Reader) (events []string, done bool) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected SSE line %q", line)
		}
		if data == "[DONE]" {
			return events, true
		}
		events = append(events, data)
	}
	return events, false
}

func TestHandlerChatStream(t *testing.T) {
	m := openTiny(t, Options{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	body := `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":30,"seed":3,"stream":true}`
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events, done := readSSE(t, resp.Body)
	if !done || len(events) < 3 {
		t.Fatalf("done=%v, %d events", done, len(events))
	}
	var text strings.Builder
	var finish string
	var usage *Usage
	for i, e := range events {
		var c struct {
			ID      string
			Object  string
			Choices []struct {
				Delta        deltaOut
				FinishReason *string `json:"finish_reason"`
			}
			Usage *Usage
		}
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, e)
		}
		if c.Object != "chat.completion.chunk" || len(c.Choices) != 1 || !strings.HasPrefix(c.ID, "chatcmpl-") {
			t.Fatalf("event %d: %s", i, e)
		}
		if i == 0 && c.Choices[0].Delta.Role != "assistant" {
			t.Fatalf("first event has no role: %s", e)
		}
		text.WriteString(c.Choices[0].Delta.Content)
		if c.Choices[0].FinishReason != nil {
			if i != len(events)-1 {
				t.Fatalf("finish_reason before the last event: %s", e)
			}
			finish, usage = *c.Choices[0].FinishReason, c.Usage
		}
	}
	if finish == "" || usage == nil || usage.CompletionTokens == 0 {
		t.Fatalf("last event lacks finish_reason or usage: %s", events[len(events)-1])
	}
	// The streamed text equals the non-streamed text for the same seed.
	seed := int64(3)
	mt := 30
	res, err := m.Chat(context.Background(), []Message{{Role: "user", Content: "Hi"}}, Sampling{Seed: &seed, MaxTokens: &mt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != text.String() || res.Usage != *usage {
		t.Fatalf("stream %q %+v, non-stream %q %+v", text.String(), *usage, res.Text, res.Usage)
	}
}

func TestHandlerCompletionsAndEmbeddings(t *testing.T) {
	srv := httptest.NewServer(openTiny(t, Options{}).Handler())
	defer srv.Close()
	resp, b := post(t, srv.URL+"/v1/completions", `{"prompt":"The proxy","max_tokens":10,"temperature":0}`)
	var c struct {
		Object  string
		Choices []struct{ Text string }
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &c) != nil || c.Object != "text_completion" || len(c.Choices) != 1 || c.Choices[0].Text == "" {
		t.Fatalf("completions: %d %s", resp.StatusCode, b)
	}
	resp, b = post(t, srv.URL+"/v1/embeddings", `{"input":["the cache","the proxy"]}`)
	var e struct {
		Data []struct {
			Index     int
			Embedding []float64
		}
		Usage Usage
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &e) != nil || len(e.Data) != 2 || len(e.Data[1].Embedding) != 128 || e.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings: %d %s", resp.StatusCode, b)
	}
	var norm float64
	for _, x := range e.Data[0].Embedding {
		norm += x * x
	}
	if norm < 0.999 || norm > 1.001 {
		t.Fatalf("embedding norm² %v, want 1", norm)
	}
	resp, b = post(t, srv.URL+"/v1/embeddings", `{"input":"x","encoding_format":"base64"}`)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"embedding":"`) {
		t.Fatalf("base64 embeddings: %d %s", resp.StatusCode, b)
	}
	r, err := http.Get(srv.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), `"id":"verge-tiny"`) {
		t.Fatalf("models: %d %s", r.StatusCode, b)
	}
}

func TestHandlerErrors(t *testing.T) {
	srv := httptest.NewServer(openTiny(t, Options{MaxBodyBytes: 4096, MaxTokens: 50, MaxPromptTokens: 200}).Handler())
	defer srv.Close()
	for _, tc := range []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"bad json", "/v1/chat/completions", `{"messages":`, 400, "invalid_json"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404, "model_not_found"},
		{"no messages", "/v1/chat/completions", `{"messages":[]}`, 400, "invalid_value"},
		{"bad role", "/v1/chat/completions", `{"messages":[{"role":"wizard","content":"x"}]}`, 400, "invalid_value"},
		{"max_tokens over limit", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":51}`, 400, "invalid_value"},
		{"max_tokens zero", "/v1/completions", `{"prompt":"x","max_tokens":0}`, 400, "invalid_value"},
		{"temperature", "/v1/completions", `{"prompt":"x","temperature":3}`, 400, "invalid_value"},
		{"top_p", "/v1/completions", `{"prompt":"x","top_p":0}`, 400, "invalid_value"},
		{"n", "/v1/completions", `{"prompt":"x","n":2}`, 400, "invalid_value"},
		{"stop too many", "/v1/completions", `{"prompt":"x","stop":["a","b","c","d","e"]}`, 400, "invalid_value"},
		{"image part", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "invalid_json"},
		{"prompt too long", "/v1/completions", `{"prompt":"` + strings.Repeat("ab ", 300) + `"}`, 400, "context_length_exceeded"},
		{"body too large", "/v1/completions", `{"prompt":"` + strings.Repeat("a", 5000) + `"}`, 413, "request_too_large"},
		{"embedding input type", "/v1/embeddings", `{"input":[[1,2,3]]}`, 400, "invalid_value"},
		{"embedding dimensions", "/v1/embeddings", `{"input":"x","dimensions":3}`, 400, "invalid_value"},
		{"unknown path", "/v1/nothing", `{}`, 404, "unknown_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, srv.URL+tc.path, tc.body)
			var e struct {
				Error errorBody
			}
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("status %d, body %s: %v", resp.StatusCode, b, err)
			}
			if resp.StatusCode != tc.status || e.Error.Code != tc.code || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, e.Error, tc.status, tc.code)
			}
		})
	}
	r, err := http.Get(srv.URL + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 405 {
		t.Fatalf("GET chat: %d, want 405", r.StatusCode)
	}
}

// TestHandlerBusy holds the only generation slot with a streaming request
// that the test does not read, and checks a second request gets 429.
func TestHandlerBusy(t *testing.T) {
	m := openTiny(t, Options{MaxConcurrent: 1})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	holding := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		first := true
		_, err := m.Complete(ctx, "hold", Sampling{}, func(string) error {
			if first {
				first = false
				close(holding)
			}
			<-ctx.Done()
			return ctx.Err()
		})
		done <- err
	}()
	select {
	case <-holding:
	case err := <-done:
		t.Fatalf("generation ended early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("generation never started")
	}
	resp, b := post(t, srv.URL+"/v1/completions", `{"prompt":"x"}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "model_busy") {
		t.Fatalf("got %d %s, want 429 model_busy", resp.StatusCode, b)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled generation returned no error")
	}
}

func TestHandlerCompletionsStream(t *testing.T) {
	srv := httptest.NewServer(openTiny(t, Options{}).Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"The cache","max_tokens":12,"temperature":0,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, done := readSSE(t, resp.Body)
	if !done || len(events) < 2 {
		t.Fatalf("done=%v, %d events", done, len(events))
	}
	var text strings.Builder
	for i, e := range events {
		var c struct {
			Object  string
			Choices []struct {
				Text         *string
				FinishReason *string `json:"finish_reason"`
			}
			Usage *Usage
		}
		if err := json.Unmarshal([]byte(e), &c); err != nil || c.Object != "text_completion" || len(c.Choices) != 1 || c.Choices[0].Text == nil {
			t.Fatalf("event %d: %s", i, e)
		}
		text.WriteString(*c.Choices[0].Text)
		last := i == len(events)-1
		if (c.Choices[0].FinishReason != nil) != last || (c.Usage != nil) != last {
			t.Fatalf("event %d (last=%v) has finish_reason/usage wrong: %s", i, last, e)
		}
	}
	_, b := post(t, srv.URL+"/v1/completions", `{"prompt":"The cache","max_tokens":12,"temperature":0}`)
	var c struct{ Choices []struct{ Text string } }
	json.Unmarshal(b, &c)
	if c.Choices[0].Text != text.String() {
		t.Fatalf("streamed %q, non-streamed %q", text.String(), c.Choices[0].Text)
	}
}

// noFlush is a ResponseWriter without Flush, as an in-process caller may use.
type noFlush struct{ w http.ResponseWriter }

func (n noFlush) Header() http.Header         { return n.w.Header() }
func (n noFlush) Write(b []byte) (int, error) { return n.w.Write(b) }
func (n noFlush) WriteHeader(code int)        { n.w.WriteHeader(code) }

func TestHandlerStreamWithoutFlusher(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"Hi"}],"max_tokens":10,"temperature":0,"stream":true}`))
	openTiny(t, Options{}).Handler().ServeHTTP(noFlush{rec}, req)
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasSuffix(body, "data: [DONE]\n\n") || strings.Contains(body, `"error"`) {
		t.Fatalf("got %d %q", rec.Code, body)
	}
}

// failingWriter fails every write after the first n, as a connection to a
// client that went away does.
type failingWriter struct {
	h      http.Header
	n      int
	writes int
}

func (f *failingWriter) Header() http.Header { return f.h }
func (f *failingWriter) WriteHeader(int)     {}
func (f *failingWriter) Write(b []byte) (int, error) {
	f.writes++
	if f.writes > f.n {
		return 0, errors.New("connection reset")
	}
	return len(b), nil
}

// TestHandlerStopsWhenWritesFail streams a long greedy generation (which
// never ends by itself before max_tokens) to a writer that starts failing,
// and checks generation stops at the next piece and frees its slot.
func TestHandlerStopsWhenWritesFail(t *testing.T) {
	m := openTiny(t, Options{MaxConcurrent: 1})
	w := &failingWriter{h: http.Header{}, n: 5}
	req := httptest.NewRequest("POST", "/v1/completions", strings.NewReader(`{"prompt":"The","max_tokens":900,"temperature":0,"stream":true}`))
	m.Handler().ServeHTTP(w, req)
	if w.writes > w.n+2 {
		t.Fatalf("%d writes after the client went away at write %d", w.writes, w.n+1)
	}
	if m.inUse() != 0 {
		t.Fatal("slot not released")
	}
}
