package local

import (
	"context"
	"math"
	"runtime"
)

// prefillBatch is how many prompt tokens go through the network together.
const prefillBatch = 32

// batch holds the activations of up to prefillBatch tokens.
type batch struct {
	x, xb, xb2 []float32 // n × dim
	q          []float32 // n × dim
	k, v       []float32 // n × kvDim
	hb, hb2    []float32 // n × ffn
}

func (w *weights) newBatch() *batch {
	hp := w.hp
	kvDim := hp.kvHeads * hp.headDim
	return &batch{
		x: make([]float32, prefillBatch*hp.dim), xb: make([]float32, prefillBatch*hp.dim), xb2: make([]float32, prefillBatch*hp.dim),
		q: make([]float32, prefillBatch*hp.dim),
		k: make([]float32, prefillBatch*kvDim), v: make([]float32, prefillBatch*kvDim),
		hb: make([]float32, prefillBatch*hp.ffn), hb2: make([]float32, prefillBatch*hp.ffn),
	}
}

// prefill runs toks at positions start, start+1, ... through the network in
// batches, filling the KV cache. When hidden is not nil it is called with
// each token's final normalised hidden state. It stops between batches
// when ctx is done.
func (w *weights) prefill(ctx context.Context, s *state, toks []int, start, threads int, hidden func([]float32)) error {
	b := w.newBatch()
	for lo := 0; lo < len(toks); lo += prefillBatch {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		hi := min(lo+prefillBatch, len(toks))
		w.forwardBatch(s, b, toks[lo:hi], start+lo, threads)
		if hidden != nil {
			d := w.hp.dim
			for i := range hi - lo {
				hidden(b.xb[i*d : (i+1)*d])
			}
		}
	}
	return nil
}

// forwardBatch is forward for several consecutive tokens; afterwards b.xb
// holds their final normalised hidden states. Logits are not computed.
func (w *weights) forwardBatch(s *state, b *batch, toks []int, start, threads int) {
	hp := &w.hp
	n, d := len(toks), hp.dim
	kvDim := hp.kvHeads * hp.headDim
	group := hp.heads / hp.kvHeads
	scale := float32(1 / math.Sqrt(float64(hp.headDim)))
	for i, t := range toks {
		w.embd.row(t, b.x[i*d:(i+1)*d])
	}
	for li := range w.layers {
		l := &w.layers[li]
		for i := range n {
			rmsNorm(b.xb[i*d:(i+1)*d], b.x[i*d:(i+1)*d], l.attnNorm, hp.eps)
		}
		l.wq.matMul(b.q, b.xb, n, threads)
		l.wk.matMul(b.k, b.xb, n, threads)
		l.wv.matMul(b.v, b.xb, n, threads)
		base := li * s.n * kvDim
		for i := range n {
			pos := start + i
			q, k, v := b.q[i*d:(i+1)*d], b.k[i*kvDim:(i+1)*kvDim], b.v[i*kvDim:(i+1)*kvDim]
			addBias(q, l.bq)
			addBias(k, l.bk)
			addBias(v, l.bv)
			w.rope(q, pos)
			w.rope(k, pos)
			copy(s.kcache[base+pos*kvDim:], k)
			copy(s.vcache[base+pos*kvDim:], v)
		}
		for i := range n {
			pos := start + i
			for h := 0; h < hp.heads; h++ {
				lo, hi := i*d+h*hp.headDim, i*d+(h+1)*hp.headDim
				s.attend(b.xb2[lo:hi], b.q[lo:hi], base+(h/group)*hp.headDim, kvDim, pos, scale)
			}
		}
		l.wo.matMul(b.xb, b.xb2, n, threads)
		for j := range n * d {
			b.x[j] += b.xb[j]
		}
		for i := range n {
			rmsNorm(b.xb[i*d:(i+1)*d], b.x[i*d:(i+1)*d], l.ffnNorm, hp.eps)
		}
		f := hp.ffn
		l.wGate.matMul(b.hb, b.xb, n, threads)
		l.wUp.matMul(b.hb2, b.xb, n, threads)
		for j := range n * f {
			b.hb[j] = silu(b.hb[j]) * b.hb2[j]
		}
		l.wDown.matMul(b.xb, b.hb, n, threads)
		for j := range n * d {
			b.x[j] += b.xb[j]
		}
	}
	for i := range n {
		rmsNorm(b.xb[i*d:(i+1)*d], b.x[i*d:(i+1)*d], w.outNorm, hp.eps)
	}
	runtime.KeepAlive(w)
}
