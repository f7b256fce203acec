package ai

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/limits"
)

// GatewayConfig configures a Gateway. The zero value of each optional part turns it off.
type GatewayConfig struct {
	// Client reaches the providers. Required.
	Client *Client
	// Keys maps the API keys clients present to the names that identify them. Empty means
	// no authentication: every client is "anonymous" (rate limits and budgets then count
	// per client address).
	Keys map[string]string
	// MaxBody caps the request body; larger ones get 413. Zero means 1MiB.
	MaxBody int64
	// Cache, when set, caches responses of identical requests.
	Cache *CacheConfig
	// RateLimit and RatePeriod cap each client's requests; zero RateLimit means no cap.
	RateLimit  int
	RatePeriod time.Duration
	// TokenBudget and BudgetPeriod cap each client's tokens; zero TokenBudget means no cap.
	TokenBudget  int64
	BudgetPeriod time.Duration
	// Reuse, when set, is the state of the gateway this one replaces: the cache, rate
	// limit and budgets whose settings are unchanged carry on. Nil means fresh state.
	Reuse *GatewayState
}

// CacheConfig bounds a gateway's response cache.
type CacheConfig struct {
	TTL          time.Duration
	MaxEntries   int
	MaxBytes     int64
	MaxEntrySize int64
	// Shared lets different clients share entries; false keys entries by client too.
	Shared bool
}

// Gateway serves the OpenAI-compatible API (POST .../chat/completions, .../completions,
// .../embeddings and GET .../models, under any path prefix) in front of a Client's
// providers. Requests are authenticated by the gateway's own keys, which are never passed
// on; the providers get a fresh request with only the JSON body and their own key.
type Gateway struct {
	client  *Client
	keys    map[[32]byte]string
	maxBody int64
	cache   *responseCache
	shared  bool
	rate    *limits.SlidingWindow
	budget  *tokenBudget
	ratePol string
	// cacheCfg is the configuration cache was made with.
	cacheCfg CacheConfig
}

// GatewayState is what a gateway counts and keeps: its cache, the requests of its rate
// limit and the tokens of its budgets. A gateway built for a new configuration keeps the
// parts of the previous one's state (GatewayConfig.Reuse) whose settings did not change, as
// NGINX keeps its zones across a reload.
type GatewayState struct {
	cache    *responseCache
	cacheCfg CacheConfig
	rate     *limits.SlidingWindow
	budget   *tokenBudget
}

// State returns the gateway's state, to pass to its successor.
func (g *Gateway) State() *GatewayState {
	return &GatewayState{cache: g.cache, cacheCfg: g.cacheCfg, rate: g.rate, budget: g.budget}
}

// MaxModelName bounds the model name of a request (400 beyond): it goes to the access log.
const MaxModelName = 256

// Anonymous is the client name of a gateway without keys.
const Anonymous = "anonymous"

// NewGateway builds a gateway.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.Client == nil {
		return nil, errors.New("ai: GatewayConfig.Client is required")
	}
	g := &Gateway{client: cfg.Client, maxBody: cfg.MaxBody}
	if g.maxBody <= 0 {
		g.maxBody = 1 << 20
	}
	if len(cfg.Keys) > 0 {
		g.keys = map[[32]byte]string{}
		for k, name := range cfg.Keys {
			g.keys[sha256.Sum256([]byte(k))] = name
		}
	}
	prev := cfg.Reuse
	if prev == nil {
		prev = &GatewayState{}
	}
	if c := cfg.Cache; c != nil {
		g.shared = c.Shared
		if prev.cache != nil && prev.cacheCfg == *c {
			g.cache, g.cacheCfg = prev.cache, prev.cacheCfg
		} else {
			g.cache, g.cacheCfg = newResponseCache(c.TTL, c.MaxEntries, c.MaxBytes, c.MaxEntrySize), *c
		}
	}
	if cfg.RateLimit > 0 {
		if prev.rate != nil && prev.rate.Limit() == int64(cfg.RateLimit) && prev.rate.Period() == cfg.RatePeriod {
			g.rate = prev.rate
		} else {
			g.rate = limits.NewSlidingWindow(int64(cfg.RateLimit), cfg.RatePeriod, limits.Sizing{Keys: 1024})
		}
		g.ratePol = strconv.Itoa(cfg.RateLimit) + ";w=" + strconv.FormatInt(int64(cfg.RatePeriod/time.Second), 10)
	}
	if cfg.TokenBudget > 0 {
		if prev.budget != nil && prev.budget.limit == cfg.TokenBudget && prev.budget.period == cfg.BudgetPeriod {
			g.budget = prev.budget
		} else {
			g.budget = newTokenBudget(cfg.TokenBudget, cfg.BudgetPeriod)
		}
	}
	return g, nil
}

