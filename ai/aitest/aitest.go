// Package aitest is a small OpenAI-compatible server for tests: it answers chat
// completions (streamed or not), text completions, embeddings and the model list with
// predictable text, and can be told to fail, to stall before its first byte, or to send its
// stream's events one at a time on a signal.
package aitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Server is an http.Handler serving the API under /v1. Set its fields before serving.
type Server struct {
	// Name is put in the answers ("reply from <Name>") and model owner.
	Name string
	// Models are listed by /v1/models. Empty means ["test-model"].
	Models []string
	// FailStatus, when not zero, answers every API request with this status.
	FailStatus int
	// Stall, when not nil, holds every request until it is closed (or the request ends)
	// before anything is sent.
	Stall chan struct{}
	// Step, when not nil, makes a stream send each event only after a value is received
	// from it.
	Step chan struct{}
	// Words are the streamed tokens. Empty means ["hello", " from", " <Name>"].
	Words []string
	// IncludeUsage adds a usage chunk at the end of streams.
	IncludeUsage bool

	requests atomic.Int64
	mu       sync.Mutex
	auth     []string
}

// SetFailStatus changes FailStatus while the server runs.
func (s *Server) SetFailStatus(status int) {
	s.mu.Lock()
	s.FailStatus = status
	s.mu.Unlock()
}

// Requests counts the API requests received.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Authorizations returns the Authorization fields received, in order.
func (s *Server) Authorizations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...)
}

func (s *Server) words() []string {
	if len(s.Words) > 0 {
		return s.Words
	}
	return []string{"hello", " from", " " + s.Name}
}

// ServeHTTP implements the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/models" {
		models := s.Models
		if len(models) == 0 {
			models = []string{"test-model"}
		}
		var data []map[string]string
		for _, m := range models {
			data = append(data, map[string]string{"id": m, "object": "model", "owned_by": s.Name})
		}
		writeJSON(w, 200, map[string]any{"object": "list", "data": data})
		return
	}
	s.requests.Add(1)
	s.mu.Lock()
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	failStatus := s.FailStatus
	s.mu.Unlock()
	if s.Stall != nil {
		select {
		case <-s.Stall:
		case <-r.Context().Done():
			return
		}
	}
	if failStatus != 0 {
		writeJSON(w, failStatus, map[string]any{"error": map[string]string{"message": s.Name + " is failing on purpose"}})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Prompt   string `json:"prompt"`
		Input    any    `json:"input"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Model == "" {
		writeJSON(w, 400, map[string]any{"error": map[string]string{"message": "bad request"}})
		return
	}
	prompt := req.Prompt
	for _, m := range req.Messages {
		prompt += m.Content
	}
	in := int64(len(strings.Fields(prompt)))
	text := strings.Join(s.words(), "")
	usage := map[string]int64{"prompt_tokens": in, "completion_tokens": int64(len(s.words())), "total_tokens": in + int64(len(s.words()))}
	switch r.URL.Path {
	case "/v1/chat/completions":
		if req.Stream {
			s.stream(w, r, req.Model, usage)
			return
		}
		writeJSON(w, 200, map[string]any{"id": "chatcmpl-1", "object": "chat.completion", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": text}, "finish_reason": "stop"}},
			"usage":   usage})
	case "/v1/completions":
		writeJSON(w, 200, map[string]any{"id": "cmpl-1", "object": "text_completion", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "text": text, "finish_reason": "stop"}}, "usage": usage})
	case "/v1/embeddings":
		n := 1
		if l, ok := req.Input.([]any); ok {
			n = len(l)
		}
		var data []any
		for i := range n {
			data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": []float64{float64(i), 0.5, -0.5}})
		}
		writeJSON(w, 200, map[string]any{"object": "list", "model": req.Model, "data": data, "usage": map[string]int64{"prompt_tokens": in, "total_tokens": in}})
	default:
		writeJSON(w, 404, map[string]any{"error": map[string]string{"message": "no such endpoint"}})
	}
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, model string, usage map[string]int64) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	f, _ := w.(http.Flusher)
	send := func(v any) bool {
		if s.Step != nil {
			select {
			case <-s.Step:
			case <-r.Context().Done():
				return false
			}
		}
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		if f != nil {
			f.Flush()
		}
		return true
	}
	for _, word := range s.words() {
		if !send(map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
			"choices": []any{map[string]any{"index": 0, "delta": map[string]string{"content": word}, "finish_reason": nil}}}) {
			return
		}
	}
	if s.IncludeUsage {
		if !send(map[string]any{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, "choices": []any{}, "usage": usage}) {
			return
		}
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
