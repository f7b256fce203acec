package sdk

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/verge-edge/verge/internal/workerabi"
)

// AIBinding calls models through the AI binding of the worker's configuration
// (ai: {binding: AI} under the worker): the OpenAI-compatible providers of the server's ai
// section that the binding grants, tried in order with fallback on failures, or, with no
// provider configured, the tiny model built into Verge. Each call counts as one subrequest
// and is bounded by the worker's wall time limit.
type AIBinding struct {
	name string
}

// AI returns the AI binding name. Calls through a name the configuration does not bind
// fail with ErrUnavailable.
func AI(name string) *AIBinding { return &AIBinding{name: name} }

// AIMessage is one chat message.
type AIMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// AIChatRequest is a chat completion request. Zero fields are left out (the provider's
// defaults apply).
type AIChatRequest struct {
	Model       string      `json:"model"`
	Messages    []AIMessage `json:"messages"`
	MaxTokens   int         `json:"max_tokens,omitempty"`
	Temperature *float64    `json:"temperature,omitempty"`
	TopP        *float64    `json:"top_p,omitempty"`
	Stop        []string    `json:"stop,omitempty"`
	Seed        *int64      `json:"seed,omitempty"`
	Stream      bool        `json:"stream,omitempty"`
}

// AIUsage counts a request's tokens.
type AIUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// AIChatResponse is a chat completion.
type AIChatResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index        int       `json:"index"`
		Message      AIMessage `json:"message"`
		FinishReason string    `json:"finish_reason"`
	} `json:"choices"`
	Usage AIUsage `json:"usage"`
	// Provider is the provider that answered.
	Provider string `json:"-"`
}

// Text returns the first choice's content.
func (r *AIChatResponse) Text() string {
	if len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].Message.Content
}

// AIChatChunk is one event of a streamed chat completion.
type AIChatChunk struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index        int       `json:"index"`
		Delta        AIMessage `json:"delta"`
		FinishReason *string   `json:"finish_reason"`
	} `json:"choices"`
	Usage *AIUsage `json:"usage,omitempty"`
}

// Text returns the first choice's new content.
func (c *AIChatChunk) Text() string {
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].Delta.Content
}

// AICompletionRequest is a text completion request.
type AICompletionRequest struct {
	Model       string   `json:"model"`
	Prompt      string   `json:"prompt"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	Stop        []string `json:"stop,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
}

