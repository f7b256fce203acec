// Package tinymodel builds the tiny model embedded in package local: a
// valid llama-architecture GGUF file whose weights are computed from a
// short text written for it (corpus.txt), not trained. The network is a
// character trigram model in transformer form:
//
//   - the token embedding puts a one-hot "current character" vector and a
//     large constant in the residual stream;
//   - in block 0, attention is a previous-token head: queries and keys are
//     constant vectors whose rotary phases differ by one position's angle,
//     so after RoPE every query attends (to within e^-40) to the position
//     just before it, and the values copy that position's one-hot vector
//     into a "previous character" part of the residual stream;
//   - the block 0 MLP has a SwiGLU unit per current character and per
//     (previous, current) pair seen at least twice, each firing only when
//     its characters are present; the units write the bigram log
//     probabilities and the trigram corrections into a "logit" part of the
//     residual stream;
//   - the output matrix reads the logit part, and gives every token that
//     never occurs a large negative logit through the constant.
//
// Block 1 carries small pseudo-random weights, so its attention and MLP
// run without changing the text much. What the model writes looks like
// English words and fragments but means nothing.
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

// Corpus returns the text the model is computed from.
func Corpus() string { return corpus }

// Shape of the model.
const (
	Dim     = 128
	Layers  = 2
	Heads   = 4
	KVHeads = 2
	HeadDim = Dim / Heads
	FFN     = 384
	Context = 1024
)

// Token ids fixed by the layout: unknown, begin and end of sequence, then
// the 256 byte tokens, then one piece per character of the corpus.
const (
	tokUnk  = 0
	tokBOS  = 1
	tokEOS  = 2
	firstCh = 3 + 256
)

// Construction constants.
const (
	bigK     = 64.0  // the constant in the residual stream
	gateA    = 24.0  // gate steepness: a firing unit sees +A/2, others -A/2 or less
	logitS   = 4.0   // logits are stored divided by this in the residual stream
	floorLog = -30.0 // logit of tokens that never occur
	minPair  = 2     // a (previous, current) pair needs this many occurrences for its own unit
)

