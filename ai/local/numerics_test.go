package local

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/verge-edge/verge/ai/local/gguf"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

func TestRMSNorm(t *testing.T) {
	out := make([]float32, 2)
	rmsNorm(out, []float32{3, 4}, []float32{1, 2}, 0)
	// mean of squares is 12.5
	want := []float64{3 / math.Sqrt(12.5), 2 * 4 / math.Sqrt(12.5)}
	for i := range out {
		if !near(float64(out[i]), want[i], 1e-6) {
			t.Fatalf("got %v, want %v", out, want)
		}
	}
}

func TestSoftmax(t *testing.T) {
	x := []float32{0, float32(math.Log(3)), 1000, 1000}
	softmax(x[:2])
	if !near(float64(x[0]), 0.25, 1e-6) || !near(float64(x[1]), 0.75, 1e-6) {
		t.Fatalf("got %v", x[:2])
	}
	softmax(x[2:]) // large values do not overflow
	if x[2] != 0.5 || x[3] != 0.5 {
		t.Fatalf("got %v", x[2:])
	}
}

func TestRoPE(t *testing.T) {
	freqs := ropeFreqs(4, 100) // pairs rotate at 1 and 1/10 radians per position
	if !near(float64(freqs[0]), 1, 1e-7) || !near(float64(freqs[1]), 0.1, 1e-6) {
		t.Fatalf("freqs %v", freqs)
	}
	x := []float32{1, 0, 0, 2, 5, 5, 5, 5}
	rope(x, 4, 4, 0, freqs)
	if x[0] != 1 || x[1] != 0 || x[3] != 2 {
		t.Fatalf("position 0 changed x: %v", x)
	}
	x = []float32{1, 0, 0, 2, 1, 0, 0, 2}
	rope(x, 4, 4, 3, freqs)
	want := []float64{math.Cos(3), math.Sin(3), -2 * math.Sin(0.3), 2 * math.Cos(0.3)}
	for h := range 2 { // both heads rotate alike
		for i := range want {
			if !near(float64(x[4*h+i]), want[i], 1e-6) {
				t.Fatalf("head %d: got %v, want %v", h, x[4*h:4*h+4], want)
			}
		}
	}
	// A partial rotary dimension leaves the rest of the head alone.
	x = []float32{1, 0, 7, 8}
	rope(x, 4, 2, 1, ropeFreqs(2, 100))
	if x[2] != 7 || x[3] != 8 || !near(float64(x[0]), math.Cos(1), 1e-6) {
		t.Fatalf("partial rope: %v", x)
	}
}

func TestSiLU(t *testing.T) {
	for _, x := range []float64{-3, 0, 0.5, 4} {
		if got, want := float64(silu(float32(x))), x/(1+math.Exp(-x)); !near(got, want, 1e-6) {
			t.Errorf("silu(%v) = %v, want %v", x, got, want)
		}
	}
}

