package local

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// benchForward measures one token through the network at increasing
// positions, reporting tokens per second.
func benchForward(b *testing.B, m *Model, threads int) {
	st := m.w.newState(256)
	b.ReportAllocs()
	b.ResetTimer()
	pos := 0
	for b.Loop() {
		if pos == 256 {
			pos = 0
		}
		m.w.forward(st, 5+pos%100, pos, true, threads)
		pos++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkForwardTiny(b *testing.B) { benchForward(b, openTiny(b, Options{}), 1) }

// BenchmarkForwardQ8 uses a random model shaped like a small real one
// (dim 512, 4 layers, Q8_0 weights, 8 heads, 4 KV heads).
func BenchmarkForwardQ8(b *testing.B) {
	data := randomModel(b, testShape{dim: 512, layers: 4, heads: 8, kvHeads: 4, ffn: 1408, ctx: 512, wtype: gguf.Q8_0}, 3)
	m, err := Load(data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, threads := range []int{1, 2} {
		b.Run("threads="+itoa(threads), func(b *testing.B) { benchForward(b, m, threads) })
	}
}

func BenchmarkMatVecQ8_0(b *testing.B) {
	const rows, cols = 2048, 2048
	rng := rand.New(rand.NewPCG(1, 1))
	src := make([]float32, rows*cols)
	for i := range src {
		src[i] = float32(rng.NormFloat64())
	}
	m := newMatrix(&gguf.TensorInfo{Dims: []uint64{cols, rows}, Type: gguf.Q8_0}, gguf.QuantizeQ8_0(src))
	x, out := src[:cols], make([]float32, rows)
	b.ReportAllocs()
	b.SetBytes(int64(len(m.raw)))
	for b.Loop() {
		m.matVec(out, x, 1)
	}
}

// BenchmarkHandlerChat is one 32-token chat completion through the HTTP handler.
func BenchmarkHandlerChat(b *testing.B) {
	h := openTiny(b, Options{}).Handler()
	body := `{"messages":[{"role":"user","content":"Say something about caches."}],"max_tokens":32,"seed":1}`
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}

// BenchmarkPrefillQ8 is prompt processing of 64 tokens for the model of
// BenchmarkForwardQ8, batched; compare with 64 × BenchmarkForwardQ8.
func BenchmarkPrefillQ8(b *testing.B) {
	data := randomModel(b, testShape{dim: 512, layers: 4, heads: 8, kvHeads: 4, ffn: 1408, ctx: 512, wtype: gguf.Q8_0}, 3)
	m, err := Load(data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	toks := make([]int, 64)
	for i := range toks {
		toks[i] = 3 + i
	}
	st := m.w.newState(64)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.w.prefill(context.Background(), st, toks, 0, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(toks))/b.Elapsed().Seconds(), "tokens/s")
}