// Build returns the GGUF file.
func Build() ([]byte, error) {
	paras := paragraphs(corpus)
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

	// Units are the tokens that occur: BOS, EOS and the characters.
	units := []int{tokBOS, tokEOS}
	for i := firstCh; i < vocab; i++ {
		units = append(units, i)
	}
	U := len(units)
	if 3*U+1 > Dim || U > KVHeads*HeadDim {
		return nil, fmt.Errorf("corpus has %d distinct characters; the layout fits at most %d", U-2, (Dim-1)/3-2)
	}
	unitOf := map[int]int{}
	for k, id := range units {
		unitOf[id] = k
	}
	cur := func(k int) int { return k }
	prev := func(k int) int { return U + k }
	cst := 2 * U
	lg := func(k int) int { return 2*U + 1 + k }

	// Counts over BOS, " " + paragraph, EOS. The position before BOS is BOS
	// itself (attention at position 0 can only see itself).
	c2 := make([][]float64, U)
	for i := range c2 {
		c2[i] = make([]float64, U)
	}
	c3 := map[[2]int][]float64{}
	for _, p := range paras {
		seq := []int{unitOf[tokBOS], unitOf[tokBOS]}
		for _, r := range " " + p {
			seq = append(seq, unitOf[ids[piece(r)]])
		}
		seq = append(seq, unitOf[tokEOS])
		for i := 2; i < len(seq); i++ {
			c2[seq[i-1]][seq[i]]++
			key := [2]int{seq[i-2], seq[i-1]}
			if c3[key] == nil {
				c3[key] = make([]float64, U)
			}
			c3[key][seq[i]]++
		}
	}
	// Bigram probabilities with add-alpha smoothing; BOS is never next.
	const alpha = 0.02
	p2 := make([][]float64, U)
	for c := range U {
		var total float64
		for _, n := range c2[c] {
			total += n
		}
		p2[c] = make([]float64, U)
		for j := range U {
			if j == unitOf[tokBOS] {
				continue
			}
			p2[c][j] = (c2[c][j] + alpha) / (total + alpha*float64(U-1))
		}
	}
	logp := func(p float64) float64 {
		if p == 0 {
			return floorLog
		}
		return max(math.Log(p), floorLog)
	}
	// Pairs with their own unit: the most frequent ones seen minPair times.
	type pair struct {
		key [2]int
		n   float64
	}
	var pairs []pair
	for key, cnt := range c3 {
		var n float64
		for _, v := range cnt {
			n += v
		}
		if n >= minPair {
			pairs = append(pairs, pair{key, n})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].n != pairs[j].n {
			return pairs[i].n > pairs[j].n
		}
		if pairs[i].key[0] != pairs[j].key[0] {
			return pairs[i].key[0] < pairs[j].key[0]
		}
		return pairs[i].key[1] < pairs[j].key[1]
	})
	if len(pairs) > FFN-U {
		pairs = pairs[:FFN-U]
	}

	mat := func(rows, cols int) [][]float64 {
		m := make([][]float64, rows)
		for i := range m {
			m[i] = make([]float64, cols)
		}
		return m
	}
	// Embeddings: one-hot current character plus the constant; tokens
	// that never occur look like a space.
	embd := mat(vocab, Dim)
	for id := range vocab {
		k, ok := unitOf[id]
		if !ok {
			k = unitOf[ids["▁"]]
		}
		embd[id][cur(k)] = 1
		embd[id][cst] = bigK
	}
	// Block 0 attention: a previous-token head.
	kvDim := KVHeads * HeadDim
	rmsIn := math.Sqrt((bigK*bigK + 1) / Dim)
	beta, base, err := previousTokenGain()
	if err != nil {
		return nil, err
	}
	wq, wk, wv, wo := mat(Dim, Dim), mat(kvDim, Dim), mat(kvDim, Dim), mat(Dim, Dim)
	for h := range Heads {
		for i := range HeadDim / 2 {
			th := math.Pow(base, -float64(2*i)/HeadDim)
			wq[h*HeadDim+2*i][cst] = beta * math.Cos(th) / bigK
			wq[h*HeadDim+2*i+1][cst] = -beta * math.Sin(th) / bigK
		}
	}
	for g := range KVHeads {
		for i := range HeadDim / 2 {
			wk[g*HeadDim+2*i][cst] = beta / bigK
		}
		for j := range HeadDim {
			if k := g*HeadDim + j; k < U {
				wv[g*HeadDim+j][cur(k)] = 1
			}
		}
	}
	group := Heads / KVHeads
	for g := range KVHeads {
		h := g * group // the first query head of each group writes; the others are silent
		for j := range HeadDim {
			if k := g*HeadDim + j; k < U {
				wo[prev(k)][h*HeadDim+j] = 1
			}
		}
	}
	// Block 0 MLP.
	rmsMid := math.Sqrt((bigK*bigK + 2) / Dim)
	gate, up, down := mat(FFN, Dim), mat(FFN, Dim), mat(Dim, FFN)
	upScale := 1 / (gateA / 2 / (1 + math.Exp(-gateA/2))) // 1/silu(A/2)
	for c := range U {
		gate[c][cur(c)] = gateA
		gate[c][cst] = -0.5 * gateA / bigK
		up[c][cst] = upScale / bigK
		for j := range U {
			down[lg(j)][c] = logp(p2[c][j]) / logitS
		}
	}
	for n, pr := range pairs {
		h := U + n
		p, c := pr.key[0], pr.key[1]
		gate[h][cur(c)] = gateA
		gate[h][prev(p)] += gateA
		gate[h][cst] = -1.5 * gateA / bigK
		up[h][cst] = upScale / bigK
		// Trigram probabilities with a Dirichlet prior centred on the bigram.
		cnt := c3[pr.key]
		for j := range U {
			p3 := (cnt[j] + p2[c][j]) / (pr.n + 1)
			down[lg(j)][h] = (logp(p3) - logp(p2[c][j])) / logitS
		}
	}
	// Output: unit j's logit is read from its logit dimension; tokens
	// that never occur (and BOS) get floorLog through the constant.
	rmsOut := math.Sqrt((bigK*bigK + 2) / Dim)
	out := mat(vocab, Dim)
	for id := range vocab {
		k, ok := unitOf[id]
		if !ok || id == tokBOS {
			out[id][cst] = floorLog * rmsOut / bigK
			continue
		}
		out[id][lg(k)] = logitS * rmsOut
	}

	rng := rand.New(rand.NewPCG(22, 2026))
	noise := func(rows, cols int, scale float64) [][]float64 {
		m := mat(rows, cols)
		for _, r := range m {
			for i := range r {
				r[i] = (rng.Float64()*2 - 1) * scale
			}
		}
		return m
	}
	t2 := func(name string, m [][]float64, typ gguf.TensorType) gguf.Tensor {
		flat := make([]float32, 0, len(m)*len(m[0]))
		for _, r := range m {
			for _, v := range r {
				flat = append(flat, quantize(v))
			}
		}
		t := gguf.Tensor{Name: name, Dims: []uint64{uint64(len(m[0])), uint64(len(m))}, Type: typ}
		switch typ {
		case gguf.F32:
			t.Data = gguf.EncodeF32(flat)
		case gguf.F16:
			t.Data = gguf.EncodeF16(flat)
		case gguf.Q8_0:
			t.Data = gguf.QuantizeQ8_0(flat)
		}
		return t
	}
	vec := func(name string, v float64) gguf.Tensor {
		return gguf.Tensor{Name: name, Dims: []uint64{Dim}, Type: gguf.F32, Data: gguf.EncodeF32(fill(Dim, quantize(v)))}
	}
	tensors := []gguf.Tensor{
		t2("token_embd.weight", embd, gguf.F32),
		vec("output_norm.weight", 1),
		t2("output.weight", out, gguf.F16),
		vec("blk.0.attn_norm.weight", rmsIn),
		t2("blk.0.attn_q.weight", wq, gguf.Q8_0),
		t2("blk.0.attn_k.weight", wk, gguf.Q8_0),
		t2("blk.0.attn_v.weight", wv, gguf.Q8_0),
		t2("blk.0.attn_output.weight", wo, gguf.Q8_0),
		vec("blk.0.ffn_norm.weight", rmsMid),
		t2("blk.0.ffn_gate.weight", gate, gguf.Q8_0),
		t2("blk.0.ffn_up.weight", up, gguf.Q8_0),
		t2("blk.0.ffn_down.weight", down, gguf.F16),
	}
	const sigma = 0.001 * 1.7320508 // uniform with standard deviation 0.001
	for l := 1; l < Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		tensors = append(tensors,
			vec(p+"attn_norm.weight", 1),
			t2(p+"attn_q.weight", noise(Dim, Dim, sigma), gguf.Q8_0),
			t2(p+"attn_k.weight", noise(kvDim, Dim, sigma), gguf.Q8_0),
			t2(p+"attn_v.weight", noise(kvDim, Dim, sigma), gguf.Q8_0),
			t2(p+"attn_output.weight", noise(Dim, Dim, sigma), gguf.Q8_0),
			vec(p+"ffn_norm.weight", 1),
			t2(p+"ffn_gate.weight", noise(FFN, Dim, sigma), gguf.Q8_0),
			t2(p+"ffn_up.weight", noise(FFN, Dim, sigma), gguf.Q8_0),
			t2(p+"ffn_down.weight", noise(Dim, FFN, sigma), gguf.F16),
		)
	}
	kv := []gguf.KV{
		{Key: "general.architecture", Type: gguf.TypeString, Value: "llama"},
		{Key: "general.name", Type: gguf.TypeString, Value: "verge-tiny"},
		{Key: "general.description", Type: gguf.TypeString, Value: "A character trigram model in llama form, computed from a short text; for tests and offline development. Its output is not meaningful."},
		{Key: "general.alignment", Type: gguf.TypeUint32, Value: uint32(32)},
		{Key: "llama.context_length", Type: gguf.TypeUint32, Value: uint32(Context)},
		{Key: "llama.embedding_length", Type: gguf.TypeUint32, Value: uint32(Dim)},
		{Key: "llama.block_count", Type: gguf.TypeUint32, Value: uint32(Layers)},
		{Key: "llama.feed_forward_length", Type: gguf.TypeUint32, Value: uint32(FFN)},
		{Key: "llama.attention.head_count", Type: gguf.TypeUint32, Value: uint32(Heads)},
		{Key: "llama.attention.head_count_kv", Type: gguf.TypeUint32, Value: uint32(KVHeads)},
		{Key: "llama.rope.dimension_count", Type: gguf.TypeUint32, Value: uint32(HeadDim)},
		{Key: "llama.rope.freq_base", Type: gguf.TypeFloat32, Value: float32(base)},
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

// previousTokenGain picks the RoPE base and the query/key gain beta of the
// previous-token head. With constant queries and keys whose phases differ
// by one position's angle in every rotary pair, the attention score of a
// key d positions back is beta²/sqrt(HeadDim) · Σ cos((d-1)·θ_i), largest
// at d = 1. The gain makes the worst margin to any other d within the
// context at least 40, so the softmax puts all but about e^-40 of its
// weight on the previous position.
func previousTokenGain() (beta, base float64, err error) {
	base = 100 // spreads the pair frequencies over (0.06, 1] radians
	var theta [HeadDim / 2]float64
	for i := range theta {
		theta[i] = math.Pow(base, -float64(2*i)/HeadDim)
	}
	score := func(d int) float64 {
		var s float64
		for _, th := range theta {
			s += math.Cos(float64(d-1) * th)
		}
		return s
	}
	best := score(1)
	margin := math.Inf(1)
	for d := 0; d < Context; d++ {
		if d != 1 {
			margin = min(margin, best-score(d))
		}
	}
	if margin < 0.1 {
		return 0, 0, fmt.Errorf("previous-token head margin %v too small", margin)
	}
	// Rounded so that last-bit differences in math.Cos do not change the file.
	beta2 := math.Ceil(40 * math.Sqrt(HeadDim) / margin)
	return math.Sqrt(beta2), base, nil
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

// quantize rounds to 1/4096 so that last-bit differences between math
// libraries are unlikely to change the file.
func quantize(x float64) float32 { return float32(math.Round(x*4096) / 4096) }

func fill(n int, v float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = v
	}
	return s
}