// Result describes one request the gateway served, for the access log and metrics.
type Result struct {
	// Key is the client's key name, Anonymous without keys, "" when authentication failed.
	Key string
	// Op is chat, completions, embeddings or models; "" for an unknown path.
	Op string
	// Model is the requested model; Provider the one that answered ("" when none did).
	Model, Provider string
	// Cache is hit, miss, bypass, or "" when the gateway has no cache or did not look.
	Cache string
	// Stream reports a streamed (server-sent events) request.
	Stream bool
	// Status is the status sent to the client.
	Status int
	// FirstByte is the time from the request to the first response body byte sent (the
	// first token of a stream); zero when none was sent.
	FirstByte time.Duration
	// TokensIn and TokensOut are the prompt and completion tokens: the provider's usage
	// when it reports one, else (streams) the content events counted.
	TokensIn, TokensOut int64
	// Cost is the tokens' price by the provider's prices.
	Cost float64
	// Failed are the providers that failed before one answered (or all that failed).
	Failed []*ProviderError
	// Err is set when the response was cut short after its head was sent; the caller must
	// abort the exchange rather than end it normally.
	Err error
}

// ServeHTTP serves one request; see Serve.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if res := g.Serve(w, r); res.Err != nil {
		panic(http.ErrAbortHandler)
	}
}

// Response header fields the gateway adds.
const (
	HeaderProvider = "X-Verge-AI-Provider"
	HeaderCache    = "X-Verge-AI-Cache"
)

