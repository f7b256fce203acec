package local

import (
	"context"
	"testing"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// BenchmarkLarge uses a random model whose weights (110 MB of Q8_0) do not
// fit in the CPU caches, as a real model's do not: one token by forward,
// and 64 prompt tokens by prefill.
func BenchmarkLarge(b *testing.B) {
	data := randomModel(b, testShape{dim: 2048, layers: 2, heads: 16, kvHeads: 4, ffn: 5632, ctx: 128, wtype: gguf.Q8_0, tied: true}, 3)
	m, err := Load(data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	toks := make([]int, 64)
	for i := range toks {
		toks[i] = 3 + i
	}
	b.Run("forward", func(b *testing.B) {
		st := m.w.newState(64)
		b.ReportAllocs()
		pos := 0
		for b.Loop() {
			m.w.forward(st, toks[pos%64], pos%64, true, 1)
			pos++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("prefill64", func(b *testing.B) {
		st := m.w.newState(64)
		b.ReportAllocs()
		for b.Loop() {
			if err := m.w.prefill(context.Background(), st, toks, 0, 1, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(toks))/b.Elapsed().Seconds(), "tokens/s")
	})
}
