package local

import (
	"fmt"
	"math"
	"runtime"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// hparams are the llama hyper-parameters read from the GGUF metadata.
type hparams struct {
	dim      int // embedding_length
	layers   int // block_count
	heads    int // attention.head_count
	kvHeads  int // attention.head_count_kv
	headDim  int
	ropeDim  int
	ffn      int // feed_forward_length
	vocab    int
	ctx      int // context_length
	eps      float32
	ropeBase float64
	neox     bool // RoPE rotates (x[i], x[i+ropeDim/2]) rather than (x[2i], x[2i+1])
}

type layer struct {
	attnNorm          []float32
	wq, wk, wv, wo    matrix
	bq, bk, bv        []float32 // attention biases (qwen2), nil when absent
	ffnNorm           []float32
	wGate, wUp, wDown matrix
}

// weights is a llama (or qwen2: llama with attention biases and NEOX
// RoPE) network loaded from a GGUF file.
type weights struct {
	hp      hparams
	embd    matrix // token_embd: vocab rows of dim
	layers  []layer
	outNorm []float32
	out     matrix // output (or token_embd when tied): vocab rows of dim
	freqs   []float32
}

// maxDim bounds the model sizes Open accepts, so that a hostile file's
// metadata cannot ask for huge per-request buffers.
const (
	maxDim    = 1 << 16
	maxLayers = 1 << 10
	maxCtx    = 1 << 20
	maxVocab  = 1 << 21
)

func loadWeights(f *gguf.File) (*weights, error) {
	arch, _ := f.String("general.architecture")
	if arch != "llama" && arch != "qwen2" {
		return nil, fmt.Errorf("unsupported architecture %q (supported: llama, qwen2)", arch)
	}
	u := func(key string, def int, lo, hi int) (int, error) {
		v, ok := f.Uint(arch + "." + key)
		if !ok {
			if def >= 0 {
				return def, nil
			}
			return 0, fmt.Errorf("missing metadata %s.%s", arch, key)
		}
		if v < uint64(lo) || v > uint64(hi) {
			return 0, fmt.Errorf("metadata %s.%s = %d out of range [%d, %d]", arch, key, v, lo, hi)
		}
		return int(v), nil
	}
	var hp hparams
	var err error
	if hp.dim, err = u("embedding_length", -1, 1, maxDim); err != nil {
		return nil, err
	}
	if hp.layers, err = u("block_count", -1, 1, maxLayers); err != nil {
		return nil, err
	}
	if hp.heads, err = u("attention.head_count", -1, 1, hp.dim); err != nil {
		return nil, err
	}
	if hp.kvHeads, err = u("attention.head_count_kv", hp.heads, 1, hp.heads); err != nil {
		return nil, err
	}
	// At most 16 times the embedding (real models use 2.5 to 8), so that
	// per-request buffers stay proportional to the file's own tensors.
	if hp.ffn, err = u("feed_forward_length", -1, 1, 16*hp.dim); err != nil {
		return nil, err
	}
	if hp.ctx, err = u("context_length", 2048, 1, maxCtx); err != nil {
		return nil, err
	}
	if hp.dim%hp.heads != 0 || hp.heads%hp.kvHeads != 0 {
		return nil, fmt.Errorf("head counts %d/%d do not divide embedding length %d", hp.heads, hp.kvHeads, hp.dim)
	}
	hp.headDim = hp.dim / hp.heads
	if hp.ropeDim, err = u("rope.dimension_count", hp.headDim, 2, hp.headDim); err != nil {
		return nil, err
	}
	if hp.ropeDim%2 != 0 || hp.headDim%2 != 0 {
		return nil, fmt.Errorf("rope dimension %d and head size %d must be even", hp.ropeDim, hp.headDim)
	}
	hp.eps = 1e-5
	if v, ok := f.Float(arch + ".attention.layer_norm_rms_epsilon"); ok {
		if !(v > 0 && v < 1) {
			return nil, fmt.Errorf("metadata %s.attention.layer_norm_rms_epsilon = %v out of range", arch, v)
		}
		hp.eps = float32(v)
	}
	hp.neox = arch == "qwen2"
	hp.ropeBase = 10000
	if v, ok := f.Float(arch + ".rope.freq_base"); ok {
		if !(v > 1 && v < 1e12) {
			return nil, fmt.Errorf("metadata %s.rope.freq_base = %v out of range", arch, v)
		}
		hp.ropeBase = v
	}

	w := &weights{hp: hp, freqs: ropeFreqs(hp.ropeDim, hp.ropeBase)}
	// Llama 3.1 and later stretch the low rotary frequencies by per-pair
	// factors stored as a tensor: each frequency is divided by its factor.
	if t, ok := f.Tensor("rope_freqs.weight"); ok {
		if len(t.Dims) != 1 || t.Dims[0] != uint64(hp.ropeDim/2) {
			return nil, fmt.Errorf("tensor rope_freqs.weight has shape %v, want [%d]", t.Dims, hp.ropeDim/2)
		}
		factors := make([]float32, hp.ropeDim/2)
		fm := newMatrix(t, f.TensorData(t))
		fm.row(0, factors)
		for i, fac := range factors {
			if !(fac > 0) {
				return nil, fmt.Errorf("rope_freqs.weight[%d] = %v is not positive", i, fac)
			}
			w.freqs[i] /= fac
		}
	}
	kvDim := hp.kvHeads * hp.headDim
	get := func(name string, cols, rows int) (matrix, error) {
		t, ok := f.Tensor(name)
		if !ok {
			return matrix{}, fmt.Errorf("missing tensor %s", name)
		}
		want := []uint64{uint64(cols)}
		if rows > 0 {
			want = append(want, uint64(rows))
		}
		if len(t.Dims) != len(want) || t.Dims[0] != want[0] || (rows > 0 && t.Dims[1] != want[1]) {
			return matrix{}, fmt.Errorf("tensor %s has shape %v, want %v", name, t.Dims, want)
		}
		return newMatrix(t, f.TensorData(t)), nil
	}
	vec := func(name string, n int) ([]float32, error) {
		m, err := get(name, n, 0)
		if err != nil {
			return nil, err
		}
		v := make([]float32, n)
		m.row(0, v)
		return v, nil
	}
	et, ok := f.Tensor("token_embd.weight")
	if !ok || len(et.Dims) != 2 {
		return nil, fmt.Errorf("missing or malformed tensor token_embd.weight")
	}
	if et.Dims[1] > maxVocab {
		return nil, fmt.Errorf("vocabulary of %d exceeds %d", et.Dims[1], maxVocab)
	}
	hp.vocab = int(et.Dims[1])
	w.hp.vocab = hp.vocab
	if w.embd, err = get("token_embd.weight", hp.dim, hp.vocab); err != nil {
		return nil, err
	}
	if w.outNorm, err = vec("output_norm.weight", hp.dim); err != nil {
		return nil, err
	}
	if _, ok := f.Tensor("output.weight"); ok {
		if w.out, err = get("output.weight", hp.dim, hp.vocab); err != nil {
			return nil, err
		}
	} else {
		w.out = w.embd
	}
	w.layers = make([]layer, hp.layers)
	for i := range w.layers {
		l := &w.layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		for _, s := range []struct {
			m          *matrix
			name       string
			cols, rows int
		}{
			{&l.wq, "attn_q.weight", hp.dim, hp.dim},
			{&l.wk, "attn_k.weight", hp.dim, kvDim},
			{&l.wv, "attn_v.weight", hp.dim, kvDim},
			{&l.wo, "attn_output.weight", hp.dim, hp.dim},
			{&l.wGate, "ffn_gate.weight", hp.dim, hp.ffn},
			{&l.wUp, "ffn_up.weight", hp.dim, hp.ffn},
			{&l.wDown, "ffn_down.weight", hp.ffn, hp.dim},
		} {
			if *s.m, err = get(p+s.name, s.cols, s.rows); err != nil {
				return nil, err
			}
		}
		if l.attnNorm, err = vec(p+"attn_norm.weight", hp.dim); err != nil {
			return nil, err
		}
		for _, b := range []struct {
			v    *[]float32
			name string
			n    int
		}{{&l.bq, "attn_q.bias", hp.dim}, {&l.bk, "attn_k.bias", kvDim}, {&l.bv, "attn_v.bias", kvDim}} {
			if _, ok := f.Tensor(p + b.name); ok {
				if *b.v, err = vec(p+b.name, b.n); err != nil {
					return nil, err
				}
			}
		}
		if l.ffnNorm, err = vec(p+"ffn_norm.weight", hp.dim); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// rope applies the model's rotary embedding for position pos to x.
func (w *weights) rope(x []float32, pos int) {
	if w.hp.neox {
		ropeNeox(x, w.hp.headDim, w.hp.ropeDim, pos, w.freqs)
	} else {
		rope(x, w.hp.headDim, w.hp.ropeDim, pos, w.freqs)
	}
}

func addBias(x, b []float32) {
	for i, v := range b {
		x[i] += v
	}
}

// state is one sequence's working memory: activations and the KV cache
// for up to n positions.
type state struct {
	n              int
	x, xb, xb2     []float32
	q, k, v        []float32
	hb, hb2        []float32
	att            []float32
	logits         []float32
	kcache, vcache []float32 // layers × n × kvDim
}

func (w *weights) newState(n int) *state {
	hp := w.hp
	kvDim := hp.kvHeads * hp.headDim
	return &state{
		n:  n,
		x:  make([]float32, hp.dim),
		xb: make([]float32, hp.dim), xb2: make([]float32, hp.dim),
		q: make([]float32, hp.dim), k: make([]float32, kvDim), v: make([]float32, kvDim),
		hb: make([]float32, hp.ffn), hb2: make([]float32, hp.ffn),
		att:    make([]float32, n),
		logits: make([]float32, hp.vocab),
		kcache: make([]float32, hp.layers*n*kvDim),
		vcache: make([]float32, hp.layers*n*kvDim),
	}
}

// attend computes one attention head at position pos into out: the scores of
// query q against the keys of positions 0..pos, softmaxed, weigh their values.
// The keys and values of position t are at off+t*kvDim in the caches.
func (s *state) attend(out, q []float32, off, kvDim, pos int, scale float32) {
	n := len(q)
	att := s.att[:pos+1]
	for t := 0; t <= pos; t++ {
		att[t] = dot(q, s.kcache[off+t*kvDim:][:n]) * scale
	}
	softmax(att)
	clear(out)
	for t := 0; t <= pos; t++ {
		v := s.vcache[off+t*kvDim:][:n]
		a := att[t]
		for i := range out {
			out[i] += a * v[i]
		}
	}
}

// kvBytes reports the KV cache bytes a state of n positions takes.
func (w *weights) kvBytes(n int) int64 {
	return int64(2*4*w.hp.layers*w.hp.kvHeads*w.hp.headDim) * int64(n)
}

// forward runs token tok at position pos through the network. Afterwards
// s.xb holds the final normalised hidden state; when logits is true,
// s.logits holds the next-token logits.
func (w *weights) forward(s *state, tok, pos int, logits bool, threads int) {
	hp := &w.hp
	kvDim := hp.kvHeads * hp.headDim
	group := hp.heads / hp.kvHeads
	scale := float32(1 / math.Sqrt(float64(hp.headDim)))
	w.embd.row(tok, s.x)
	for li := range w.layers {
		l := &w.layers[li]
		rmsNorm(s.xb, s.x, l.attnNorm, hp.eps)
		l.wq.matVec(s.q, s.xb, threads)
		l.wk.matVec(s.k, s.xb, threads)
		l.wv.matVec(s.v, s.xb, threads)
		addBias(s.q, l.bq)
		addBias(s.k, l.bk)
		addBias(s.v, l.bv)
		w.rope(s.q, pos)
		w.rope(s.k, pos)
		base := li * s.n * kvDim
		copy(s.kcache[base+pos*kvDim:], s.k)
		copy(s.vcache[base+pos*kvDim:], s.v)
		for h := 0; h < hp.heads; h++ {
			s.attend(s.xb2[h*hp.headDim:(h+1)*hp.headDim], s.q[h*hp.headDim:(h+1)*hp.headDim],
				base+(h/group)*hp.headDim, kvDim, pos, scale)
		}
		l.wo.matVec(s.xb, s.xb2, threads)
		for i := range s.x {
			s.x[i] += s.xb[i]
		}
		rmsNorm(s.xb, s.x, l.ffnNorm, hp.eps)
		l.wGate.matVec(s.hb, s.xb, threads)
		l.wUp.matVec(s.hb2, s.xb, threads)
		for i := range s.hb {
			s.hb[i] = silu(s.hb[i]) * s.hb2[i]
		}
		l.wDown.matVec(s.xb, s.hb, threads)
		for i := range s.x {
			s.x[i] += s.xb[i]
		}
	}
	rmsNorm(s.xb, s.x, w.outNorm, hp.eps)
	if logits {
		w.out.matVec(s.logits, s.xb, threads)
	}
	runtime.KeepAlive(w) // its matrices may point into a mapping released when w is collected
}