// Serve serves one request and says what happened. w should implement http.Flusher: each
// piece of a stream is flushed to the client as it arrives.
func (g *Gateway) Serve(w http.ResponseWriter, r *http.Request) (res Result) {
	start := time.Now()
	path := r.URL.Path
	var apiPath string
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		res.Op, apiPath = "chat", "/chat/completions"
	case strings.HasSuffix(path, "/completions"):
		res.Op, apiPath = "completions", "/completions"
	case strings.HasSuffix(path, "/embeddings"):
		res.Op, apiPath = "embeddings", "/embeddings"
	case strings.HasSuffix(path, "/models"):
		res.Op = "models"
	}
	key, ok := g.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ai"`)
		res.Status = writeError(w, http.StatusUnauthorized, "invalid_api_key", "a valid API key is required (Authorization: Bearer <key>)")
		return res
	}
	res.Key = key
	if res.Op == "" {
		res.Status = writeError(w, http.StatusNotFound, "not_found", "unknown endpoint "+path+" (want .../chat/completions, .../completions, .../embeddings or .../models)")
		return res
	}
	want := http.MethodPost
	if res.Op == "models" {
		want = http.MethodGet
	}
	if r.Method != want && !(res.Op == "models" && r.Method == http.MethodHead) {
		w.Header().Set("Allow", want)
		res.Status = writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+want)
		return res
	}
	limitID := key
	if g.keys == nil {
		limitID = clientHost(r.RemoteAddr)
	}
	if g.rate != nil {
		d := g.rate.Allow([]byte(limitID), limits.Now())
		w.Header().Set("RateLimit-Policy", `"ai";q=`+g.ratePol)
		if !d.Allowed {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((d.RetryAfter+time.Second-1)/time.Second), 10))
			res.Status = writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "rate limit exceeded for "+key)
			return res
		}
	}
	if res.Op == "models" {
		res.Status = g.serveModels(w, r)
		return res
	}
	if g.budget != nil {
		if ok, wait := g.budget.allow(limitID, start); !ok {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10))
			res.Status = writeError(w, http.StatusTooManyRequests, "token_budget_exceeded", "token budget exhausted for "+key)
			return res
		}
	}
	// A body declared larger than the cap is refused before any of it is read: the client
	// need not send it, nor the connection wait for it.
	body, err := []byte(nil), errTooLarge
	if r.ContentLength <= g.maxBody {
		body, err = readBody(r.Body, g.maxBody)
	}
	if err != nil {
		if errors.Is(err, errTooLarge) {
			res.Status = writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "request body larger than "+strconv.FormatInt(g.maxBody, 10)+" bytes")
		} else {
			res.Status = writeError(w, http.StatusBadRequest, "invalid_request_error", "reading the request body: "+err.Error())
		}
		return res
	}
	head, err := parseHead(body)
	if err != nil {
		res.Status = writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return res
	}
	if head.Model == "" {
		res.Status = writeError(w, http.StatusBadRequest, "invalid_request_error", "model is required")
		return res
	}
	if len(head.Model) > MaxModelName {
		res.Status = writeError(w, http.StatusBadRequest, "invalid_request_error", "model name longer than "+strconv.Itoa(MaxModelName)+" bytes")
		return res
	}
	res.Model, res.Stream = head.Model, head.Stream

	var ckey [32]byte
	cacheable := false
	if g.cache != nil {
		id := key
		if g.shared {
			id = ""
		}
		var norm []byte
		ckey, norm, cacheable = normalizedKey(apiPath, id, body)
		if cacheable {
			body = norm // the provider answers exactly what the key describes
		}
		if bypass(r) {
			res.Cache = "bypass" // not served from the cache; a fresh answer replaces the entry
		} else if cacheable {
			res.Cache = "miss"
			if e := g.cache.get(ckey, start); e != nil {
				res.Cache, res.Provider = "hit", e.provider
				h := w.Header()
				h.Set("Content-Type", e.contentType)
				h.Set("Content-Length", strconv.Itoa(len(e.body)))
				h.Set(HeaderCache, "HIT")
				h.Set(HeaderProvider, e.provider)
				w.WriteHeader(http.StatusOK)
				res.Status = http.StatusOK
				if r.Method != http.MethodHead {
					w.Write(e.body)
				}
				res.FirstByte = time.Since(start)
				return res
			}
		}
	}

	up, err := g.client.Do(r.Context(), Call{Path: apiPath, Model: head.Model, Body: body})
	if err != nil {
		var ae *Error
		errors.As(err, &ae)
		res.Failed = ae.Attempts
		code := "provider_error"
		switch ae.Status {
		case http.StatusNotFound:
			code = "model_not_found"
		case http.StatusServiceUnavailable:
			code = "providers_busy"
			w.Header().Set("Retry-After", "1")
		}
		res.Status = writeError(w, ae.Status, code, err.Error())
		return res
	}
	defer up.Close()
	res.Provider, res.Failed = up.Provider, up.Failed
	h := w.Header()
	ctype := up.Header.Get("Content-Type")
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	h.Set(HeaderProvider, up.Provider)
	if res.Cache != "" {
		h.Set(HeaderCache, strings.ToUpper(res.Cache))
	}
	isStream := strings.HasPrefix(ctype, "text/event-stream")
	if isStream {
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
	}
	w.WriteHeader(up.Status)
	res.Status = up.Status
	ok2xx := up.Status/100 == 2

	// Keep what is needed to count tokens and to cache: a stream is scanned event by event
	// as it passes (and kept only to be cached); a JSON body is kept up to a bound. An
	// error answer is neither counted nor cached.
	keeping := ok2xx && (!isStream || cacheable)
	var keep []byte
	keepCap := int64(1 << 20)
	if g.cache != nil && cacheable && ok2xx {
		keepCap = max(keepCap, g.cache.maxEntry)
	}
	var usage *Usage
	var events int64
	done := false
	scan := &eventScanner{fn: func(data []byte) {
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			done = true
			return
		}
		var ev struct {
			Usage   *Usage `json:"usage"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
				Text string `json:"text"`
			} `json:"choices"`
		}
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		if ev.Usage != nil {
			usage = ev.Usage
		}
		for _, c := range ev.Choices {
			if c.Delta.Content != "" || c.Text != "" {
				events++
				break
			}
		}
	}}
	flusher, _ := w.(http.Flusher)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	overflow := false
	var streamErr error
	for {
		n, rerr := up.Read(buf)
		if n > 0 {
			if res.FirstByte == 0 {
				res.FirstByte = time.Since(start)
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				res.Err = werr
				break
			}
			if flusher != nil {
				flusher.Flush()
			}
			if isStream {
				scan.Write(buf[:n])
			}
			if keeping && !overflow {
				if int64(len(keep)+n) <= keepCap {
					keep = append(keep, buf[:n]...)
				} else {
					overflow, keep = true, nil
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			streamErr = rerr
			res.Err = errors.New("ai: provider " + up.Provider + ": the response broke off: " + transportReason(rerr))
			break
		}
	}
	if isStream {
		if usage != nil {
			res.TokensIn, res.TokensOut = usage.PromptTokens, usage.CompletionTokens
		} else {
			res.TokensOut = events
		}
	}
	// A JSON answer is complete only if it parses: a provider that closes a connection
	// without Content-Length or chunking mid-answer looks like a clean end.
	validJSON := false
	if !isStream && !overflow && ok2xx {
		var v struct {
			Usage Usage `json:"usage"`
		}
		if json.Unmarshal(keep, &v) == nil {
			validJSON = true
			usage = &v.Usage
			res.TokensIn, res.TokensOut = v.Usage.PromptTokens, v.Usage.CompletionTokens
		}
	}
	res.Cost = up.Price.Cost(res.TokensIn, res.TokensOut)
	if g.budget != nil {
		g.budget.add(limitID, res.TokensIn+res.TokensOut, time.Now())
	}
	complete := streamErr == nil && res.Err == nil && !overflow && ok2xx && (isStream && done || validJSON)
	if cacheable && complete {
		e := &cached{key: ckey, contentType: ctype, provider: up.Provider, body: keep}
		if usage != nil {
			e.usage = *usage
		}
		g.cache.put(e, time.Now())
	}
	return res
}

// requestHead is what the gateway reads of a request body.
type requestHead struct {
	Model  string
	Stream bool
}

// parseHead reads the model and stream fields of a request body by their exact names, as
// the providers' parsers do: a struct field of encoding/json would also take "Model" or
// "MODEL", so that {"model": "dear", "Model": "cheap"} would be routed, priced and logged as
// the cheap model while the provider runs the dear one.
func parseHead(body []byte) (requestHead, error) {
	var h requestHead
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return h, errors.New("the body is not a JSON object: " + err.Error())
	}
	if v, ok := fields["model"]; ok {
		if err := json.Unmarshal(v, &h.Model); err != nil {
			return h, errors.New("the body is not a JSON object: model: " + err.Error())
		}
	}
	if v, ok := fields["stream"]; ok {
		if err := json.Unmarshal(v, &h.Stream); err != nil {
			return h, errors.New("the body is not a JSON object: stream: " + err.Error())
		}
	}
	return h, nil
}

// copyBufs are the buffers responses are copied through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// authenticate returns the client's key name.
func (g *Gateway) authenticate(r *http.Request) (string, bool) {
	if g.keys == nil {
		return Anonymous, true
	}
	k := r.Header.Get("Authorization")
	if len(k) > 7 && strings.EqualFold(k[:7], "Bearer ") { // the scheme is case-insensitive (RFC 9110, 11.1)
		k = strings.TrimSpace(k[7:])
	} else if k == "" {
		k = r.Header.Get("Api-Key")
	} else {
		return "", false
	}
	if k == "" {
		return "", false
	}
	name, ok := g.keys[sha256.Sum256([]byte(k))]
	return name, ok
}

// bypass reports whether the client asked not to be served from the cache.
func bypass(r *http.Request) bool {
	for _, v := range r.Header.Values("Cache-Control") {
		if strings.Contains(v, "no-cache") || strings.Contains(v, "no-store") {
			return true
		}
	}
	return strings.EqualFold(r.Header.Get(HeaderCache), "bypass")
}

var errTooLarge = errors.New("request body too large")

// readBody reads at most max bytes.
func readBody(r io.Reader, max int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errTooLarge
	}
	return b, nil
}

// clientHost is the address part of a RemoteAddr.
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// writeError answers with an OpenAI-style error object and returns the status.
func writeError(w http.ResponseWriter, status int, code, msg string) int {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": code, "code": code}})
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
	return status
}

// serveModels lists the models of the gateway's providers.
func (g *Gateway) serveModels(w http.ResponseWriter, r *http.Request) int {
	ids := g.client.Models(r.Context())
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, m := range ids {
		out.Data = append(out.Data, model{ID: m.ID, Object: "model", OwnedBy: m.Provider})
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
	return http.StatusOK
}

// ModelInfo is one model a provider offers.
type ModelInfo struct{ ID, Provider string }

// Models lists the models of the providers in the order they are tried: the configured
// names, or for a provider without a list what its own /models answers (within its
// first-token timeout; a provider that fails is left out). Each model is listed once.
func (c *Client) Models(ctx context.Context) []ModelInfo {
	var out []ModelInfo
	seen := map[string]bool{}
	add := func(id, p string) {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, ModelInfo{ID: id, Provider: p})
		}
	}
	for _, p := range c.providers {
		if len(p.Models) > 0 {
			for _, m := range p.Models {
				add(m, p.Name)
			}
			continue
		}
		for _, m := range p.listModels(ctx) {
			add(m, p.Name)
		}
	}
	return out
}

func (p *provider) listModels(parent context.Context) []string {
	ctx, cancel := context.WithTimeout(parent, p.FirstTokenTimeout)
	defer cancel()
	url := p.BaseURL + "/models"
	if p.Handler != nil {
		url = "http://" + p.Name + ".local" + p.BaseURL + "/models"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil
	}
	if p.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.APIKey)
	}
	res, err := p.client.Do(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil
	}
	var v struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&v) != nil {
		return nil
	}
	ids := make([]string, 0, len(v.Data))
	for _, d := range v.Data {
		ids = append(ids, d.ID)
	}
	return ids
}
