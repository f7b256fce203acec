// Package ai calls model providers that speak the OpenAI-compatible HTTP API (vLLM,
// llama.cpp's server, Ollama, TGI, hosted providers, or an in-process http.Handler such as
// the built-in local model of ai/local). A Client picks the providers that serve a request's
// model in order of priority and falls back to the next one on a connection error, a
// timeout, 429 or 5xx, as long as nothing of the answer was passed on yet; its errors name
// each provider that failed and why.
//
// Gateway (gateway.go) serves the same API to plain HTTP clients in front of a Client, with
// API keys, a response cache, per-key rate limits and token budgets, and event streams passed
// through unbuffered. The typed calls (Chat, ChatStream, Complete, Embed in types.go) are what
// the workers' AI binding uses.
package ai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Provider is one OpenAI-compatible inference server. Zero timeouts and concurrency take the
// defaults given on each field.
type Provider struct {
	// Name identifies the provider in errors, logs and metrics. Required, unique.
	Name string
	// BaseURL is what the API paths ("/chat/completions", ...) are appended to, e.g.
	// "http://127.0.0.1:8000/v1". With Handler set it is the path prefix the handler
	// serves the API under, e.g. "/v1".
	BaseURL string
	// Handler, when set, serves the requests in process (no socket): the built-in local
	// model. Nil means HTTP to BaseURL.
	Handler http.Handler
	// APIKey, when set, is sent as "Authorization: Bearer <key>".
	APIKey string
	// Models lists the models served; empty means any model.
	Models []string
	// Priority orders providers for a model, lower first; equal ones keep their order.
	Priority int
	// ConnectTimeout bounds dialing (5s); FirstTokenTimeout the wait from sending the
	// request to the first byte of the response body (60s); TotalTimeout the whole request,
	// body included (10m).
	ConnectTimeout, FirstTokenTimeout, TotalTimeout time.Duration
	// MaxConcurrency caps requests in flight; a full provider is skipped (64).
	MaxConcurrency int
	// Prices are the prices per 1,000 tokens by model.
	Prices map[string]Price
}

// Price is a model's price per 1,000 tokens.
type Price struct{ Input, Output float64 }

// Cost returns the price of in prompt and out completion tokens.
func (p Price) Cost(in, out int64) float64 {
	return (float64(in)*p.Input + float64(out)*p.Output) / 1000
}

// provider is a Provider ready for requests.
type provider struct {
	Provider
	client   *http.Client
	inflight atomic.Int64
	index    int
}

// serves reports whether the provider offers model.
func (p *provider) serves(model string) bool {
	return len(p.Models) == 0 || slices.Contains(p.Models, model)
}

// Client sends requests to the providers serving their model, with fallback. It is safe for
// concurrent use.
type Client struct {
	providers []*provider // by priority, then configuration order
	closers   []func()
}

