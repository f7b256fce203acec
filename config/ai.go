package config

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// AI configures the model providers that ai_gateway routes and the workers' AI binding call
// (docs/ai.md): inference servers speaking the OpenAI-compatible HTTP API, or the built-in
// local model.
type AI struct {
	// Providers are the model servers, tried for a model in order of priority, then of the
	// file. Empty means no AI at all.
	Providers []AIProvider `yaml:"providers"`
}

// AIProvider is one OpenAI-compatible inference server.
type AIProvider struct {
	// Name identifies the provider in routes, workers, errors, logs and metrics. Required,
	// unique.
	Name string `yaml:"name"`
	// Type is openai (an OpenAI-compatible server at base_url: vLLM, llama.cpp's server,
	// Ollama, TGI, a hosted provider) or local (the model of Model run in process, pure Go,
	// no socket). Empty means openai.
	Type string `yaml:"type"`
	// BaseURL is the URL the API paths are appended to, including the version prefix, e.g.
	// "http://127.0.0.1:8000/v1". Required for openai; not allowed for local. It is taken
	// as written: the config is trusted, requests never choose it.
	BaseURL string `yaml:"base_url"`
	// APIKey, when set, is sent as "Authorization: Bearer <key>" to the provider, read from
	// a file or an environment variable of the server (never written in the config). Nil
	// means no Authorization field. Clients' own keys are never forwarded.
	APIKey *SecretSource `yaml:"api_key"`
	// Model, for type local, is the path of the model file; empty means the tiny model built
	// into the binary. Not allowed for openai.
	Model string `yaml:"model"`
	// Models lists the model names the provider serves; requests for other models skip it.
	// Empty means any model (a catch-all, tried in its priority's turn).
	Models StringList `yaml:"models"`
	// Priority orders the providers serving a model: lower first; equal ones in file order.
	// A failing provider (connection error, timeout, 429 or 5xx) passes the request to the
	// next. Zero is the default.
	Priority int `yaml:"priority"`
	// Timeouts bound each request to the provider.
	Timeouts AITimeouts `yaml:"timeouts"`
	// MaxConcurrency caps the requests in flight to the provider; when it is full, requests
	// go to the next provider, or are answered 503 when none is left. For type local it is
	// also the model's generation slots (shared by the gateway routes and the workers).
	// Zero means 64, or 2 for type local (each generation uses a core).
	MaxConcurrency int `yaml:"max_concurrency"`
	// Prices are the costs per 1,000 tokens of each model, for the access log and metrics
	// (in whatever currency you count). A model not listed costs nothing.
	Prices map[string]AIPrice `yaml:"prices"`
}

// AIPrice is a model's price per 1,000 tokens.
type AIPrice struct {
	// Input is the price of 1,000 prompt tokens.
	Input float64 `yaml:"input"`
	// Output is the price of 1,000 completion tokens.
	Output float64 `yaml:"output"`
}

// AITimeouts bound requests to a provider. Zero fields take the defaults below.
type AITimeouts struct {
	// Connect bounds dialing the provider (and the TLS handshake). Zero means 5s.
	Connect Duration `yaml:"connect"`
	// FirstToken bounds the wait from sending the request to the first byte of the
	// response body (the first token of a stream). Zero means 60s.
	FirstToken Duration `yaml:"first_token"`
	// Total bounds the whole request, the streamed body included. Zero means 10m.
	Total Duration `yaml:"total"`
}

// AI defaults.
const (
	DefaultAIConnectTimeout    = 5 * time.Second
	DefaultAIFirstTokenTimeout = 60 * time.Second
	DefaultAITotalTimeout      = 10 * time.Minute
	DefaultAIMaxConcurrency    = 64
	// DefaultAILocalMaxConcurrency is the generations a local model runs at once.
	DefaultAILocalMaxConcurrency = 2
	DefaultAIMaxBody             = 1 << 20
	DefaultAICacheTTL            = 5 * time.Minute
	DefaultAICacheMaxEntries     = 1024
	DefaultAICacheMaxBytes       = 64 << 20
	DefaultAICacheMaxEntry       = 1 << 20
	DefaultAIRatePeriod          = time.Minute
	DefaultAITokenPeriod         = 24 * time.Hour
)

