package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/ai/local/gguf"
	"github.com/verge-edge/verge/ai/local/internal/tinymodel"
)

// TestTinyModelCurrent fails when tiny.gguf is not what the generator
// writes; run go generate ./ai/local to refresh it.
func TestTinyModelCurrent(t *testing.T) {
	b, err := tinymodel.Build()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, tinyGGUF) {
		t.Fatal("ai/local/tiny.gguf is stale: run go generate ./ai/local")
	}
	if len(tinyGGUF) > 2<<20 {
		t.Fatalf("tiny model is %d bytes; keep it under 2 MiB", len(tinyGGUF))
	}
}

// TestOpenPath loads the tiny model from a file, the path a real model
// takes, and gets the same generation as the embedded copy.
func TestOpenPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := os.WriteFile(path, tinyGGUF, 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	builtin := openTiny(t, Options{})
	if fromFile.Name() != "verge-tiny" {
		t.Fatalf("name %q", fromFile.Name())
	}
	seed, mt := int64(5), 40
	s := Sampling{Seed: &seed, MaxTokens: &mt}
	a, err := fromFile.Complete(context.Background(), "The cache", s, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := builtin.Complete(context.Background(), "The cache", s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Text != b.Text {
		t.Fatalf("file %q, built-in %q", a.Text, b.Text)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Fatal("opening a missing file succeeded")
	}
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	os.WriteFile(bad, tinyGGUF[:1000], 0o600)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), "bad.gguf") {
		t.Fatalf("truncated file: %v", err)
	}
}

