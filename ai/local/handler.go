package local

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// Handler returns an http.Handler serving the model over the
// OpenAI-compatible API: GET /v1/models and /v1/models/{id}, POST
// /v1/chat/completions and /v1/completions (JSON, or server-sent events
// with "stream": true) and POST /v1/embeddings. Errors are JSON objects
// {"error": {"message", "type", "code"}} with a 4xx or 5xx status.
func (m *Model) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", m.serveModels)
	mux.HandleFunc("GET /v1/models/{id}", m.serveModel)
	mux.HandleFunc("POST /v1/chat/completions", m.serveChat)
	mux.HandleFunc("POST /v1/completions", m.serveCompletions)
	mux.HandleFunc("POST /v1/embeddings", m.serveEmbeddings)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		for _, p := range []string{"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"} {
			if r.URL.Path == p || strings.HasPrefix(r.URL.Path, "/v1/models/") && p == "/v1/models" {
				writeError(w, &Error{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed", Message: fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)})
				return
			}
		}
		writeError(w, &Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url", Message: fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path)})
	})
	return mux
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (m *Model) object() modelObject {
	return modelObject{ID: m.name, Object: "model", Created: m.created, OwnedBy: "verge"}
}

func (m *Model) serveModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelObject{m.object()}})
}

func (m *Model) serveModel(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != m.name {
		writeError(w, m.notFound(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, m.object())
}

func (m *Model) notFound(name string) *Error {
	return &Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Message: fmt.Sprintf("model %q does not exist; this server has %q", name, m.name)}
}

// stringList is a JSON string or array of strings.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	*s = many
	return nil
}

// content is a message's content: a string, or an array of parts of which
// the text parts are used.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*c = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = content(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return errors.New("must be a string or an array of content parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("content part type %q is not supported (only text)", p.Type)
		}
		sb.WriteString(p.Text)
	}
	*c = content(sb.String())
	return nil
}

type samplingFields struct {
	Model               string     `json:"model"`
	MaxTokens           *int       `json:"max_tokens"`
	MaxCompletionTokens *int       `json:"max_completion_tokens"`
	Temperature         *float64   `json:"temperature"`
	TopP                *float64   `json:"top_p"`
	Seed                *int64     `json:"seed"`
	Stop                stringList `json:"stop"`
	N                   *int       `json:"n"`
	Stream              bool       `json:"stream"`
}

func (f *samplingFields) sampling() (Sampling, error) {
	if f.N != nil && *f.N != 1 {
		return Sampling{}, badRequest("invalid_value", "n must be 1")
	}
	mt := f.MaxTokens
	if f.MaxCompletionTokens != nil {
		mt = f.MaxCompletionTokens
	}
	return Sampling{MaxTokens: mt, Temperature: f.Temperature, TopP: f.TopP, Seed: f.Seed, Stop: f.Stop}, nil
}

type chatRequest struct {
	samplingFields
	Messages []struct {
		Role    string  `json:"role"`
		Content content `json:"content"`
	} `json:"messages"`
}

type completionRequest struct {
	samplingFields
	Prompt stringList `json:"prompt"`
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

// decode reads a JSON request body of at most MaxBodyBytes into v.
func (m *Model) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, m.opts.MaxBodyBytes)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large", Message: fmt.Sprintf("request body exceeds %d bytes", m.opts.MaxBodyBytes)}
		}
		return badRequest("invalid_json", "request body is not valid JSON: %v", err)
	}
	return nil
}

func (m *Model) checkModel(name string) error {
	if name != "" && name != m.name {
		return m.notFound(name)
	}
	return nil
}