// AIGateway is the ai_gateway action of a route (docs/ai.md): the OpenAI-compatible endpoints
// (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, under the route's path
// prefix) in front of the providers, with caching, per-key limits, retries and fallback.
type AIGateway struct {
	// Providers restricts the gateway to the named providers. Empty means all of them.
	Providers StringList `yaml:"providers"`
	// Keys are the API keys clients must present ("Authorization: Bearer <key>" or
	// "api-key: <key>"); each names one client for limits, caching and the logs. Empty
	// means no authentication: every client is "anonymous", told apart by address for
	// limits. Clients' keys are never sent to providers.
	Keys []AIKey `yaml:"keys"`
	// MaxBody caps a request body (the prompt); larger ones get 413. Zero means 1MiB.
	MaxBody Size `yaml:"max_body"`
	// Cache caches responses of identical requests. Nil means none.
	Cache *AICache `yaml:"cache"`
	// RateLimit caps each key's requests per period. Nil means no cap.
	RateLimit *AIRateLimit `yaml:"rate_limit"`
	// TokenBudget caps each key's tokens (prompt and completion) per period; a key past it
	// gets 429 until the period ends. Nil means no cap.
	TokenBudget *AITokenBudget `yaml:"token_budget"`
}

// AIKey is one client API key of a gateway.
type AIKey struct {
	// Name identifies the client in logs and metrics. Required, unique in the gateway.
	Name string `yaml:"name"`
	// Key is the secret the client sends, from a file or an environment variable. Required.
	// At least 16 bytes.
	Key SecretSource `yaml:"key"`
}

// AICache configures a gateway's response cache. Only complete successful responses are
// stored (a stream only once it ended well); errors never are.
type AICache struct {
	// TTL is how long a response is served from the cache. Zero means 5m.
	TTL Duration `yaml:"ttl"`
	// MaxEntries caps the cached responses; the least recently used go first. Zero means 1024.
	MaxEntries int `yaml:"max_entries"`
	// MaxBytes caps the cached bytes. Zero means 64MiB.
	MaxBytes Size `yaml:"max_bytes"`
	// MaxEntrySize is the largest response cached. Zero means 1MiB.
	MaxEntrySize Size `yaml:"max_entry_size"`
	// Shared lets clients with different keys share cached responses. Default false: the
	// cache key includes the client's key name, so one client never sees another's answers.
	Shared bool `yaml:"shared"`
}

// AIRateLimit caps requests per key.
type AIRateLimit struct {
	// Requests is how many requests a key may make per period. Required, at least 1.
	Requests int `yaml:"requests"`
	// Period is the sliding window. Zero means 1m.
	Period Duration `yaml:"period"`
}

// AITokenBudget caps tokens per key.
type AITokenBudget struct {
	// Tokens is how many tokens (prompt and completion) a key may use per period. Required,
	// at least 1.
	Tokens int64 `yaml:"tokens"`
	// Period is the fixed window the budget is counted in. Zero means 24h.
	Period Duration `yaml:"period"`
}

// WorkerAI is a worker's AI binding (sdk.AI in the guest).
type WorkerAI struct {
	// Binding is the name the worker calls the binding by, e.g. AI. Required.
	Binding string `yaml:"binding"`
	// Providers are the ai providers the worker may use, tried as the ai section orders
	// them. Empty means all of them; with no ai providers at all (and in a worker file run
	// by verge dev), the tiny model built into the binary.
	Providers StringList `yaml:"providers"`
	// Granted are the providers the binding reaches, set when the config is loaded: the
	// named ones, or all. Nil means the built-in local model.
	Granted []AIProvider `yaml:"-"`
}

// MinAIKeyBytes is the shortest gateway API key accepted.
const MinAIKeyBytes = 16