func TestDeterministicGeneration(t *testing.T) {
	m := openTiny(t, Options{})
	gen := func(seed int64, temp float64) string {
		mt := 60
		r, err := m.Complete(context.Background(), "The proxy", Sampling{Seed: &seed, Temperature: &temp, MaxTokens: &mt}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r.Text
	}
	if a, b := gen(1, 0.8), gen(1, 0.8); a != b {
		t.Fatalf("same seed, different text: %q, %q", a, b)
	}
	if a, b := gen(1, 0.8), gen(2, 0.8); a == b {
		t.Fatalf("different seeds, same text: %q", a)
	}
	if a, b := gen(1, 0), gen(2, 0); a != b {
		t.Fatalf("greedy decoding depends on the seed: %q, %q", a, b)
	}
}

// TestStopSequences checks that text stops before a stop sequence, that
// the streamed pieces add up to the final text and never include the stop
// sequence or a partial UTF-8 character.
func TestStopSequences(t *testing.T) {
	m := openTiny(t, Options{})
	mt, temp, seed := 200, 0.5, int64(1)
	full, err := m.Complete(context.Background(), "The", Sampling{MaxTokens: &mt, Temperature: &temp, Seed: &seed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Pick a stop sequence that occurs in the text, not at its start.
	words := strings.Fields(full.Text)
	if len(words) < 4 {
		t.Fatalf("text too short: %q", full.Text)
	}
	stop := " " + words[3]
	i := strings.Index(full.Text, stop)
	if i <= 0 {
		t.Fatalf("stop %q at %d in %q", stop, i, full.Text)
	}
	var streamed strings.Builder
	r, err := m.Complete(context.Background(), "The", Sampling{MaxTokens: &mt, Temperature: &temp, Seed: &seed, Stop: []string{"zzz", stop}}, func(s string) error {
		streamed.WriteString(s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != full.Text[:i] || r.FinishReason != "stop" || streamed.String() != r.Text {
		t.Fatalf("stop %q: got %q (%s), streamed %q, want %q", stop, r.Text, r.FinishReason, streamed.String(), full.Text[:i])
	}

	s := &streamer{stops: []string{"ab"}}
	var got []string
	s.emit = func(p string) error { got = append(got, p); return nil }
	for _, p := range []string{"x", "a", "y", "a", "\xc3", "\xa9", "b"} {
		if stopped, _ := s.add(p); stopped {
			t.Fatalf("stopped at %q", p)
		}
	}
	s.flush()
	if want := []string{"x", "ay", "a", "é", "b"}; !slices.Equal(got, want) {
		t.Fatalf("pieces %q, want %q", got, want)
	}
	s = &streamer{stops: []string{"ab"}, emit: func(string) error { return nil }}
	s.add("xa")
	if stopped, _ := s.add("bc"); !stopped || s.text() != "x" {
		t.Fatalf("stop across pieces: %q", s.text())
	}
}

// TestCancellation cancels a generation from inside the token callback and
// checks it stops at once with the context's error and frees its slot.
func TestCancellation(t *testing.T) {
	m := openTiny(t, Options{MaxConcurrent: 1})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	mt := 500
	_, err := m.Complete(ctx, "The", Sampling{MaxTokens: &mt}, func(string) error {
		n++
		if n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("got %v after %d pieces, want context.Canceled after 3", err, n)
	}
	if m.inUse() != 0 {
		t.Fatal("slot not released")
	}
	// An error from the callback stops generation and is returned.
	boom := errors.New("client went away")
	if _, err := m.Complete(context.Background(), "The", Sampling{MaxTokens: &mt}, func(string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the callback's error", err)
	}
	// A timeout ends a generation with DeadlineExceeded.
	m2 := openTiny(t, Options{Timeout: time.Nanosecond})
	if _, err := m2.Complete(context.Background(), "The", Sampling{}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

// TestHTTPClientDisconnect closes a streaming request mid-way and checks
// the server stops generating and frees the slot.
func TestHTTPClientDisconnect(t *testing.T) {
	m := openTiny(t, Options{MaxConcurrent: 1, MaxTokens: 100000, MaxPromptTokens: 1000})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/completions", strings.NewReader(`{"prompt":"The","max_tokens":100000,"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for m.inUse() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("generation still running after the client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTokenizer(t *testing.T) {
	data := randomModel(t, testShape{dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 32, ctx: 64, wtype: gguf.F32,
		extraPieces: []string{"▁", "h", "e", "l", "o", "he", "ll", "llo", "hello", "▁hello", "▁w", "or", "▁wor", "d"},
		specials:    []string{"<|im_start|>", "<|im_end|>"},
		template:    "{% for m in messages %}<|im_start|>...",
	}, 1)
	m, err := Load(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tk := m.tok
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"hello", []string{"<s>", "▁hello"}},
		{"hello world", []string{"<s>", "▁hello", "▁wor", "l", "d"}},
		{"hé", []string{"<s>", "▁", "h", "<0xC3>", "<0xA9>"}},
	} {
		if got := tk.piecesOf(tk.encode([]segment{{text: tc.text}}, true)); !slices.Equal(got, tc.want) {
			t.Errorf("encode(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
	// The chat template's markers become control tokens; the same text in
	// a message does not.
	if m.tmpl != tmplChatML {
		t.Fatalf("template %v, want ChatML", m.tmpl)
	}
	ids := tk.encode(m.tmpl.render([]Message{{Role: "user", Content: "<|im_end|>"}}), true)
	control := 0
	for _, id := range ids {
		if tk.types[id] == tokControl && id != tk.bos {
			control++
		}
	}
	if control != 3 { // <|im_start|> user, <|im_end|>, <|im_start|> assistant
		t.Fatalf("%d control tokens in %q, want 3", control, tk.piecesOf(ids))
	}
	// Decoding: byte tokens give bytes, "▁" gives a space, control tokens nothing.
	var sb strings.Builder
	for _, id := range tk.encode([]segment{{text: "hé hello"}}, true) {
		sb.WriteString(tk.piece(id))
	}
	if sb.String() != " hé hello" {
		t.Fatalf("decoded %q", sb.String())
	}
}

func TestLoadErrors(t *testing.T) {
	good := randomModel(t, testShape{dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 32, ctx: 64, wtype: gguf.F32}, 1)
	f, err := gguf.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(edit func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor)) []byte {
		kv := slices.Clone(f.KV)
		var ts []gguf.Tensor
		for i := range f.Tensors {
			ti := &f.Tensors[i]
			ts = append(ts, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: f.TensorData(ti)})
		}
		kv, ts = edit(kv, ts)
		b, err := gguf.Write(kv, ts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	setKV := func(key string, v any) func([]gguf.KV, []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
		return func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			typ, _ := gguf.TypeOf(v)
			for i := range kv {
				if kv[i].Key == key {
					kv[i].Value, kv[i].Type = v, typ
					return kv, ts
				}
			}
			return append(kv, gguf.KV{Key: key, Type: typ, Value: v}), ts
		}
	}
	for _, tc := range []struct {
		name string
		edit func([]gguf.KV, []gguf.Tensor) ([]gguf.KV, []gguf.Tensor)
		want string
	}{
		{"architecture", setKV("general.architecture", "mamba"), "unsupported architecture"},
		{"tokenizer", setKV("tokenizer.ggml.model", "bert"), "unsupported tokenizer"},
		{"huge dim", setKV("llama.embedding_length", uint32(1<<30)), "out of range"},
		{"heads", setKV("llama.attention.head_count", uint32(3)), "do not divide"},
		{"kv heads", setKV("llama.attention.head_count_kv", uint32(5)), "out of range"},
		{"bos", setKV("tokenizer.ggml.bos_token_id", uint32(1<<20)), "is not a token"},
		{"missing tensor", func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			return kv, slices.DeleteFunc(ts, func(t gguf.Tensor) bool { return t.Name == "blk.0.ffn_up.weight" })
		}, "missing tensor blk.0.ffn_up.weight"},
		{"wrong shape", func(kv []gguf.KV, ts []gguf.Tensor) ([]gguf.KV, []gguf.Tensor) {
			for i := range ts {
				if ts[i].Name == "blk.0.attn_q.weight" {
					ts[i].Dims = []uint64{16, 64}
				}
			}
			return kv, ts
		}, "has shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(rewrite(tc.edit), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadRefusesOversizedFeedForward(t *testing.T) {
	data := randomModel(t, testShape{dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 32 * 17, ctx: 64, wtype: gguf.F32}, 1)
	if _, err := Load(data, Options{}); err == nil || !strings.Contains(err.Error(), "feed_forward_length") {
		t.Fatalf("got %v, want feed_forward_length out of range", err)
	}
}

// TestSetMaxConcurrent: the generation slots follow SetMaxConcurrent while generations run:
// a lower limit refuses the next request, a higher one admits it.
func TestSetMaxConcurrent(t *testing.T) {
	m := openTiny(t, Options{MaxConcurrent: 1})
	mt := 1
	complete := func() error {
		_, err := m.Complete(context.Background(), "The", Sampling{MaxTokens: &mt}, nil)
		return err
	}
	started, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		long := 500
		_, err := m.Complete(context.Background(), "The", Sampling{MaxTokens: &long}, func(string) error {
			select {
			case started <- struct{}{}:
				<-finish
			default:
			}
			return errors.New("stop")
		})
		done <- err
	}()
	<-started
	if err := complete(); err != ErrBusy {
		t.Fatalf("with 1 slot in use: %v, want ErrBusy", err)
	}
	m.SetMaxConcurrent(2)
	if err := complete(); err != nil {
		t.Fatalf("after SetMaxConcurrent(2): %v", err)
	}
	m.SetMaxConcurrent(1)
	if err := complete(); err != ErrBusy {
		t.Fatalf("after SetMaxConcurrent(1): %v, want ErrBusy", err)
	}
	close(finish)
	<-done
	if err := complete(); err != nil || m.inUse() != 0 {
		t.Fatalf("after the long one ended: %v, %d in use", err, m.inUse())
	}
}
