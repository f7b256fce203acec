// Package local runs llama- and qwen2-architecture language models from GGUF files in
// pure Go, with no cgo and nothing installed, and serves them over the
// OpenAI-compatible HTTP API (GET /v1/models, POST /v1/chat/completions,
// /v1/completions and /v1/embeddings).
//
// Open("") loads a tiny model embedded in the binary, so that the AI
// binding and gateway work end to end on any machine; it is a character
// trigram model in transformer form (see docs/ai-local.md) whose text is
// word-like but not meaningful. Open(path) loads a real GGUF model through
// exactly the same code. Real models are better served by a dedicated
// inference server (llama.cpp, vLLM, Ollama) behind an ai provider; this
// package is the zero-dependency default and a test fixture.
package local

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/verge-edge/verge/ai/local/gguf"
)

//go:generate go run ./internal/tinymodel/gen -o tiny.gguf

// tinyGGUF is the built-in model, written by internal/tinymodel.
//
//go:embed tiny.gguf
var tinyGGUF []byte

// TinyModelName is the model name the built-in model is served under.
const TinyModelName = "verge-tiny"

// Options bound what a Model does for one request. The zero value of each
// field means the default in its comment.
type Options struct {
	// Name is the model id reported by /v1/models and accepted in
	// requests; default general.name from the file, else the file name
	// without .gguf, or "verge-tiny" for the built-in model.
	Name string
	// MaxPromptTokens caps the tokens of a prompt (or of one embedding
	// input); default 2048, never more than the model's context length.
	MaxPromptTokens int
	// MaxTokens caps max_tokens in a request; default 1024. A request
	// without max_tokens gets min(256, MaxTokens).
	MaxTokens int
	// MaxConcurrent is how many requests run at once; more are refused
	// with ErrBusy (HTTP 429). Default 2.
	MaxConcurrent int
	// MaxBodyBytes caps an HTTP request body; default 1 MiB (HTTP 413 above).
	MaxBodyBytes int64
	// MaxEmbeddingInputs caps the inputs of one embeddings request; default 64.
	MaxEmbeddingInputs int
	// Timeout bounds one request's generation; default 2 minutes.
	Timeout time.Duration
	// Threads is how many goroutines one matrix product may use; default GOMAXPROCS.
	Threads int
}