// TestMatVec compares matVec with a naive product of the dequantized
// matrix for each encoding, serially and split across goroutines.
func TestMatVec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, cols = 1024, 512 // large enough to be split
	src := make([]float32, rows*cols)
	for i := range src {
		src[i] = float32(rng.Float64()*2 - 1)
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
	}
	for _, typ := range []gguf.TensorType{gguf.F32, gguf.F16, gguf.Q8_0} {
		var data []byte
		switch typ {
		case gguf.F32:
			data = gguf.EncodeF32(src)
		case gguf.F16:
			data = gguf.EncodeF16(src)
		case gguf.Q8_0:
			data = gguf.QuantizeQ8_0(src)
		}
		m := newMatrix(&gguf.TensorInfo{Dims: []uint64{cols, rows}, Type: typ}, data)
		deq := make([]float32, rows*cols)
		gguf.DequantizeRow(typ, data, deq)
		for _, threads := range []int{1, 4} {
			out := make([]float32, rows)
			m.matVec(out, x, threads)
			for r := range rows {
				var want float64
				for c := range cols {
					want += float64(deq[r*cols+c]) * float64(x[c])
				}
				if !near(float64(out[r]), want, 1e-4) {
					t.Fatalf("%s threads=%d row %d: got %v, want %v", typ, threads, r, out[r], want)
				}
			}
		}
	}
	// matMul of several vectors equals matVec of each, serial and split.
	for _, typ := range []gguf.TensorType{gguf.F32, gguf.Q8_0, gguf.Q4_0} {
		var data []byte
		switch typ {
		case gguf.F32:
			data = gguf.EncodeF32(src)
		case gguf.Q8_0:
			data = gguf.QuantizeQ8_0(src)
		case gguf.Q4_0:
			data = make([]byte, 18*rows*cols/32)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			for b := 0; b < len(data)/18; b++ {
				data[b*18], data[b*18+1] = 0x00, 0x3c
			}
		}
		m := newMatrix(&gguf.TensorInfo{Dims: []uint64{cols, rows}, Type: typ}, data)
		const n = 5
		xs := src[:n*cols]
		want := make([]float32, n*rows)
		for i := range n {
			m.matVec(want[i*rows:(i+1)*rows], xs[i*cols:(i+1)*cols], 1)
		}
		for _, threads := range []int{1, 4} {
			got := make([]float32, n*rows)
			m.matMul(got, xs, n, threads)
			for i := range got {
				if !near(float64(got[i]), float64(want[i]), 1e-5) {
					t.Fatalf("%s matMul threads=%d element %d: %v, want %v", typ, threads, i, got[i], want[i])
				}
			}
		}
	}
	// Q4_K and Q6_K rows are multiplied without decoding them: compare
	// with decoding, on random blocks with sane scales.
	for _, typ := range []gguf.TensorType{gguf.Q4_K, gguf.Q6_K} {
		const kr, kc = 64, 512
		_, bsz, _ := typ.BlockSize()
		data := make([]byte, kr*kc/256*bsz)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		for b := 0; b < len(data)/bsz; b++ {
			blk := data[b*bsz : (b+1)*bsz]
			if typ == gguf.Q4_K {
				binary.LittleEndian.PutUint16(blk, gguf.FloatToHalf(0.01))
				binary.LittleEndian.PutUint16(blk[2:], gguf.FloatToHalf(0.02))
			} else {
				binary.LittleEndian.PutUint16(blk[208:], gguf.FloatToHalf(0.003))
			}
		}
		m := newMatrix(&gguf.TensorInfo{Dims: []uint64{kc, kr}, Type: typ}, data)
		deq := make([]float32, kr*kc)
		gguf.DequantizeRow(typ, data, deq)
		xs := src[:3*kc]
		got := make([]float32, 3*kr)
		m.matMul(got, xs, 3, 1)
		one := make([]float32, kr)
		m.matVec(one, xs[:kc], 2)
		for i := range 3 {
			for r := range kr {
				var want float64
				for c := range kc {
					want += float64(deq[r*kc+c]) * float64(xs[i*kc+c])
				}
				if !near(float64(got[i*kr+r]), want, 1e-4) || (i == 0 && !near(float64(one[r]), want, 1e-4)) {
					t.Fatalf("%s vector %d row %d: got %v (matVec %v), want %v", typ, i, r, got[i*kr+r], one[r], want)
				}
			}
		}
	}
	// Q4_0 goes through the decode-a-row path.
	blk := make([]byte, 18*cols/32)
	for i := range blk {
		blk[i] = byte(rng.Uint32())
	}
	for b := 0; b < cols/32; b++ {
		blk[b*18], blk[b*18+1] = 0x00, 0x3c // scale 1
	}
	m := newMatrix(&gguf.TensorInfo{Dims: []uint64{cols, 1}, Type: gguf.Q4_0}, blk)
	deq := make([]float32, cols)
	gguf.DequantizeRow(gguf.Q4_0, blk, deq)
	out := make([]float32, 1)
	m.matVec(out, x, 1)
	var want float64
	for c := range cols {
		want += float64(deq[c]) * float64(x[c])
	}
	if !near(float64(out[0]), want, 1e-4) {
		t.Fatalf("Q4_0: got %v, want %v", out[0], want)
	}
}