// NewClient prepares the providers.
func NewClient(ps []Provider) (*Client, error) {
	c := &Client{}
	seen := map[string]bool{}
	for i, pc := range ps {
		if pc.Name == "" {
			return nil, fmt.Errorf("ai: provider %d has no name", i)
		}
		if seen[pc.Name] {
			return nil, fmt.Errorf("ai: duplicate provider %q", pc.Name)
		}
		seen[pc.Name] = true
		if pc.ConnectTimeout <= 0 {
			pc.ConnectTimeout = 5 * time.Second
		}
		if pc.FirstTokenTimeout <= 0 {
			pc.FirstTokenTimeout = 60 * time.Second
		}
		if pc.TotalTimeout <= 0 {
			pc.TotalTimeout = 10 * time.Minute
		}
		if pc.MaxConcurrency <= 0 {
			pc.MaxConcurrency = 64
		}
		pc.BaseURL = strings.TrimRight(pc.BaseURL, "/")
		p := &provider{Provider: pc, index: i}
		if pc.Handler != nil {
			p.client = &http.Client{Transport: handlerTransport{pc.Handler}}
		} else {
			tr := &http.Transport{
				Proxy:                  nil, // never through an environment proxy: the config says where
				DialContext:            (&net.Dialer{Timeout: pc.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
				TLSHandshakeTimeout:    pc.ConnectTimeout,
				ResponseHeaderTimeout:  pc.FirstTokenTimeout,
				MaxIdleConnsPerHost:    min(pc.MaxConcurrency, 256),
				IdleConnTimeout:        90 * time.Second,
				ForceAttemptHTTP2:      true,
				MaxResponseHeaderBytes: 64 << 10,
			}
			p.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a provider's redirect is its answer, not a new target
			}}
			c.closers = append(c.closers, tr.CloseIdleConnections)
		}
		c.providers = append(c.providers, p)
	}
	slices.SortStableFunc(c.providers, func(a, b *provider) int { return a.Priority - b.Priority })
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() {
	for _, f := range c.closers {
		f()
	}
}

// Subset returns a client limited to the named providers (sharing their connections and
// concurrency counts); empty names means all of them. Unknown names are errors.
func (c *Client) Subset(names []string) (*Client, error) {
	if len(names) == 0 {
		return c, nil
	}
	s := &Client{}
	for _, n := range names {
		if !slices.ContainsFunc(c.providers, func(p *provider) bool { return p.Name == n }) {
			return nil, fmt.Errorf("ai: unknown provider %q", n)
		}
	}
	for _, p := range c.providers {
		if slices.Contains(names, p.Name) {
			s.providers = append(s.providers, p)
		}
	}
	return s, nil
}

// Providers returns the names of the providers, in the order they are tried.
func (c *Client) Providers() []string {
	out := make([]string, len(c.providers))
	for i, p := range c.providers {
		out[i] = p.Name
	}
	return out
}

// Call is one API request.
type Call struct {
	// Path is the API path after the base URL: "/chat/completions", "/completions",
	// "/embeddings".
	Path string
	// Model is the requested model; it picks the providers.
	Model string
	// Body is the JSON request body, sent as is.
	Body []byte
}

// Response is a provider's answer whose body is still streaming. Close it.
type Response struct {
	// Provider is the name of the provider that answered.
	Provider string
	// Status and Header are the provider's.
	Status int
	Header http.Header
	// Price is the provider's price of the requested model.
	Price Price
	// Failed lists the providers tried before, with why they failed.
	Failed []*ProviderError

	first  []byte // the first body bytes, read before the answer was accepted
	body   io.ReadCloser
	cancel context.CancelFunc
	done   func()
	closed bool
}

// Read reads the body: the bytes read ahead first, then the rest as it arrives.
func (r *Response) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return r.body.Read(p)
}

// Close ends the request and frees the provider's concurrency slot.
func (r *Response) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.body.Close()
	r.cancel()
	r.done()
	return err
}

// ProviderError says why one provider did not answer.
type ProviderError struct {
	// Provider is the provider's name.
	Provider string
	// Status is the provider's HTTP status, 0 when it sent none.
	Status int
	// Reason says what went wrong, e.g. "connect: connection refused", "status 503: ...",
	// "no first byte within 1s", "busy (64 requests in flight)".
	Reason string
	// Retryable reports whether another provider may be tried.
	Retryable bool
}

func (e *ProviderError) Error() string { return "provider " + e.Provider + ": " + e.Reason }

// Error is the failure of a whole call: every provider tried failed, or none serves the model.
type Error struct {
	// Model is the requested model.
	Model string
	// Attempts are the providers' failures, in the order tried; empty when none serves Model.
	Attempts []*ProviderError
	// Status is the HTTP status that fits: 404 no provider serves the model, 503 every one
	// was full or answered 429, 504 the last one timed out, else 502.
	Status int
}

func (e *Error) Error() string {
	if len(e.Attempts) == 0 {
		return fmt.Sprintf("ai: no provider serves model %q", e.Model)
	}
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		parts[i] = a.Error()
	}
	return fmt.Sprintf("ai: model %q: every provider failed: %s", e.Model, strings.Join(parts, "; "))
}

// errBodyCap bounds the error text read from a failing provider.
const errBodyCap = 512

// firstReadSize is the buffer the first body bytes are read into.
const firstReadSize = 4 << 10

