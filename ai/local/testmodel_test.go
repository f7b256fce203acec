package local

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// testShape is the shape of a random model built for tests.
type testShape struct {
	dim, layers, heads, kvHeads, ffn, ctx int
	wtype                                 gguf.TensorType // type of the big matrices
	tied                                  bool            // no output.weight
	extraPieces                           []string        // normal pieces after the bytes
	specials                              []string        // control pieces
	template                              string
	bpeMerges                             []string // when set, a byte-level BPE vocabulary with these merges
	qwen2                                 bool     // architecture qwen2: attention biases, NEOX RoPE
}

// randomModel writes a llama GGUF with random weights and a vocabulary of
// <unk>, <s>, </s>, the 256 byte tokens, the extra pieces and the specials.
func randomModel(t testing.TB, s testShape, seed uint64) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{tokUnknown, tokControl, tokControl}
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, tokByte)
	}
	if s.bpeMerges != nil {
		tokens, types = nil, nil
		for b := range 256 {
			tokens = append(tokens, string(byteRune[b]))
			types = append(types, tokNormal)
		}
		for _, m := range s.bpeMerges {
			tokens = append(tokens, strings.ReplaceAll(m, " ", ""))
			types = append(types, tokNormal)
		}
		s.specials = append([]string{"<|begin_of_text|>", "<|end_of_text|>"}, s.specials...)
	}
	for _, p := range s.extraPieces {
		tokens = append(tokens, p)
		types = append(types, tokNormal)
	}
	for _, p := range s.specials {
		tokens = append(tokens, p)
		types = append(types, tokControl)
	}
	scores := make([]float32, len(tokens))
	for i := range scores {
		scores[i] = float32(len(tokens[i])) // longer pieces score higher
	}
	vocab := len(tokens)
	randv := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((rng.Float64()*2 - 1) * scale)
		}
		return v
	}
	enc := func(typ gguf.TensorType, v []float32) []byte {
		switch typ {
		case gguf.F32:
			return gguf.EncodeF32(v)
		case gguf.F16:
			return gguf.EncodeF16(v)
		case gguf.Q8_0:
			return gguf.QuantizeQ8_0(v)
		}
		t.Fatalf("cannot encode %s", typ)
		return nil
	}
	mat := func(name string, cols, rows int, typ gguf.TensorType) gguf.Tensor {
		return gguf.Tensor{Name: name, Dims: []uint64{uint64(cols), uint64(rows)}, Type: typ, Data: enc(typ, randv(cols*rows, 1/math.Sqrt(float64(cols))))}
	}
	norm := func(name string) gguf.Tensor {
		v := randv(s.dim, 0.2)
		for i := range v {
			v[i] += 1
		}
		return gguf.Tensor{Name: name, Dims: []uint64{uint64(s.dim)}, Type: gguf.F32, Data: gguf.EncodeF32(v)}
	}
	kvDim := s.kvHeads * s.dim / s.heads
	ts := []gguf.Tensor{
		{Name: "token_embd.weight", Dims: []uint64{uint64(s.dim), uint64(vocab)}, Type: gguf.F32, Data: gguf.EncodeF32(randv(s.dim*vocab, 1))},
		norm("output_norm.weight"),
	}
	if !s.tied {
		ts = append(ts, mat("output.weight", s.dim, vocab, gguf.F16))
	}
	for l := range s.layers {
		p := fmt.Sprintf("blk.%d.", l)
		ts = append(ts,
			norm(p+"attn_norm.weight"),
		)
		if s.qwen2 {
			for _, b := range []struct {
				name string
				n    int
			}{{"attn_q.bias", s.dim}, {"attn_k.bias", kvDim}, {"attn_v.bias", kvDim}} {
				ts = append(ts, gguf.Tensor{Name: p + b.name, Dims: []uint64{uint64(b.n)}, Type: gguf.F32, Data: gguf.EncodeF32(randv(b.n, 0.5))})
			}
		}
		ts = append(ts,
			mat(p+"attn_q.weight", s.dim, s.dim, s.wtype),
			mat(p+"attn_k.weight", s.dim, kvDim, s.wtype),
			mat(p+"attn_v.weight", s.dim, kvDim, s.wtype),
			mat(p+"attn_output.weight", s.dim, s.dim, s.wtype),
			norm(p+"ffn_norm.weight"),
			mat(p+"ffn_gate.weight", s.dim, s.ffn, s.wtype),
			mat(p+"ffn_up.weight", s.dim, s.ffn, s.wtype),
			mat(p+"ffn_down.weight", s.ffn, s.dim, s.wtype),
		)
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Type: gguf.TypeString, Value: "llama"},
		{Key: "general.name", Type: gguf.TypeString, Value: "test-model"},
		{Key: "llama.context_length", Type: gguf.TypeUint32, Value: uint32(s.ctx)},
		{Key: "llama.embedding_length", Type: gguf.TypeUint32, Value: uint32(s.dim)},
		{Key: "llama.block_count", Type: gguf.TypeUint32, Value: uint32(s.layers)},
		{Key: "llama.feed_forward_length", Type: gguf.TypeUint32, Value: uint32(s.ffn)},
		{Key: "llama.attention.head_count", Type: gguf.TypeUint32, Value: uint32(s.heads)},
		{Key: "llama.attention.head_count_kv", Type: gguf.TypeUint32, Value: uint32(s.kvHeads)},
		{Key: "llama.rope.freq_base", Type: gguf.TypeFloat32, Value: float32(10000)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Type: gguf.TypeFloat32, Value: float32(1e-5)},
		{Key: "tokenizer.ggml.model", Type: gguf.TypeString, Value: "llama"},
		{Key: "tokenizer.ggml.tokens", Type: gguf.TypeArray, Value: tokens},
		{Key: "tokenizer.ggml.scores", Type: gguf.TypeArray, Value: scores},
		{Key: "tokenizer.ggml.token_type", Type: gguf.TypeArray, Value: types},
	}
	if s.qwen2 {
		for i := range kv {
			kv[i].Key = strings.Replace(kv[i].Key, "llama.", "qwen2.", 1)
			if kv[i].Key == "general.architecture" {
				kv[i].Value = "qwen2"
			}
		}
	}
	if s.bpeMerges != nil {
		for i := range kv {
			if kv[i].Key == "tokenizer.ggml.model" {
				kv[i].Value = "gpt2"
			}
		}
		kv = append(kv,
			gguf.KV{Key: "tokenizer.ggml.merges", Type: gguf.TypeArray, Value: s.bpeMerges},
			gguf.KV{Key: "tokenizer.ggml.pre", Type: gguf.TypeString, Value: "llama-bpe"},
			gguf.KV{Key: "tokenizer.ggml.bos_token_id", Type: gguf.TypeUint32, Value: uint32(256 + len(s.bpeMerges))},
			gguf.KV{Key: "tokenizer.ggml.eos_token_id", Type: gguf.TypeUint32, Value: uint32(256 + len(s.bpeMerges) + 1)},
			gguf.KV{Key: "tokenizer.ggml.add_bos_token", Type: gguf.TypeBool, Value: true},
		)
	}
	if s.template != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Type: gguf.TypeString, Value: s.template})
	}
	b, err := gguf.Write(kv, ts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// piecesOf returns the pieces of token ids, for tests to compare.
func (tk *tokenizer) piecesOf(ids []int) []string {
	var s []string
	for _, id := range ids {
		s = append(s, tk.pieces[id])
	}
	return s
}