// refForward is an independent float64 implementation of the llama
// network without a KV cache: it recomputes every position's hidden state
// from scratch and returns the logits after each token.
func refForward(t *testing.T, data []byte, toks []int) [][]float64 {
	t.Helper()
	f, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	mat := func(name string) [][]float64 {
		ti, ok := f.Tensor(name)
		if !ok {
			ti, _ = f.Tensor("token_embd.weight")
		}
		cols, rows := int(ti.Dims[0]), 1
		if len(ti.Dims) > 1 {
			rows = int(ti.Dims[1])
		}
		flat := make([]float32, rows*cols)
		gguf.DequantizeRow(ti.Type, f.TensorData(ti), flat)
		m := make([][]float64, rows)
		for r := range m {
			m[r] = make([]float64, cols)
			for c := range cols {
				m[r][c] = float64(flat[r*cols+c])
			}
		}
		return m
	}
	mul := func(m [][]float64, x []float64) []float64 {
		y := make([]float64, len(m))
		for r := range m {
			for c, v := range m[r] {
				y[r] += v * x[c]
			}
		}
		return y
	}
	norm := func(x []float64, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+1e-5)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * s * w[i]
		}
		return y
	}
	arch, _ := f.String("general.architecture")
	neox := arch == "qwen2"
	u := func(k string) int { v, _ := f.Uint(arch + "." + k); return int(v) }
	dim, layers, heads, kvHeads := u("embedding_length"), u("block_count"), u("attention.head_count"), u("attention.head_count_kv")
	hd := dim / heads
	rot := func(x []float64, pos int) {
		for h := 0; h < len(x); h += hd {
			for i := 0; i < hd; i += 2 {
				th := float64(pos) * math.Pow(10000, -float64(i)/float64(hd))
				j, k := h+i, h+i+1 // pairs of neighbours
				if neox {
					j, k = h+i/2, h+i/2+hd/2 // pairs across the halves
				}
				a, b := x[j], x[k]
				x[j], x[k] = a*math.Cos(th)-b*math.Sin(th), a*math.Sin(th)+b*math.Cos(th)
			}
		}
	}
	emb := mat("token_embd.weight")
	n := len(toks)
	xs := make([][]float64, n)
	for p, tk := range toks {
		xs[p] = append([]float64(nil), emb[tk]...)
	}
	for l := range layers {
		pre := "blk." + itoa(l) + "."
		an, fn := mat(pre + "attn_norm.weight")[0], mat(pre + "ffn_norm.weight")[0]
		wq, wk, wv, wo := mat(pre+"attn_q.weight"), mat(pre+"attn_k.weight"), mat(pre+"attn_v.weight"), mat(pre+"attn_output.weight")
		wg, wu, wd := mat(pre+"ffn_gate.weight"), mat(pre+"ffn_up.weight"), mat(pre+"ffn_down.weight")
		bias := func(name string, n int) []float64 {
			if _, ok := f.Tensor(name); !ok {
				return make([]float64, n)
			}
			return mat(name)[0]
		}
		kvd := kvHeads * hd
		bq, bk, bv := bias(pre+"attn_q.bias", dim), bias(pre+"attn_k.bias", kvd), bias(pre+"attn_v.bias", kvd)
		add := func(x, b []float64) []float64 {
			for i := range x {
				x[i] += b[i]
			}
			return x
		}
		qs, ks, vs := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		for p := range n {
			xn := norm(xs[p], an)
			qs[p], ks[p], vs[p] = add(mul(wq, xn), bq), add(mul(wk, xn), bk), add(mul(wv, xn), bv)
			rot(qs[p], p)
			rot(ks[p], p)
		}
		for p := range n {
			att := make([]float64, dim)
			for h := range heads {
				kh := h / (heads / kvHeads)
				sc := make([]float64, p+1)
				mx := math.Inf(-1)
				for s := 0; s <= p; s++ {
					for i := range hd {
						sc[s] += qs[p][h*hd+i] * ks[s][kh*hd+i]
					}
					sc[s] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[s])
				}
				var sum float64
				for s := range sc {
					sc[s] = math.Exp(sc[s] - mx)
					sum += sc[s]
				}
				for s := range sc {
					for i := range hd {
						att[h*hd+i] += sc[s] / sum * vs[s][kh*hd+i]
					}
				}
			}
			o := mul(wo, att)
			for i := range o {
				xs[p][i] += o[i]
			}
			xn := norm(xs[p], fn)
			g, up := mul(wg, xn), mul(wu, xn)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * up[i]
			}
			d := mul(wd, g)
			for i := range d {
				xs[p][i] += d[i]
			}
		}
	}
	on, out := mat("output_norm.weight")[0], mat("output.weight")
	logits := make([][]float64, n)
	for p := range n {
		logits[p] = mul(out, norm(xs[p], on))
	}
	return logits
}

