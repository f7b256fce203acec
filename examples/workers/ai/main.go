// Command ai is a worker that puts a model to work on the request body through the AI
// binding (sdk.AI): it summarises text, streams the summary token by token, classifies it,
// summarises each paragraph, or embeds it. With no ai providers configured the binding
// reaches the tiny model built into Verge, whose words are random but real: the same calls
// run against vLLM, llama.cpp, Ollama or a hosted provider once the config names them.
//
//	POST /summarize         {"summary": "...", "provider": "...", "tokens": N}
//	POST /summarize?stream  the summary as text/plain, flushed token by token
//	POST /classify          {"label": "...", "provider": "..."}
//	POST /paragraphs        one summary per paragraph (one model call each)
//	POST /embed             {"dimensions": N}
//
// The model is the AI_MODEL variable, verge-tiny without one.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o ai.wasm ./examples/workers/ai
package main

import (
	"errors"
	"io"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

// maxText bounds the text a request may send.
const maxText = 16 << 10

func model() string {
	if m := sdk.Env("AI_MODEL"); m != "" {
		return m
	}
	return "verge-tiny"
}

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		if r.Method != "POST" {
			w.Header().Set("Allow", "POST")
			sdk.WriteJSONError(w, &sdk.JSONError{Status: 405, Err: errors.New("POST the text to work on")})
			return
		}
		text, err := io.ReadAll(io.LimitReader(r.Body, maxText+1))
		if err != nil || len(text) > maxText || len(strings.TrimSpace(string(text))) == 0 {
			sdk.WriteJSONError(w, &sdk.JSONError{Status: 400, Err: errors.New("send 1 to 16384 bytes of text")})
			return
		}
		ai := sdk.AI("AI")
		switch r.Path() {
		case "/summarize":
			if r.URL().Query().Has("stream") {
				streamSummary(w, ai, string(text))
				return
			}
			res, err := ai.Chat(summarize(string(text)))
			if err != nil {
				fail(w, err)
				return
			}
			sdk.WriteJSON(w, 200, map[string]any{"summary": res.Text(), "provider": res.Provider, "tokens": res.Usage.CompletionTokens})
		case "/classify":
			res, err := ai.Chat(&sdk.AIChatRequest{Model: model(), MaxTokens: 4, Messages: []sdk.AIMessage{
				{Role: "system", Content: "Answer with one word: question, complaint, praise or other."},
				{Role: "user", Content: string(text)},
			}})
			if err != nil {
				fail(w, err)
				return
			}
			sdk.WriteJSON(w, 200, map[string]any{"label": strings.TrimSpace(res.Text()), "provider": res.Provider})
		case "/paragraphs":
			var out []string
			for _, p := range strings.Split(string(text), "\n\n") {
				if strings.TrimSpace(p) == "" {
					continue
				}
				res, err := ai.Chat(summarize(p))
				if err != nil {
					fail(w, err)
					return
				}
				out = append(out, res.Text())
			}
			sdk.WriteJSON(w, 200, map[string]any{"summaries": out})
		case "/embed":
			res, err := ai.Embed(&sdk.AIEmbeddingRequest{Model: model(), Input: []string{string(text)}})
			if err != nil {
				fail(w, err)
				return
			}
			n := 0
			if len(res.Data) > 0 {
				n = len(res.Data[0].Embedding)
			}
			sdk.WriteJSON(w, 200, map[string]any{"dimensions": n, "provider": res.Provider})
		default:
			sdk.WriteJSONError(w, &sdk.JSONError{Status: 404, Err: errors.New("POST to /summarize, /classify, /paragraphs or /embed")})
		}
	})
}

func summarize(text string) *sdk.AIChatRequest {
	return &sdk.AIChatRequest{Model: model(), MaxTokens: 32, Messages: []sdk.AIMessage{
		{Role: "system", Content: "Summarise the user's text in one sentence."},
		{Role: "user", Content: text},
	}}
}

// streamSummary passes each token on to the client as the model produces it.
func streamSummary(w sdk.ResponseWriter, ai *sdk.AIBinding, text string) {
	s, err := ai.ChatStream(summarize(text))
	if err != nil {
		fail(w, err)
		return
	}
	defer s.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-AI-Provider", s.Provider)
	w.WriteHeader(200)
	f, _ := w.(sdk.Flusher)
	for {
		c, err := s.Next()
		if err == io.EOF {
			io.WriteString(w, "\n")
			return
		}
		if err != nil {
			sdk.Log(sdk.LevelError, "stream: %v", err)
			return
		}
		io.WriteString(w, c.Text())
		if f != nil {
			f.Flush() // this token leaves now, not with the next 32 KiB
		}
	}
}

// fail answers a failed model call: 429 when a limit stopped it, 502 otherwise, with the
// message naming the providers that failed.
func fail(w sdk.ResponseWriter, err error) {
	status := 502
	var e *sdk.Error
	if errors.As(err, &e) && e.Code == sdk.ErrLimit {
		status = 429
	}
	var ae *sdk.AIError
	if errors.As(err, &ae) {
		status = ae.Status
	}
	sdk.WriteJSON(w, status, map[string]string{"error": err.Error()})
}

func main() {}