type choiceOut struct {
	Index        int       `json:"index"`
	Message      *Message  `json:"message,omitempty"`
	Delta        *deltaOut `json:"delta,omitempty"`
	Text         *string   `json:"text,omitempty"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type deltaOut struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}

type completionOut struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Choices []choiceOut `json:"choices"`
	Usage   *Usage      `json:"usage,omitempty"`
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (m *Model) serveChat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := m.decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := m.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	s, err := req.sampling()
	if err != nil {
		writeError(w, err)
		return
	}
	msgs := make([]Message, len(req.Messages))
	for i, msg := range req.Messages {
		msgs[i] = Message{Role: msg.Role, Content: string(msg.Content)}
	}
	m.serveGeneration(w, r, "chat.completion", "chatcmpl-", req.Stream, func(ctx context.Context, on func(string) error) (*Result, error) {
		return m.Chat(ctx, msgs, s, on)
	})
}

func (m *Model) serveCompletions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := m.decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := m.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Prompt) != 1 {
		writeError(w, badRequest("invalid_value", "prompt must be one string"))
		return
	}
	s, err := req.sampling()
	if err != nil {
		writeError(w, err)
		return
	}
	m.serveGeneration(w, r, "text_completion", "cmpl-", req.Stream, func(ctx context.Context, on func(string) error) (*Result, error) {
		return m.Complete(ctx, req.Prompt[0], s, on)
	})
}

// serveGeneration runs gen and writes its result as one JSON object, or,
// when stream is set, as server-sent events: one chunk per piece of text, a
// last chunk with the finish reason and the usage, then "data: [DONE]".
// Headers are written with the first piece, so errors found before it (bad
// input, busy) still get their status.
func (m *Model) serveGeneration(w http.ResponseWriter, r *http.Request, object, idPrefix string, stream bool, gen func(context.Context, func(string) error) (*Result, error)) {
	id, created := newID(idPrefix), time.Now().Unix()
	chat := object == "chat.completion"
	if !stream {
		res, err := gen(r.Context(), nil)
		if err != nil {
			writeError(w, err)
			return
		}
		c := choiceOut{FinishReason: &res.FinishReason}
		if chat {
			c.Message = &Message{Role: "assistant", Content: res.Text}
		} else {
			c.Text = &res.Text
		}
		writeJSON(w, http.StatusOK, completionOut{ID: id, Object: object, Created: created, Model: m.name, Choices: []choiceOut{c}, Usage: &res.Usage})
		return
	}
	chunkObject := object
	if chat {
		chunkObject = "chat.completion.chunk"
	}
	rc := http.NewResponseController(w)
	started := false
	send := func(c choiceOut, u *Usage) error {
		if !started {
			started = true
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
			if chat {
				if err := writeEvent(w, completionOut{ID: id, Object: chunkObject, Created: created, Model: m.name, Choices: []choiceOut{{Delta: &deltaOut{Role: "assistant"}}}}); err != nil {
					return err
				}
			}
		}
		if err := writeEvent(w, completionOut{ID: id, Object: chunkObject, Created: created, Model: m.name, Choices: []choiceOut{c}, Usage: u}); err != nil {
			return err
		}
		return flush(rc)
	}
	piece := func(text string) choiceOut {
		if chat {
			return choiceOut{Delta: &deltaOut{Content: text}}
		}
		return choiceOut{Text: &text}
	}
	res, err := gen(r.Context(), func(text string) error { return send(piece(text), nil) })
	if err != nil {
		if !started {
			writeError(w, err)
			return
		}
		e := asError(err)
		writeEvent(w, map[string]any{"error": errorBody{Message: e.Message, Type: e.Type, Code: e.Code}})
		flush(rc)
		return
	}
	last := piece("")
	if chat {
		last.Delta = &deltaOut{}
	}
	last.FinishReason = &res.FinishReason
	if send(last, &res.Usage) != nil {
		return
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	flush(rc)
}

// flush sends what is buffered; a ResponseWriter that cannot flush (an
// in-process caller's recorder) is not an error.
func flush(rc *http.ResponseController) error {
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func writeEvent(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(b)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	_, err = w.Write(buf)
	return err
}

func (m *Model) serveEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if err := m.decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := m.checkModel(req.Model); err != nil {
		writeError(w, err)
		return
	}
	var inputs stringList
	if err := json.Unmarshal(req.Input, &inputs); err != nil || len(req.Input) == 0 {
		writeError(w, badRequest("invalid_value", "input must be a string or an array of strings"))
		return
	}
	if req.Dimensions != nil && *req.Dimensions != m.w.hp.dim {
		writeError(w, badRequest("invalid_value", "dimensions must be %d for this model", m.w.hp.dim))
		return
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		writeError(w, badRequest("invalid_value", "encoding_format must be float or base64"))
		return
	}
	vecs, usage, err := m.Embed(r.Context(), inputs)
	if err != nil {
		writeError(w, err)
		return
	}
	data := make([]map[string]any, len(vecs))
	for i, v := range vecs {
		var emb any = v
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(v))
			for j, x := range v {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(x))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "model": m.name, "usage": map[string]int{"prompt_tokens": usage.PromptTokens, "total_tokens": usage.TotalTokens}})
}

type errorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
}

// asError maps any error from this package to an *Error: the package's own
// errors keep theirs, a timeout is 504, a cancelled request 499, anything
// else 500.
func asError(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout", Message: "generation timed out"}
	case errors.Is(err, context.Canceled):
		return &Error{Status: 499, Type: "invalid_request_error", Code: "canceled", Message: "request canceled"}
	}
	return &Error{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error", Message: err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	e := asError(err)
	if e.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, map[string]errorBody{"error": {Message: e.Message, Type: e.Type, Code: e.Code}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"encoding the response failed","type":"server_error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
