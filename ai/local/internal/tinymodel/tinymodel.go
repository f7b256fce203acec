// Package tinymodel builds the tiny model embedded in package local: a
// valid llama-architecture GGUF file whose weights are computed, not
// trained. The token embeddings are one-hot over the characters of a short
// text written for it (corpus.txt), and the output matrix holds the
// smoothed log-probabilities of each character following each other
// character, so that the network as a whole is a character bigram model:
// its output looks like words but means nothing. The attention and MLP
// blocks carry small pseudo-random weights so that every part of the
// forward pass (RoPE, grouped-query attention, SwiGLU, Q8_0 and F16
// tensors) is exercised on the way, without changing the text much.
//
// The output is deterministic: go generate in package local rewrites
// tiny.gguf from it, and a test there checks the file is current.
package tinymodel

import (
	_ "embed"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/verge-edge/verge/ai/local/gguf"
)

//go:embed corpus.txt
var corpus string

// Shape of the model.
const (
	Dim     = 128
	Layers  = 2
	Heads   = 4
	KVHeads = 2
	FFN     = 256
	Context = 1024
)

// Token ids fixed by the layout: unknown, begin and end of sequence, then
// the 256 byte tokens, then one piece per character of the corpus.
const (
	tokUnk   = 0
	tokBOS   = 1
	tokEOS   = 2
	firstCh  = 3 + 256
	floorLog = -30.0
)