func (o Options) withDefaults(ctxLen int) Options {
	if o.MaxPromptTokens <= 0 {
		o.MaxPromptTokens = 2048
	}
	o.MaxPromptTokens = min(o.MaxPromptTokens, ctxLen-1)
	if o.MaxTokens <= 0 {
		o.MaxTokens = 1024
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 2
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxEmbeddingInputs <= 0 {
		o.MaxEmbeddingInputs = 64
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Threads <= 0 {
		o.Threads = defaultThreads()
	}
	return o
}

// Model is a loaded model. It is safe for concurrent use.
type Model struct {
	name    string
	w       *weights
	tok     *tokenizer
	tmpl    chatTemplate
	opts    Options
	created int64

	mu      sync.Mutex
	running int // generations in progress
	limit   int // MaxConcurrent, changed by SetMaxConcurrent
}

// Open loads the GGUF model at path, or the built-in tiny model when path
// is "", with default Options.
func Open(path string) (*Model, error) { return OpenOptions(path, Options{}) }

// OpenOptions loads the GGUF model at path ("" for the built-in model).
// On Unix the file is memory-mapped read-only (quantised weights are used
// in place; F32 and F16 ones are decoded to float32 on the heap), and the
// mapping is released when the Model is garbage collected; the file must
// not be truncated or rewritten in place while the Model is in use.
func OpenOptions(path string, opts Options) (*Model, error) {
	if path == "" {
		m, err := load(tinyGGUF, opts, TinyModelName)
		if err != nil {
			return nil, fmt.Errorf("local model: built-in model: %w", err)
		}
		return m, nil
	}
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("local model: %w", err)
	}
	m, err := load(data, opts, strings.TrimSuffix(filepath.Base(path), ".gguf"))
	if err != nil {
		unmap()
		return nil, fmt.Errorf("local model %s: %w", path, err)
	}
	// The weights refer into the mapping; forward keeps them alive while it runs.
	runtime.AddCleanup(m.w, func(unmap func()) { unmap() }, unmap)
	return m, nil
}

// Load loads a model from GGUF bytes, which it keeps referring to.
func Load(data []byte, opts Options) (*Model, error) { return load(data, opts, "model") }

func load(data []byte, opts Options, fallbackName string) (*Model, error) {
	f, err := gguf.Parse(data)
	if err != nil {
		return nil, err
	}
	w, err := loadWeights(f)
	if err != nil {
		return nil, err
	}
	tok, err := loadTokenizer(f, w.hp.vocab)
	if err != nil {
		return nil, err
	}
	tmplText, _ := f.String("tokenizer.chat_template")
	o := opts.withDefaults(w.hp.ctx)
	if o.MaxPromptTokens < 1 {
		return nil, fmt.Errorf("context length %d too small", w.hp.ctx)
	}
	name := o.Name
	if name == "" {
		name, _ = f.String("general.name")
	}
	if name == "" || len(name) > 256 {
		name = fallbackName
	}
	return &Model{
		name:    name,
		w:       w,
		tok:     tok,
		tmpl:    detectTemplate(tmplText),
		opts:    o,
		limit:   o.MaxConcurrent,
		created: time.Now().Unix(),
	}, nil
}

// Name reports the model id.
func (m *Model) Name() string { return m.name }

// ContextLength reports the model's context length in tokens.
func (m *Model) ContextLength() int { return m.w.hp.ctx }

// Error is an error with the HTTP status and OpenAI error type and code
// it is reported with.
type Error struct {
	Status  int
	Type    string // invalid_request_error, rate_limit_error, server_error, ...
	Code    string // e.g. model_not_found, context_length_exceeded
	Message string
}

func (e *Error) Error() string { return "local model: " + e.Message }

func badRequest(code, format string, args ...any) *Error {
	return &Error{Status: 400, Type: "invalid_request_error", Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrBusy is returned when MaxConcurrent requests are already running.
var ErrBusy = &Error{Status: 429, Type: "rate_limit_error", Code: "model_busy", Message: "all generation slots are busy; retry shortly"}

func (m *Model) acquire() (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running >= m.limit {
		return nil, ErrBusy
	}
	m.running++
	return m.release, nil
}

func (m *Model) release() {
	m.mu.Lock()
	m.running--
	m.mu.Unlock()
}

// inUse returns the generations in progress.
func (m *Model) inUse() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

// MaxConcurrent returns the generations the model runs at once.
func (m *Model) MaxConcurrent() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.limit
}

// SetMaxConcurrent changes Options.MaxConcurrent (n <= 0 means the default, 2). Requests
// already running finish; the new limit applies to the next ones. It lets a process that
// keeps a model loaded across configuration reloads follow the configured limit.
func (m *Model) SetMaxConcurrent(n int) {
	if n <= 0 {
		n = 2
	}
	m.mu.Lock()
	m.limit = n
	m.mu.Unlock()
}

// Sampling controls generation. Nil pointers mean the defaults.
type Sampling struct {
	MaxTokens   *int     // default min(256, Options.MaxTokens)
	Temperature *float64 // default 1; 0 is greedy
	TopP        *float64 // default 1
	Seed        *int64   // default random
	Stop        []string // up to 4, each up to 64 bytes
}

// Usage counts tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Result is a finished generation.
type Result struct {
	Text         string
	FinishReason string // "stop" or "length"
	Usage        Usage
}

func (m *Model) checkSampling(s *Sampling) (maxTokens int, temp, topP float64, rng *rand.Rand, err error) {
	maxTokens = min(256, m.opts.MaxTokens)
	if s.MaxTokens != nil {
		if *s.MaxTokens < 1 {
			return 0, 0, 0, nil, badRequest("invalid_value", "max_tokens must be at least 1")
		}
		if *s.MaxTokens > m.opts.MaxTokens {
			return 0, 0, 0, nil, badRequest("invalid_value", "max_tokens %d exceeds this server's limit of %d", *s.MaxTokens, m.opts.MaxTokens)
		}
		maxTokens = *s.MaxTokens
	}
	temp, topP = 1, 1
	if s.Temperature != nil {
		temp = *s.Temperature
		if !(temp >= 0 && temp <= 2) {
			return 0, 0, 0, nil, badRequest("invalid_value", "temperature must be between 0 and 2")
		}
	}
	if s.TopP != nil {
		topP = *s.TopP
		if !(topP > 0 && topP <= 1) {
			return 0, 0, 0, nil, badRequest("invalid_value", "top_p must be in (0, 1]")
		}
	}
	if len(s.Stop) > 4 {
		return 0, 0, 0, nil, badRequest("invalid_value", "at most 4 stop sequences")
	}
	for _, st := range s.Stop {
		if st == "" || len(st) > 64 {
			return 0, 0, 0, nil, badRequest("invalid_value", "stop sequences must be 1 to 64 bytes")
		}
	}
	seed := rand.Uint64()
	if s.Seed != nil {
		seed = uint64(*s.Seed)
	}
	return maxTokens, temp, topP, rand.New(rand.NewPCG(seed, 0x5665726765)), nil
}

// Complete generates a continuation of prompt. onToken, when not nil, is
// called with each piece of text as it is decided (never splitting a UTF-8
// character or emitting part of a stop sequence); an error from it stops
// generation and is returned.
func (m *Model) Complete(ctx context.Context, prompt string, s Sampling, onToken func(string) error) (*Result, error) {
	return m.generate(ctx, []segment{{text: prompt}}, s, onToken)
}

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Chat generates the assistant's reply to messages, formatted with the
// model's chat template. onToken is as for Complete.
func (m *Model) Chat(ctx context.Context, msgs []Message, s Sampling, onToken func(string) error) (*Result, error) {
	if len(msgs) == 0 {
		return nil, badRequest("invalid_value", "messages must not be empty")
	}
	for i, msg := range msgs {
		switch msg.Role {
		case "system", "user", "assistant", "developer", "tool":
		default:
			return nil, badRequest("invalid_value", "messages[%d].role %q is not system, user, assistant, developer or tool", i, msg.Role)
		}
	}
	return m.generate(ctx, m.tmpl.render(msgs), s, onToken)
}

func (m *Model) prepare(segs []segment, bos bool) ([]int, error) {
	n := 0
	for _, s := range segs {
		n += len(s.text)
	}
	// A token is at least one byte, plus the space prefix and BOS.
	if n > 16*m.opts.MaxPromptTokens {
		return nil, badRequest("context_length_exceeded", "prompt of %d bytes is too long", n)
	}
	toks := m.tok.encode(segs, bos)
	if len(toks) > m.opts.MaxPromptTokens {
		return nil, badRequest("context_length_exceeded", "prompt is %d tokens; the limit is %d", len(toks), m.opts.MaxPromptTokens)
	}
	if len(toks) == 0 {
		return nil, badRequest("invalid_value", "prompt is empty")
	}
	return toks, nil
}

func (m *Model) generate(ctx context.Context, segs []segment, s Sampling, onToken func(string) error) (*Result, error) {
	maxTokens, temp, topP, rng, err := m.checkSampling(&s)
	if err != nil {
		return nil, err
	}
	toks, err := m.prepare(segs, true)
	if err != nil {
		return nil, err
	}
	release, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()

	n := min(len(toks)+maxTokens, m.w.hp.ctx)
	st := m.w.newState(n)
	if err := m.w.prefill(ctx, st, toks[:len(toks)-1], 0, m.opts.Threads, nil); err != nil {
		return nil, err
	}
	pos := len(toks) - 1
	cur := toks[pos]
	res := &Result{FinishReason: "length"}
	out := &streamer{stops: s.Stop, emit: onToken}
	smp := sampler{temp: temp, topP: topP, rng: rng}
	for gen := 0; gen < maxTokens && pos < n; gen++ {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		m.w.forward(st, cur, pos, true, m.opts.Threads)
		next := smp.sample(st.logits)
		res.Usage.CompletionTokens++
		if m.tok.isEnd(next) {
			res.FinishReason = "stop"
			break
		}
		stopped, err := out.add(m.tok.piece(next))
		if err != nil {
			return nil, err
		}
		if stopped {
			res.FinishReason = "stop"
			break
		}
		cur = next
		pos++
	}
	if err := out.flush(); err != nil {
		return nil, err
	}
	res.Text = out.text()
	res.Usage.PromptTokens = len(toks)
	res.Usage.TotalTokens = res.Usage.PromptTokens + res.Usage.CompletionTokens
	return res, nil
}

// Embed returns one L2-normalised embedding per input: the mean of the
// model's final normalised hidden states over the input's tokens.
func (m *Model) Embed(ctx context.Context, inputs []string) ([][]float32, Usage, error) {
	var u Usage
	if len(inputs) == 0 {
		return nil, u, badRequest("invalid_value", "input must not be empty")
	}
	if len(inputs) > m.opts.MaxEmbeddingInputs {
		return nil, u, badRequest("invalid_value", "%d inputs exceed the limit of %d", len(inputs), m.opts.MaxEmbeddingInputs)
	}
	all := make([][]int, len(inputs))
	for i, in := range inputs {
		toks, err := m.prepare([]segment{{text: in}}, true)
		if err != nil {
			return nil, u, err
		}
		all[i] = toks
		u.PromptTokens += len(toks)
	}
	u.TotalTokens = u.PromptTokens
	release, err := m.acquire()
	if err != nil {
		return nil, u, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	out := make([][]float32, len(inputs))
	for i, toks := range all {
		st := m.w.newState(len(toks))
		sum := make([]float64, m.w.hp.dim)
		err := m.w.prefill(ctx, st, toks, 0, m.opts.Threads, func(h []float32) {
			for j, v := range h {
				sum[j] += float64(v)
			}
		})
		if err != nil {
			return nil, u, err
		}
		var norm float64
		for _, v := range sum {
			norm += v * v
		}
		norm = math.Sqrt(norm)
		if norm == 0 {
			norm = 1
		}
		e := make([]float32, len(sum))
		for j, v := range sum {
			e[j] = float32(v / norm)
		}
		out[i] = e
	}
	return out, u, nil
}

// streamer collects generated text and passes on what is final: it holds
// back an incomplete UTF-8 character and any tail that could be the start
// of a stop sequence.
type streamer struct {
	stops   []string
	emit    func(string) error
	buf     strings.Builder
	emitted int
}

func (s *streamer) add(piece string) (stopped bool, err error) {
	s.buf.WriteString(piece)
	text := s.buf.String()
	for _, st := range s.stops {
		if i := strings.Index(text[max(0, s.emitted-len(st)):], st); i >= 0 {
			cut := max(0, s.emitted-len(st)) + i
			s.buf.Reset()
			s.buf.WriteString(text[:cut])
			return true, s.flush()
		}
	}
	safe := len(text)
	for _, st := range s.stops {
		for k := min(len(st)-1, len(text)-s.emitted); k > 0; k-- {
			if strings.HasSuffix(text, st[:k]) {
				safe = min(safe, len(text)-k)
				break
			}
		}
	}
	// Do not split a UTF-8 character.
	for safe > s.emitted && !utf8.ValidString(text[s.emitted:safe]) && len(text)-safe < utf8.UTFMax {
		safe--
	}
	return false, s.send(text[:safe])
}

func (s *streamer) send(upto string) error {
	if len(upto) <= s.emitted {
		return nil
	}
	chunk := upto[s.emitted:]
	s.emitted = len(upto)
	if s.emit == nil {
		return nil
	}
	return s.emit(chunk)
}

func (s *streamer) flush() error { return s.send(s.buf.String()) }

func (s *streamer) text() string { return strings.ToValidUTF8(s.buf.String(), "\uFFFD") }