// Do sends the call to the first provider serving its model that answers, trying the next
// on a connection error, a timeout before the first body byte, 429 or 5xx. A provider's other
// answers (2xx, 4xx) are returned as they are. The first body bytes have arrived when Do
// returns, so a caller that passes the response on has not sent anything before the answer
// was accepted. The error is an *Error.
func (c *Client) Do(ctx context.Context, call Call) (*Response, error) {
	e := &Error{Model: call.Model}
	busy, tooMany := 0, 0
	for _, p := range c.providers {
		if !p.serves(call.Model) {
			continue
		}
		if ctx.Err() != nil {
			e.Attempts = append(e.Attempts, &ProviderError{Provider: p.Name, Reason: "request canceled: " + ctx.Err().Error()})
			break
		}
		if p.inflight.Add(1) > int64(p.MaxConcurrency) {
			p.inflight.Add(-1)
			busy++
			e.Attempts = append(e.Attempts, &ProviderError{Provider: p.Name, Reason: fmt.Sprintf("busy (%d requests in flight)", p.MaxConcurrency), Retryable: true})
			continue
		}
		resp, perr := p.try(ctx, call)
		if perr == nil {
			resp.Failed = e.Attempts
			return resp, nil
		}
		p.inflight.Add(-1)
		e.Attempts = append(e.Attempts, perr)
		if perr.Status == http.StatusTooManyRequests {
			tooMany++
		}
		if !perr.Retryable {
			break
		}
	}
	switch {
	case len(e.Attempts) == 0:
		e.Status = http.StatusNotFound
	case busy+tooMany == len(e.Attempts):
		e.Status = http.StatusServiceUnavailable // all full or rate-limited: try again later
	case strings.HasPrefix(e.Attempts[len(e.Attempts)-1].Reason, "no first byte"):
		e.Status = http.StatusGatewayTimeout
	default:
		e.Status = http.StatusBadGateway
	}
	return nil, e
}

// try sends call to p. On success the response holds p's concurrency slot.
func (p *provider) try(parent context.Context, call Call) (*Response, *ProviderError) {
	fail := func(status int, retry bool, format string, args ...any) *ProviderError {
		return &ProviderError{Provider: p.Name, Status: status, Reason: fmt.Sprintf(format, args...), Retryable: retry}
	}
	ctx, cancel := context.WithTimeout(parent, p.TotalTimeout)
	var firstLate atomic.Bool
	timer := time.AfterFunc(p.FirstTokenTimeout, func() { firstLate.Store(true); cancel() })
	url := p.BaseURL + call.Path
	if p.Handler != nil {
		url = "http://" + p.Name + ".local" + p.BaseURL + call.Path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(call.Body)))
	if err != nil {
		timer.Stop()
		cancel()
		return nil, fail(0, false, "%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if p.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.APIKey)
	}
	res, err := p.client.Do(req)
	if err != nil {
		timer.Stop()
		cancel()
		switch {
		case firstLate.Load():
			return nil, fail(0, true, "no first byte within %s", p.FirstTokenTimeout)
		case parent.Err() != nil:
			return nil, fail(0, false, "request canceled: %v", parent.Err())
		}
		return nil, fail(0, true, "%s", transportReason(err))
	}
	if res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 {
		timer.Stop()
		b, _ := io.ReadAll(io.LimitReader(res.Body, errBodyCap))
		res.Body.Close()
		cancel()
		return nil, fail(res.StatusCode, true, "status %d: %s", res.StatusCode, excerpt(b))
	}
	buf := make([]byte, firstReadSize)
	n, rerr := io.ReadAtLeast(res.Body, buf, 1)
	stopped := timer.Stop()
	if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
		res.Body.Close()
		cancel()
		if !stopped || firstLate.Load() {
			return nil, fail(0, true, "no first byte within %s", p.FirstTokenTimeout)
		}
		if parent.Err() != nil {
			return nil, fail(0, false, "request canceled: %v", parent.Err())
		}
		return nil, fail(res.StatusCode, true, "reading the response: %s", transportReason(rerr))
	}
	if firstLate.Load() {
		res.Body.Close()
		cancel()
		return nil, fail(0, true, "no first byte within %s", p.FirstTokenTimeout)
	}
	return &Response{
		Provider: p.Name, Status: res.StatusCode, Header: res.Header, Price: p.Prices[call.Model],
		first: buf[:n], body: res.Body, cancel: cancel, done: func() { p.inflight.Add(-1) },
	}, nil
}

// transportReason shortens a transport error to what went wrong.
func transportReason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		if op.Op == "dial" {
			return "connect: " + op.Err.Error()
		}
		return op.Op + ": " + op.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "Post ") {
		msg = msg[i+2:]
	}
	return msg
}

// excerpt returns a provider's error body as one short line.
func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(no body)"
	}
	return strconv.Quote(s)
}