// ReadSecret returns the value of s: a file's content without a trailing newline, or an
// environment variable's value.
func ReadSecret(s SecretSource) (string, error) {
	if s.File == "" {
		return os.Getenv(s.FromEnv), nil
	}
	b, err := os.ReadFile(s.File)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (c *Config) setAIDefaults() {
	defer c.grantWorkerAI()
	for i := range c.AI.Providers {
		p := &c.AI.Providers[i]
		if p.Type == "" {
			p.Type = "openai"
		}
		p.BaseURL = strings.TrimRight(p.BaseURL, "/")
		t := &p.Timeouts
		t.Connect = orDuration(t.Connect, DefaultAIConnectTimeout)
		t.FirstToken = orDuration(t.FirstToken, DefaultAIFirstTokenTimeout)
		t.Total = orDuration(t.Total, DefaultAITotalTimeout)
		if p.MaxConcurrency == 0 {
			p.MaxConcurrency = DefaultAIMaxConcurrency
			if p.Type == "local" {
				p.MaxConcurrency = DefaultAILocalMaxConcurrency
			}
		}
	}
	for i := range c.Routes {
		g := c.Routes[i].AIGateway
		if g == nil {
			continue
		}
		if g.MaxBody == 0 {
			g.MaxBody = DefaultAIMaxBody
		}
		if k := g.Cache; k != nil {
			k.TTL = orDuration(k.TTL, DefaultAICacheTTL)
			if k.MaxEntries == 0 {
				k.MaxEntries = DefaultAICacheMaxEntries
			}
			if k.MaxBytes == 0 {
				k.MaxBytes = DefaultAICacheMaxBytes
			}
			if k.MaxEntrySize == 0 {
				k.MaxEntrySize = DefaultAICacheMaxEntry
			}
		}
		if r := g.RateLimit; r != nil {
			r.Period = orDuration(r.Period, DefaultAIRatePeriod)
		}
		if b := g.TokenBudget; b != nil {
			b.Period = orDuration(b.Period, DefaultAITokenPeriod)
		}
	}
}

// grantWorkerAI resolves the providers of the workers' AI bindings (after the providers'
// defaults).
func (c *Config) grantWorkerAI() {
	for i := range c.Workers {
		w := c.Workers[i].AI
		if w == nil {
			continue
		}
		w.Granted = nil
		for _, p := range c.AI.Providers {
			if len(w.Providers) == 0 || slices.Contains(w.Providers, p.Name) {
				w.Granted = append(w.Granted, p)
			}
		}
	}
}

// workerAI validates the workers' AI bindings.
func (v *validator) workerAI(providers map[string]bool) {
	for i, w := range v.c.Workers {
		a := w.AI
		if a == nil {
			continue
		}
		p := fmt.Sprintf("workers[%d].ai", i)
		if !bindingName.MatchString(a.Binding) {
			v.errf(p+".binding", "invalid binding name %q (letters, digits and _, not starting with a digit)", a.Binding)
		}
		for j, name := range a.Providers {
			if !providers[name] {
				v.errf(fmt.Sprintf("%s.providers[%d]", p, j), "unknown AI provider %q", name)
			}
		}
	}
}

func (c *Config) resolveAIPaths(abs func(*string)) {
	for i := range c.AI.Providers {
		p := &c.AI.Providers[i]
		abs(&p.Model)
		if p.APIKey != nil {
			abs(&p.APIKey.File)
		}
	}
	for i := range c.Routes {
		if g := c.Routes[i].AIGateway; g != nil {
			for j := range g.Keys {
				abs(&g.Keys[j].Key.File)
			}
		}
	}
}

// aiProviders validates the ai section and returns the provider names.
func (v *validator) aiProviders() map[string]bool {
	names := map[string]bool{}
	for i := range v.c.AI.Providers {
		pr := &v.c.AI.Providers[i]
		p := fmt.Sprintf("ai.providers[%d]", i)
		switch {
		case pr.Name == "":
			v.errf(p+".name", "name is required")
		case names[pr.Name]:
			v.errf(p+".name", "duplicate provider %q", pr.Name)
		case !validToken(pr.Name):
			v.errf(p+".name", "invalid name %q (letters, digits and -._ only)", pr.Name)
		}
		names[pr.Name] = true
		switch pr.Type {
		case "openai":
			if pr.Model != "" {
				v.errf(p+".model", "model (a model file) applies only to type local")
			}
			if pr.BaseURL == "" {
				v.errf(p+".base_url", "base_url is required for type openai")
			} else if u, err := url.Parse(pr.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.errf(p+".base_url", "invalid base_url %q: want http(s)://host[:port][/path]", pr.BaseURL)
			} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				v.errf(p+".base_url", "base_url %q must have no user, query or fragment (use api_key for credentials)", pr.BaseURL)
			}
		case "local":
			if pr.BaseURL != "" {
				v.errf(p+".base_url", "base_url applies only to type openai: a local provider runs in process")
			}
			if pr.APIKey != nil {
				v.errf(p+".api_key", "api_key applies only to type openai")
			}
			if pr.Model != "" {
				if st, err := os.Stat(pr.Model); err != nil {
					v.errf(p+".model", "%v", err)
				} else if st.IsDir() {
					v.errf(p+".model", "%s is a directory, not a model file", pr.Model)
				}
			}
		default:
			v.errf(p+".type", "unknown provider type %q (want openai or local)", pr.Type)
		}
		if pr.APIKey != nil {
			v.checkSecretSource(p+".api_key", *pr.APIKey)
		}
		for j, m := range pr.Models {
			if m == "" || strings.ContainsAny(m, " \t\r\n") {
				v.errf(fmt.Sprintf("%s.models[%d]", p, j), "invalid model name %q", m)
			}
		}
		t := &pr.Timeouts
		if t.Connect < 0 || t.FirstToken < 0 || t.Total < 0 {
			v.errf(p+".timeouts", "timeouts must not be negative")
		} else if t.FirstToken > t.Total {
			v.errf(p+".timeouts.first_token", "is longer than timeouts.total (%s)", time.Duration(t.Total))
		}
		if pr.MaxConcurrency < 1 || pr.MaxConcurrency > 100000 {
			v.errf(p+".max_concurrency", "max_concurrency %d out of range 1..100000", pr.MaxConcurrency)
		}
		for m, price := range pr.Prices {
			if price.Input < 0 || price.Output < 0 {
				v.errf(p+".prices."+m, "prices must not be negative")
			}
		}
	}
	return names
}