// Build returns the GGUF file.
func Build() ([]byte, error) {
	paras := paragraphs(corpus)
	// Vocabulary: specials, bytes, then the corpus characters in order.
	chars := map[string]bool{}
	for _, p := range paras {
		for _, r := range " " + p {
			chars[piece(r)] = true
		}
	}
	var charList []string
	for c := range chars {
		charList = append(charList, c)
	}
	sort.Strings(charList)
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3}
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6)
	}
	ids := map[string]int{}
	for _, c := range charList {
		ids[c] = len(tokens)
		tokens = append(tokens, c)
		types = append(types, 1)
	}
	vocab := len(tokens)
	scores := make([]float32, vocab)
	for i := firstCh; i < vocab; i++ {
		scores[i] = -float32(i - firstCh)
	}

	// Units are the tokens that occur: BOS, EOS and the characters. Each
	// gets one dimension of the embedding.
	units := []int{tokBOS, tokEOS}
	for i := firstCh; i < vocab; i++ {
		units = append(units, i)
	}
	if len(units) > Dim {
		return nil, fmt.Errorf("corpus has %d distinct characters, more than the %d dimensions", len(units), Dim)
	}
	unitOf := map[int]int{}
	for k, id := range units {
		unitOf[id] = k
	}

	// Bigram counts over BOS, " " + paragraph, EOS.
	counts := make([][]float64, len(units))
	for i := range counts {
		counts[i] = make([]float64, len(units))
	}
	for _, p := range paras {
		seq := []int{tokBOS}
		for _, r := range " " + p {
			seq = append(seq, ids[piece(r)])
		}
		seq = append(seq, tokEOS)
		for i := 1; i < len(seq); i++ {
			counts[unitOf[seq[i-1]]][unitOf[seq[i]]]++
		}
	}

	// Embeddings: one-hot; tokens that never occur look like a space.
	embd := make([]float32, vocab*Dim)
	for id := range vocab {
		k, ok := unitOf[id]
		if !ok {
			k = unitOf[ids["▁"]]
		}
		embd[id*Dim+k] = 1
	}
	// Output: row j holds log P(j | unit k) in column k. The final
	// RMSNorm turns a one-hot e_k into sqrt(Dim)·e_k, undone by the
	// output norm weights.
	out := make([]float32, vocab*Dim)
	for j := range vocab {
		for k := range Dim {
			out[j*Dim+k] = floorLog
		}
	}
	const alpha = 0.02
	for k := range units {
		var total float64
		for _, c := range counts[k] {
			total += c
		}
		for v, id := range units {
			lp := floorLog
			if id != tokBOS {
				lp = math.Log((counts[k][v] + alpha) / (total + alpha*float64(len(units)-1)))
			}
			out[id*Dim+k] = quantize(lp)
		}
	}
	outNorm := fill(Dim, float32(1/math.Sqrt(Dim)))

	rng := rand.New(rand.NewPCG(22, 2026))
	noise := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((rng.Float64()*2 - 1) * scale)
		}
		return v
	}
	kvDim := KVHeads * (Dim / Heads)
	tensors := []gguf.Tensor{
		{Name: "token_embd.weight", Dims: []uint64{Dim, uint64(vocab)}, Type: gguf.F32, Data: gguf.EncodeF32(embd)},
		{Name: "output_norm.weight", Dims: []uint64{Dim}, Type: gguf.F32, Data: gguf.EncodeF32(outNorm)},
		{Name: "output.weight", Dims: []uint64{Dim, uint64(vocab)}, Type: gguf.F16, Data: gguf.EncodeF16(out)},
	}
	const sigma = 0.01 * 1.7320508 // uniform with standard deviation 0.01
	for l := range Layers {
		p := fmt.Sprintf("blk.%d.", l)
		q8 := func(name string, cols, rows int) gguf.Tensor {
			return gguf.Tensor{Name: p + name, Dims: []uint64{uint64(cols), uint64(rows)}, Type: gguf.Q8_0, Data: gguf.QuantizeQ8_0(noise(cols*rows, sigma))}
		}
		tensors = append(tensors,
			gguf.Tensor{Name: p + "attn_norm.weight", Dims: []uint64{Dim}, Type: gguf.F32, Data: gguf.EncodeF32(fill(Dim, 1))},
			q8("attn_q.weight", Dim, Dim),
			q8("attn_k.weight", Dim, kvDim),
			q8("attn_v.weight", Dim, kvDim),
			q8("attn_output.weight", Dim, Dim),
			gguf.Tensor{Name: p + "ffn_norm.weight", Dims: []uint64{Dim}, Type: gguf.F32, Data: gguf.EncodeF32(fill(Dim, 1))},
			q8("ffn_gate.weight", Dim, FFN),
			q8("ffn_up.weight", Dim, FFN),
			q8("ffn_down.weight", FFN, Dim),
		)
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Type: gguf.TypeString, Value: "llama"},
		{Key: "general.name", Type: gguf.TypeString, Value: "verge-tiny"},
		{Key: "general.description", Type: gguf.TypeString, Value: "A character bigram model in llama form, computed from a short text; for tests and offline development. Its output is not meaningful."},
		{Key: "general.alignment", Type: gguf.TypeUint32, Value: uint32(32)},
		{Key: "llama.context_length", Type: gguf.TypeUint32, Value: uint32(Context)},
		{Key: "llama.embedding_length", Type: gguf.TypeUint32, Value: uint32(Dim)},
		{Key: "llama.block_count", Type: gguf.TypeUint32, Value: uint32(Layers)},
		{Key: "llama.feed_forward_length", Type: gguf.TypeUint32, Value: uint32(FFN)},
		{Key: "llama.attention.head_count", Type: gguf.TypeUint32, Value: uint32(Heads)},
		{Key: "llama.attention.head_count_kv", Type: gguf.TypeUint32, Value: uint32(KVHeads)},
		{Key: "llama.rope.dimension_count", Type: gguf.TypeUint32, Value: uint32(Dim / Heads)},
		{Key: "llama.rope.freq_base", Type: gguf.TypeFloat32, Value: float32(10000)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Type: gguf.TypeFloat32, Value: float32(1e-5)},
		{Key: "tokenizer.ggml.model", Type: gguf.TypeString, Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Type: gguf.TypeArray, Value: tokens},
		{Key: "tokenizer.ggml.scores", Type: gguf.TypeArray, Value: scores},
		{Key: "tokenizer.ggml.token_type", Type: gguf.TypeArray, Value: types},
		{Key: "tokenizer.ggml.bos_token_id", Type: gguf.TypeUint32, Value: uint32(tokBOS)},
		{Key: "tokenizer.ggml.eos_token_id", Type: gguf.TypeUint32, Value: uint32(tokEOS)},
		{Key: "tokenizer.ggml.unknown_token_id", Type: gguf.TypeUint32, Value: uint32(tokUnk)},
		{Key: "tokenizer.ggml.add_bos_token", Type: gguf.TypeBool, Value: true},
		{Key: "tokenizer.ggml.add_space_prefix", Type: gguf.TypeBool, Value: true},
	}
	return gguf.Write(kv, tensors)
}

// paragraphs splits the corpus on blank lines and joins each paragraph's lines.
func paragraphs(s string) []string {
	var out []string
	for _, p := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n\n") {
		p = strings.Join(strings.Fields(p), " ")
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func piece(r rune) string {
	if r == ' ' {
		return "▁"
	}
	return string(r)
}

// quantize rounds to a multiple of 1/256 so that last-bit differences
// between math libraries do not change the file.
func quantize(x float64) float32 { return float32(math.Round(x*256) / 256) }

func fill(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}