// AICompletionResponse is a text completion.
type AICompletionResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index        int    `json:"index"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage    AIUsage `json:"usage"`
	Provider string  `json:"-"`
}

// Text returns the first choice's text.
func (r *AICompletionResponse) Text() string {
	if len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].Text
}

// AIEmbeddingRequest asks for the embeddings of Input.
type AIEmbeddingRequest struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

// AIEmbeddingResponse holds one vector per input, in order.
type AIEmbeddingResponse struct {
	Model string `json:"model"`
	Data  []struct {
		Index     int       `json:"index"`
		Embedding []float64 `json:"embedding"`
	} `json:"data"`
	Usage    AIUsage `json:"usage"`
	Provider string  `json:"-"`
}

// AIError is a provider's refusal of a request (a 4xx status: the request's fault, not
// retried on another provider). Failures of every provider are *Error values instead, with
// ErrUnavailable (ErrLimit when all were busy), whose message names each provider and why
// it failed.
type AIError struct {
	Provider string
	Status   int
	Message  string
}

func (e *AIError) Error() string {
	return fmt.Sprintf("ai: provider %s: status %d: %s", e.Provider, e.Status, e.Message)
}

// aiResult is a decoded OpAIRun answer.
type aiResult struct {
	provider string
	status   int
	body     *streamBody
}

func (a *AIBinding) run(path string, v any) (*aiResult, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var e workerabi.Encoder
	e.Str(a.name)
	e.Str(path)
	e.Bytes(body)
	mayInterleave()
	res, err := rawCall(workerabi.OpAIRun, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	h := d.U32()
	r := &aiResult{provider: d.Str(), status: int(d.U32())}
	r.body = &streamBody{first: cloneBytes(&d), handle: h}
	if d.Err != nil {
		return nil, d.Err
	}
	if r.status/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(r.body, 4096))
		r.body.Close()
		var eb struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := string(bytes.TrimSpace(b))
		if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
			msg = eb.Error.Message
		}
		return nil, &AIError{Provider: r.provider, Status: r.status, Message: msg}
	}
	return r, nil
}

func (r *aiResult) decode(v any) error {
	b, err := io.ReadAll(r.body)
	r.body.Close()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("ai: provider %s: invalid response: %w", r.provider, err)
	}
	return nil
}

// Chat sends a chat completion request and waits for the whole answer (Stream is ignored:
// use ChatStream).
func (a *AIBinding) Chat(req *AIChatRequest) (*AIChatResponse, error) {
	q := *req
	q.Stream = false
	r, err := a.run("/chat/completions", &q)
	if err != nil {
		return nil, err
	}
	out := &AIChatResponse{Provider: r.provider}
	return out, r.decode(out)
}

// Run is Chat with one user message: the answer's text.
func (a *AIBinding) Run(model, prompt string) (string, error) {
	r, err := a.Chat(&AIChatRequest{Model: model, Messages: []AIMessage{{Role: "user", Content: prompt}}})
	if err != nil {
		return "", err
	}
	return r.Text(), nil
}

// Complete sends a text completion request.
func (a *AIBinding) Complete(req *AICompletionRequest) (*AICompletionResponse, error) {
	r, err := a.run("/completions", req)
	if err != nil {
		return nil, err
	}
	out := &AICompletionResponse{Provider: r.provider}
	return out, r.decode(out)
}

// Embed asks for embeddings.
func (a *AIBinding) Embed(req *AIEmbeddingRequest) (*AIEmbeddingResponse, error) {
	r, err := a.run("/embeddings", req)
	if err != nil {
		return nil, err
	}
	out := &AIEmbeddingResponse{Provider: r.provider}
	return out, r.decode(out)
}

// ChatStream sends a streamed chat completion request; its chunks arrive with Next as the
// model produces them. Close the stream (or read it to the end).
func (a *AIBinding) ChatStream(req *AIChatRequest) (*AIChatStream, error) {
	q := *req
	q.Stream = true
	r, err := a.run("/chat/completions", &q)
	if err != nil {
		return nil, err
	}
	return &AIChatStream{Provider: r.provider, body: r.body, br: bufio.NewReaderSize(r.body, 4096)}, nil
}

// AIChatStream is a chat completion arriving chunk by chunk.
type AIChatStream struct {
	// Provider is the provider that answers.
	Provider string
	body     *streamBody
	br       *bufio.Reader
	done     bool
}

// maxAIEvent bounds one server-sent event of a stream.
const maxAIEvent = 1 << 20

// Next returns the next chunk as soon as it arrived, or io.EOF after the last.
func (s *AIChatStream) Next() (*AIChatChunk, error) {
	for !s.done {
		data, err := s.event()
		if err != nil {
			return nil, err
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			s.done = true
			break
		}
		if len(data) == 0 {
			continue
		}
		c := &AIChatChunk{}
		if err := json.Unmarshal(data, c); err != nil {
			return nil, fmt.Errorf("ai: provider %s: invalid stream event: %w", s.Provider, err)
		}
		return c, nil
	}
	return nil, io.EOF
}

// event reads the data of the next server-sent event.
func (s *AIChatStream) event() ([]byte, error) {
	var data []byte
	have := false
	for {
		line, err := s.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, errors.New("ai: stream line too long")
		}
		if err != nil && len(line) == 0 {
			if err == io.EOF && have {
				return data, nil
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if have {
				return data, nil
			}
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if have {
				data = append(data, '\n')
			}
			if len(data)+len(v) > maxAIEvent {
				return nil, errors.New("ai: stream event too large")
			}
			data = append(data, bytes.TrimPrefix(v, []byte(" "))...)
			have = true
		}
	}
}

// Close ends the stream.
func (s *AIChatStream) Close() error { return s.body.Close() }