// routeAIGateway validates a route's ai_gateway and returns how many actions it adds (0 or
// 1).
func (v *validator) routeAIGateway(p string, r *Route, providers map[string]bool) int {
	g := r.AIGateway
	if g == nil {
		return 0
	}
	p += ".ai_gateway"
	if len(providers) == 0 {
		v.errf(p, "ai_gateway needs ai.providers")
	}
	for i, name := range g.Providers {
		if !providers[name] {
			v.errf(fmt.Sprintf("%s.providers[%d]", p, i), "unknown AI provider %q", name)
		}
	}
	names := map[string]bool{}
	for i, k := range g.Keys {
		q := fmt.Sprintf("%s.keys[%d]", p, i)
		switch {
		case k.Name == "":
			v.errf(q+".name", "name is required")
		case names[k.Name]:
			v.errf(q+".name", "duplicate key name %q", k.Name)
		}
		names[k.Name] = true
		v.checkSecretSource(q+".key", k.Key)
		if (k.Key.File == "") != (k.Key.FromEnv == "") {
			if s, err := ReadSecret(k.Key); err == nil && len(s) < MinAIKeyBytes {
				v.errf(q+".key", "the key is %d bytes; at least %d are required", len(s), MinAIKeyBytes)
			}
		}
	}
	if g.MaxBody < 0 || g.MaxBody > 64<<20 {
		v.errf(p+".max_body", "max_body %d out of range 1..64MiB", g.MaxBody)
	}
	if c := g.Cache; c != nil {
		if c.TTL < 0 || c.MaxEntries < 0 || c.MaxBytes < 0 || c.MaxEntrySize < 0 {
			v.errf(p+".cache", "cache limits must not be negative")
		}
		if c.MaxEntrySize > c.MaxBytes {
			v.errf(p+".cache.max_entry_size", "is larger than max_bytes (%d)", c.MaxBytes)
		}
	}
	if rl := g.RateLimit; rl != nil {
		if rl.Requests < 1 {
			v.errf(p+".rate_limit.requests", "requests must be at least 1")
		}
		if rl.Period < 0 {
			v.errf(p+".rate_limit.period", "must not be negative")
		}
	}
	if b := g.TokenBudget; b != nil {
		if b.Tokens < 1 {
			v.errf(p+".token_budget.tokens", "tokens must be at least 1")
		}
		if b.Period < 0 {
			v.errf(p+".token_budget.period", "must not be negative")
		}
	}
	if r.Cache != nil {
		v.errf(p, "ai_gateway has its own cache (ai_gateway.cache); the route's cache does not apply")
	}
	if r.Compress != nil || len(r.HTMLRewrite) > 0 {
		v.errf(p, "compress and html_rewrite do not apply to ai_gateway (its event streams must pass unbuffered)")
	}
	return 1
}
