package local

import (
	"cmp"
	"math/rand/v2"
	"slices"
)

// sampler picks the next token from logits: greedily at temperature 0,
// else from the softmax of logits/temperature restricted to the smallest
// set of most likely tokens whose probability reaches topP.
type sampler struct {
	temp, topP float64
	rng        *rand.Rand
	probs      []float32
	idx        []int
}

func (s *sampler) sample(logits []float32) int {
	if s.temp == 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	if cap(s.probs) < len(logits) {
		s.probs = make([]float32, len(logits))
	}
	p := s.probs[:len(logits)]
	inv := float32(1 / s.temp)
	for i, v := range logits {
		p[i] = v * inv
	}
	softmax(p)
	r := s.rng.Float64()
	if s.topP >= 1 {
		var c float64
		for i, v := range p {
			c += float64(v)
			if r < c {
				return i
			}
		}
		return len(p) - 1
	}
	if cap(s.idx) < len(p) {
		s.idx = make([]int, len(p))
	}
	idx := s.idx[:len(p)]
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if p[a] != p[b] {
			return cmp.Compare(p[b], p[a])
		}
		return a - b
	})
	var mass float64
	n := 0
	for n < len(idx) {
		mass += float64(p[idx[n]])
		n++
		if mass >= s.topP {
			break
		}
	}
	r *= mass
	var c float64
	for _, i := range idx[:n] {
		c += float64(p[i])
		if r < c {
			return i
		}
	}
	return idx[n-1]
}
