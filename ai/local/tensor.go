package local

import (
	"encoding/binary"
	"math"
	"runtime"
	"sync"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// matrix is a weight matrix of rows × cols, kept in its file encoding. F32,
// F16 and BF16 are decoded to float32 at load; Q8_0 is multiplied in place
// block by block; the other quantisations decode one row at a time.
type matrix struct {
	typ      gguf.TensorType
	rows     int
	cols     int
	f32      []float32 // when typ is F32 (after decoding F16/BF16)
	raw      []byte    // quantised rows
	rowBytes int
	scales   []float32 // Q8_0: every block's scale, decoded once
}

func newMatrix(t *gguf.TensorInfo, data []byte) matrix {
	m := matrix{typ: t.Type, cols: int(t.Dims[0]), rows: 1}
	for _, d := range t.Dims[1:] {
		m.rows *= int(d)
	}
	switch t.Type {
	case gguf.F32, gguf.F16, gguf.BF16:
		m.f32 = make([]float32, m.rows*m.cols)
		gguf.DequantizeRow(t.Type, data, m.f32)
		m.typ = gguf.F32
	default:
		m.raw = data
		m.rowBytes = t.Type.RowBytes(m.cols)
		if t.Type == gguf.Q8_0 {
			m.scales = make([]float32, len(data)/34)
			for i := range m.scales {
				m.scales[i] = gguf.HalfToFloat(binary.LittleEndian.Uint16(data[i*34:]))
			}
		}
	}
	return m
}

// row decodes row r into dst (len cols).
func (m *matrix) row(r int, dst []float32) {
	if m.f32 != nil {
		copy(dst, m.f32[r*m.cols:(r+1)*m.cols])
		return
	}
	gguf.DequantizeRow(m.typ, m.raw[r*m.rowBytes:(r+1)*m.rowBytes], dst)
}

// parallelMin is the matrix size (rows × cols) from which matVec splits the
// rows across goroutines; below it the goroutine start costs more than it saves.
const parallelMin = 1 << 18

// matVec computes out = m · x (len(x) == cols, len(out) == rows), using up
// to threads goroutines for large matrices.
func (m *matrix) matVec(out, x []float32, threads int) {
	if m.serial(m.rows*m.cols, threads) {
		m.matVecRange(out, x, 0, m.rows, nil)
		return
	}
	m.splitRows(threads, func(lo, hi int) { m.matVecRange(out, x, lo, hi, nil) })
}

// serial reports whether work (about that many multiply-adds) over the
// matrix's rows is best done in the calling goroutine: few threads, little
// work or too few rows to split.
func (m *matrix) serial(work, threads int) bool {
	return threads <= 1 || work < parallelMin || m.rows < 2*threads
}

// splitRows runs fn over consecutive ranges of the matrix's rows in up to
// threads goroutines and waits for them.
func (m *matrix) splitRows(threads int, fn func(lo, hi int)) {
	var wg sync.WaitGroup
	chunk := (m.rows + threads - 1) / threads
	for lo := 0; lo < m.rows; lo += chunk {
		hi := min(lo+chunk, m.rows)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

func (m *matrix) matVecRange(out, x []float32, lo, hi int, scratch []float32) {
	cols := m.cols
	switch m.typ {
	case gguf.F32:
		for r := lo; r < hi; r++ {
			out[r] = dot(m.f32[r*cols:(r+1)*cols], x)
		}
	case gguf.Q8_0:
		nb := cols / 32
		for r := lo; r < hi; r++ {
			out[r] = dotQ8_0(m.raw[r*m.rowBytes:(r+1)*m.rowBytes], m.scales[r*nb:(r+1)*nb], x)
		}
	case gguf.Q4_K:
		for r := lo; r < hi; r++ {
			out[r] = dotQ4K(m.raw[r*m.rowBytes:(r+1)*m.rowBytes], x)
		}
	case gguf.Q6_K:
		for r := lo; r < hi; r++ {
			out[r] = dotQ6K(m.raw[r*m.rowBytes:(r+1)*m.rowBytes], x)
		}
	default:
		if scratch == nil {
			scratch = make([]float32, cols)
		}
		for r := lo; r < hi; r++ {
			gguf.DequantizeRow(m.typ, m.raw[r*m.rowBytes:(r+1)*m.rowBytes], scratch)
			out[r] = dot(scratch, x)
		}
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dotQ8_0 is the dot product of a Q8_0 row with x: per block of 32, the
// block's scale times the sum of its int8 values times x.
func dotQ8_0(row []byte, scales []float32, x []float32) float32 {
	var sum float32
	for b, d := range scales {
		q := row[b*34+2 : b*34+34 : b*34+34]
		xs := x[b*32 : b*32+32 : b*32+32]
		var s0, s1, s2, s3 float32
		for i := 0; i < 32; i += 8 {
			s0 += float32(int8(q[i]))*xs[i] + float32(int8(q[i+4]))*xs[i+4]
			s1 += float32(int8(q[i+1]))*xs[i+1] + float32(int8(q[i+5]))*xs[i+5]
			s2 += float32(int8(q[i+2]))*xs[i+2] + float32(int8(q[i+6]))*xs[i+6]
			s3 += float32(int8(q[i+3]))*xs[i+3] + float32(int8(q[i+7]))*xs[i+7]
		}
		sum += d * ((s0 + s1) + (s2 + s3))
	}
	return sum
}

// rmsNorm writes x / sqrt(mean(x²) + eps) · w into out.
func rmsNorm(out, x, w []float32, eps float32) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := float32(1 / math.Sqrt(ss/float64(len(x))+float64(eps)))
	for i, v := range x {
		out[i] = v * scale * w[i]
	}
}

// softmax replaces x by its softmax, in place.
func softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	mx := x[0]
	for _, v := range x[1:] {
		mx = max(mx, v)
	}
	var sum float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - mx)))
		x[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
}

// rope rotates consecutive pairs (x[2i], x[2i+1]) of each head of x by
// pos·base^(-2i/ropeDim), for the first ropeDim elements of every head
// (GGML's "normal" RoPE, which llama-architecture GGUF files use).
func rope(x []float32, headDim, ropeDim, pos int, freqs []float32) {
	for h := 0; h+headDim <= len(x); h += headDim {
		for i := 0; i < ropeDim; i += 2 {
			theta := float64(pos) * float64(freqs[i/2])
			c, s := float32(math.Cos(theta)), float32(math.Sin(theta))
			a, b := x[h+i], x[h+i+1]
			x[h+i] = a*c - b*s
			x[h+i+1] = a*s + b*c
		}
	}
}

// ropeNeox is rope in the NEOX arrangement (qwen2 and others): element i
// of the first half of the rotary dimensions pairs with element
// i+ropeDim/2.
func ropeNeox(x []float32, headDim, ropeDim, pos int, freqs []float32) {
	half := ropeDim / 2
	for h := 0; h+headDim <= len(x); h += headDim {
		for i := range half {
			theta := float64(pos) * float64(freqs[i])
			c, s := float32(math.Cos(theta)), float32(math.Sin(theta))
			a, b := x[h+i], x[h+i+half]
			x[h+i] = a*c - b*s
			x[h+i+half] = a*s + b*c
		}
	}
}

func ropeFreqs(ropeDim int, base float64) []float32 {
	f := make([]float32, ropeDim/2)
	for i := range f {
		f[i] = float32(math.Pow(base, -float64(2*i)/float64(ropeDim)))
	}
	return f
}

func silu(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

func defaultThreads() int { return max(1, runtime.GOMAXPROCS(0)) }

// matMul computes out[i] = m · x[i] for n vectors stored one after the other
// (x is n × cols, out is n × rows). Each weight row is read once for all n
// vectors, which is what makes prompt processing faster than n matVecs.
func (m *matrix) matMul(out, x []float32, n, threads int) {
	if n == 1 {
		m.matVec(out, x, threads)
		return
	}
	if m.serial(m.rows*m.cols*n, threads) {
		m.matMulRange(out, x, n, 0, m.rows)
		return
	}
	m.splitRows(threads, func(lo, hi int) { m.matMulRange(out, x, n, lo, hi) })
}

func (m *matrix) matMulRange(out, x []float32, n, lo, hi int) {
	cols, rows := m.cols, m.rows
	switch m.typ {
	case gguf.F32:
		for r := lo; r < hi; r++ {
			row := m.f32[r*cols : (r+1)*cols]
			for i := range n {
				out[i*rows+r] = dot(row, x[i*cols:(i+1)*cols])
			}
		}
	case gguf.Q8_0:
		nb := cols / 32
		for r := lo; r < hi; r++ {
			raw, sc := m.raw[r*m.rowBytes:(r+1)*m.rowBytes], m.scales[r*nb:(r+1)*nb]
			for i := range n {
				out[i*rows+r] = dotQ8_0(raw, sc, x[i*cols:(i+1)*cols])
			}
		}
	case gguf.Q4_K, gguf.Q6_K:
		for r := lo; r < hi; r++ {
			raw := m.raw[r*m.rowBytes : (r+1)*m.rowBytes]
			for i := range n {
				if m.typ == gguf.Q4_K {
					out[i*rows+r] = dotQ4K(raw, x[i*cols:(i+1)*cols])
				} else {
					out[i*rows+r] = dotQ6K(raw, x[i*cols:(i+1)*cols])
				}
			}
		}
	default:
		row := make([]float32, cols)
		for r := lo; r < hi; r++ {
			gguf.DequantizeRow(m.typ, m.raw[r*m.rowBytes:(r+1)*m.rowBytes], row)
			for i := range n {
				out[i*rows+r] = dot(row, x[i*cols:(i+1)*cols])
			}
		}
	}
}

// dotQ4K is the dot product of a row of Q4_K blocks with x, without
// decoding the row: per sub-block of 32, d·scale·Σq·x − dmin·min·Σx.
func dotQ4K(row []byte, x []float32) float32 {
	var sum float32
	for b := 0; b*144 < len(row); b++ {
		blk := row[b*144 : b*144+144]
		xs := x[b*256 : b*256+256]
		d := gguf.HalfToFloat(binary.LittleEndian.Uint16(blk))
		dmin := gguf.HalfToFloat(binary.LittleEndian.Uint16(blk[2:]))
		scales := blk[4:16]
		q := blk[16:144]
		for c := range 4 {
			sc1, m1 := gguf.ScaleMinK4(2*c, scales)
			sc2, m2 := gguf.ScaleMinK4(2*c+1, scales)
			qc := q[c*32 : c*32+32]
			lo, hi := xs[c*64:c*64+32], xs[c*64+32:c*64+64]
			var qlo, qhi, slo, shi float32
			for l := range 32 {
				qlo += float32(qc[l]&0xf) * lo[l]
				qhi += float32(qc[l]>>4) * hi[l]
				slo += lo[l]
				shi += hi[l]
			}
			sum += d*(float32(sc1)*qlo+float32(sc2)*qhi) - dmin*(float32(m1)*slo+float32(m2)*shi)
		}
	}
	return sum
}

// dotQ6K is the dot product of a row of Q6_K blocks with x, without
// decoding the row.
func dotQ6K(row []byte, x []float32) float32 {
	var sum float32
	for b := 0; b*210 < len(row); b++ {
		blk := row[b*210 : b*210+210]
		xs := x[b*256 : b*256+256]
		ql, qh, sc := blk[0:128], blk[128:192], blk[192:208]
		d := gguf.HalfToFloat(binary.LittleEndian.Uint16(blk[208:]))
		for n := 0; n < 256; n += 128 {
			var acc [8]float32 // per sub-block of 16
			for l := range 32 {
				is := l / 16
				h := qh[l]
				acc[is] += float32(int(ql[l]&0xf|(h&3)<<4)-32) * xs[n+l]
				acc[is+2] += float32(int(ql[l+32]&0xf|(h>>2&3)<<4)-32) * xs[n+l+32]
				acc[is+4] += float32(int(ql[l]>>4|(h>>4&3)<<4)-32) * xs[n+l+64]
				acc[is+6] += float32(int(ql[l+32]>>4|(h>>6&3)<<4)-32) * xs[n+l+96]
			}
			var s float32
			for i, a := range acc {
				s += float32(int8(sc[i])) * a
			}
			sum += d * s
			ql, qh, sc = ql[64:], qh[32:], sc[8:]
		}
	}
	return sum
}