func itoa(i int) string { return string(rune('0' + i)) }

// TestForwardMatchesReference runs random models of several shapes through
// forward, one token at a time with the KV cache, and compares the logits
// at every position with refForward.
func TestForwardMatchesReference(t *testing.T) {
	for _, s := range []testShape{
		{dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, ctx: 64, wtype: gguf.Q8_0},
		{dim: 64, layers: 1, heads: 4, kvHeads: 4, ffn: 64, ctx: 64, wtype: gguf.F32, tied: true},
		{dim: 32, layers: 3, heads: 2, kvHeads: 1, ffn: 64, ctx: 64, wtype: gguf.F16},
		{dim: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, ctx: 64, wtype: gguf.Q8_0, qwen2: true},
	} {
		data := randomModel(t, s, 42)
		m, err := Load(data, Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		toks := []int{1, 100, 200, 37, 5, 250, 9, 120}
		for i := range 32 { // past one prefill batch
			toks = append(toks, 3+(i*37)%250)
		}
		ref := refForward(t, data, toks)
		st := m.w.newState(len(toks))
		for p, tk := range toks {
			m.w.forward(st, tk, p, true, 2)
			for j, want := range ref[p] {
				if !near(float64(st.logits[j]), want, 2e-3) {
					t.Fatalf("shape %+v position %d logit %d: got %v, want %v", s, p, j, st.logits[j], want)
				}
			}
		}
		// Batched prompt processing fills the same KV cache: after
		// prefilling all but the last token, the last token's logits match.
		st = m.w.newState(len(toks))
		if err := m.w.prefill(context.Background(), st, toks[:len(toks)-1], 0, 2, nil); err != nil {
			t.Fatal(err)
		}
		p := len(toks) - 1
		m.w.forward(st, toks[p], p, true, 2)
		for j, want := range ref[p] {
			if !near(float64(st.logits[j]), want, 2e-3) {
				t.Fatalf("shape %+v after prefill, logit %d: got %v, want %v", s, j, st.logits[j], want)
			}
		}
	}
}

// TestRopeFreqFactors checks rope_freqs.weight divides each pair's frequency.
func TestRopeFreqFactors(t *testing.T) {
	data := randomModel(t, testShape{dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 32, ctx: 64, wtype: gguf.F32}, 1)
	f, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var ts []gguf.Tensor
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		ts = append(ts, gguf.Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: f.TensorData(ti)})
	}
	factors := make([]float32, 8) // head size 16: 8 pairs
	for i := range factors {
		factors[i] = float32(i + 1)
	}
	ts = append(ts, gguf.Tensor{Name: "rope_freqs.weight", Dims: []uint64{8}, Type: gguf.F32, Data: gguf.EncodeF32(factors)})
	b, err := gguf.Write(f.KV, ts)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain := ropeFreqs(16, 10000)
	for i, got := range m.w.freqs {
		if want := plain[i] / float32(i+1); !near(float64(got), float64(want), 1e-6) {
			t.Fatalf("pair %d: frequency %v, want %v", i, got, want)
		}
	}
	factors[3] = 0
	ts[len(ts)-1].Data = gguf.EncodeF32(factors)
	b, _ = gguf.Write(f.KV, ts)
	if _, err := Load(b, Options{}); err == nil {
		t.Fatal("a zero factor was accepted")
	}
}
