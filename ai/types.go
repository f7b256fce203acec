package ai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatRequest is a chat completion request (POST /chat/completions). Zero fields are left
// out, so the provider's defaults apply.
type ChatRequest struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	MaxTokens   int       `json:"max_tokens,omitempty"`
	Temperature *float64  `json:"temperature,omitempty"`
	TopP        *float64  `json:"top_p,omitempty"`
	Stop        []string  `json:"stop,omitempty"`
	Seed        *int64    `json:"seed,omitempty"`
	Stream      bool      `json:"stream,omitempty"`
}

// Usage counts a request's tokens.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// ChatChoice is one generated message.
type ChatChoice struct {
	Index        int     `json:"index"`
	Message      Message `json:"message"`
	FinishReason string  `json:"finish_reason"`
}

// ChatResponse is a chat completion.
type ChatResponse struct {
	ID      string       `json:"id"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   Usage        `json:"usage"`
	// Provider is the provider that answered (not part of the wire format).
	Provider string `json:"-"`
}

// Text returns the first choice's content, "" when there is none.
func (r *ChatResponse) Text() string {
	if len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].Message.Content
}

// ChatChunk is one event of a streamed chat completion.
type ChatChunk struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index        int     `json:"index"`
		Delta        Message `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage,omitempty"`
}

// Text returns the first choice's new content.
func (c *ChatChunk) Text() string {
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].Delta.Content
}

// CompletionRequest is a text completion request (POST /completions).
type CompletionRequest struct {
	Model       string   `json:"model"`
	Prompt      string   `json:"prompt"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	Stop        []string `json:"stop,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
}

// CompletionResponse is a text completion.
type CompletionResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index        int    `json:"index"`
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage    Usage  `json:"usage"`
	Provider string `json:"-"`
}

// Text returns the first choice's text.
func (r *CompletionResponse) Text() string {
	if len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].Text
}

// EmbeddingRequest asks for the embeddings of Input (POST /embeddings).
type EmbeddingRequest struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

// EmbeddingResponse holds one vector per input, in order.
type EmbeddingResponse struct {
	Model string `json:"model"`
	Data  []struct {
		Index     int       `json:"index"`
		Embedding []float64 `json:"embedding"`
	} `json:"data"`
	Usage    Usage  `json:"usage"`
	Provider string `json:"-"`
}

// MaxResponseSize bounds a non-streamed response the typed calls decode.
const MaxResponseSize = 16 << 20

// StatusError is a provider's answer other than 2xx that is not retried (a 4xx: the request's
// fault), with the provider's message.
type StatusError struct {
	Provider string
	Status   int
	Message  string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("ai: provider %s: status %d: %s", e.Provider, e.Status, e.Message)
}

// call sends v to path and returns the accepted response, or an error for a non-2xx one.
func (c *Client) call(ctx context.Context, path, model string, v any) (*Response, error) {
	if model == "" {
		return nil, errors.New("ai: model is required")
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	res, err := c.Do(ctx, Call{Path: path, Model: model, Body: body})
	if err != nil {
		return nil, err
	}
	if res.Status/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(res, errBodyCap))
		res.Close()
		return nil, &StatusError{Provider: res.Provider, Status: res.Status, Message: errorMessage(b)}
	}
	return res, nil
}

// errorMessage extracts the message of an OpenAI-style error body.
func errorMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	return excerpt(b)
}

// decode reads a whole bounded JSON response into v.
func decode(res *Response, v any) error {
	defer res.Close()
	b, err := io.ReadAll(io.LimitReader(res, MaxResponseSize+1))
	if err != nil {
		return fmt.Errorf("ai: provider %s: reading the response: %w", res.Provider, err)
	}
	if len(b) > MaxResponseSize {
		return fmt.Errorf("ai: provider %s: response larger than %d bytes", res.Provider, MaxResponseSize)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("ai: provider %s: invalid response: %w", res.Provider, err)
	}
	return nil
}

// Chat sends a chat completion request (Stream is ignored: use ChatStream).
func (c *Client) Chat(ctx context.Context, req ChatRequest) (*ChatResponse, error) {
	req.Stream = false
	res, err := c.call(ctx, "/chat/completions", req.Model, req)
	if err != nil {
		return nil, err
	}
	out := &ChatResponse{Provider: res.Provider}
	return out, decode(res, out)
}

// Complete sends a text completion request.
func (c *Client) Complete(ctx context.Context, req CompletionRequest) (*CompletionResponse, error) {
	res, err := c.call(ctx, "/completions", req.Model, req)
	if err != nil {
		return nil, err
	}
	out := &CompletionResponse{Provider: res.Provider}
	return out, decode(res, out)
}

// Embed sends an embeddings request.
func (c *Client) Embed(ctx context.Context, req EmbeddingRequest) (*EmbeddingResponse, error) {
	res, err := c.call(ctx, "/embeddings", req.Model, req)
	if err != nil {
		return nil, err
	}
	out := &EmbeddingResponse{Provider: res.Provider}
	return out, decode(res, out)
}

// ChatStream sends a streamed chat completion request; read the chunks with Next.
func (c *Client) ChatStream(ctx context.Context, req ChatRequest) (*ChatStream, error) {
	req.Stream = true
	res, err := c.call(ctx, "/chat/completions", req.Model, req)
	if err != nil {
		return nil, err
	}
	return &ChatStream{Provider: res.Provider, res: res, ev: NewEventReader(res)}, nil
}

// ChatStream is a chat completion arriving chunk by chunk. Close it.
type ChatStream struct {
	// Provider is the provider that answers.
	Provider string
	res      *Response
	ev       *EventReader
}

// Next returns the next chunk as soon as it arrives, or io.EOF after the last.
func (s *ChatStream) Next() (*ChatChunk, error) {
	for {
		data, err := s.ev.Next()
		if err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("ai: provider %s: stream: %w", s.Provider, err)
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			return nil, io.EOF
		}
		if len(data) == 0 {
			continue
		}
		c := &ChatChunk{}
		if err := json.Unmarshal(data, c); err != nil {
			return nil, fmt.Errorf("ai: provider %s: invalid stream event: %w", s.Provider, err)
		}
		return c, nil
	}
}

// Close ends the stream.
func (s *ChatStream) Close() error { return s.res.Close() }
