package local

import (
	"container/heap"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// Token types in tokenizer.ggml.token_type, as numbered by llama.cpp.
const (
	tokNormal      = 1
	tokUnknown     = 2
	tokControl     = 3
	tokUserDefined = 4
	tokUnused      = 5
	tokByte        = 6
)

// tokenizer is the SentencePiece-style ("llama") tokenizer stored in a GGUF
// file: pieces with scores, merged greedily by score, with byte fallback.
type tokenizer struct {
	pieces     []string
	scores     []float32
	types      []int32
	ids        map[string]int
	byteTok    [256]int // -1 when absent
	byteOf     map[int]byte
	bos, eos   int
	eot        int // end-of-turn token, -1 when absent
	unk        int
	addBOS     bool
	addSpace   bool
	specials   []string // control and user-defined pieces, longest first
	maxPieceSz int
	bpe        *bpe // set for byte-level BPE ("gpt2") vocabularies
}

func loadTokenizer(f *gguf.File, vocab int) (*tokenizer, error) {
	model, _ := f.String("tokenizer.ggml.model")
	if model != "llama" && model != "gpt2" {
		return nil, fmt.Errorf("unsupported tokenizer %q (supported: llama, the SentencePiece-style tokenizer, and gpt2, byte-level BPE)", model)
	}
	v, _ := f.Get("tokenizer.ggml.tokens")
	pieces, ok := v.([]string)
	if !ok || len(pieces) == 0 {
		return nil, fmt.Errorf("missing tokenizer.ggml.tokens")
	}
	if len(pieces) != vocab {
		return nil, fmt.Errorf("tokenizer has %d tokens but the model's vocabulary is %d", len(pieces), vocab)
	}
	t := &tokenizer{pieces: pieces, ids: make(map[string]int, len(pieces)), eot: -1, byteOf: map[int]byte{}}
	if v, _ := f.Get("tokenizer.ggml.scores"); v != nil {
		s, ok := v.([]float32)
		if !ok || len(s) != len(pieces) {
			return nil, fmt.Errorf("tokenizer.ggml.scores does not match the tokens")
		}
		t.scores = s
	} else {
		t.scores = make([]float32, len(pieces))
	}
	if v, _ := f.Get("tokenizer.ggml.token_type"); v != nil {
		s, ok := v.([]int32)
		if !ok || len(s) != len(pieces) {
			return nil, fmt.Errorf("tokenizer.ggml.token_type does not match the tokens")
		}
		t.types = s
	} else {
		t.types = make([]int32, len(pieces))
		for i := range t.types {
			t.types[i] = tokNormal
		}
	}
	for i := range t.byteTok {
		t.byteTok[i] = -1
	}
	for i, p := range pieces {
		if _, dup := t.ids[p]; !dup {
			t.ids[p] = i
		}
		t.maxPieceSz = max(t.maxPieceSz, len(p))
		var b byte
		if len(p) == 6 && strings.HasPrefix(p, "<0x") && p[5] == '>' {
			if _, err := fmt.Sscanf(p, "<0x%02X>", &b); err == nil {
				t.byteTok[b] = i
				t.byteOf[i] = b
				t.types[i] = tokByte
			}
		}
		if (t.types[i] == tokControl || t.types[i] == tokUserDefined) && p != "" {
			t.specials = append(t.specials, p)
		}
	}
	sort.Slice(t.specials, func(i, j int) bool { return len(t.specials[i]) > len(t.specials[j]) })
	id := func(key string, def int) (int, error) {
		v, ok := f.Uint(key)
		if !ok {
			return def, nil
		}
		if v >= uint64(len(pieces)) {
			return 0, fmt.Errorf("%s = %d is not a token", key, v)
		}
		return int(v), nil
	}
	var err error
	if t.bos, err = id("tokenizer.ggml.bos_token_id", 1); err != nil {
		return nil, err
	}
	if t.eos, err = id("tokenizer.ggml.eos_token_id", 2); err != nil {
		return nil, err
	}
	if t.unk, err = id("tokenizer.ggml.unknown_token_id", 0); err != nil {
		return nil, err
	}
	if t.eot, err = id("tokenizer.ggml.eot_token_id", -1); err != nil {
		return nil, err
	}
	if t.bos >= len(pieces) || t.eos >= len(pieces) || t.unk >= len(pieces) {
		return nil, fmt.Errorf("special token ids outside the vocabulary of %d", len(pieces))
	}
	t.addBOS = model == "llama"
	if b, ok := f.Bool("tokenizer.ggml.add_bos_token"); ok {
		t.addBOS = b
	}
	t.addSpace = true
	if b, ok := f.Bool("tokenizer.ggml.add_space_prefix"); ok {
		t.addSpace = b
	}
	if model == "gpt2" {
		if err := loadBPE(f, t); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// isEnd reports whether generating tok ends the reply: end of sequence,
// end of turn, or any other control token (chat templates end turns with one).
func (t *tokenizer) isEnd(tok int) bool {
	return tok == t.eos || tok == t.eot || t.types[tok] == tokControl
}

// segment is a piece of prompt text; special segments may contain control
// tokens written out (<|im_start|>), plain ones never do.
type segment struct {
	text    string
	special bool
}

// encode tokenizes the segments, prefixing BOS when the model asks for it.
// User text goes in plain segments, so a user cannot forge control tokens.
func (t *tokenizer) encode(segs []segment, bos bool) []int {
	var out []int
	if bos && t.addBOS {
		out = append(out, t.bos)
	}
	first := true
	for _, s := range segs {
		if !s.special {
			out = t.encodeText(out, s.text, first)
			first = first && s.text == ""
			continue
		}
		rest := s.text
		for rest != "" {
			i, sp := t.findSpecial(rest)
			if i < 0 {
				out = t.encodeText(out, rest, first)
				first = false
				break
			}
			if i > 0 {
				out = t.encodeText(out, rest[:i], first)
				first = false
			}
			out = append(out, t.ids[sp])
			first = false
			rest = rest[i+len(sp):]
		}
	}
	return out
}

// findSpecial finds the first occurrence of a special piece in s.
func (t *tokenizer) findSpecial(s string) (int, string) {
	best, bestSp := -1, ""
	for _, sp := range t.specials {
		if i := strings.Index(s, sp); i >= 0 && (best < 0 || i < best) {
			best, bestSp = i, sp
		}
	}
	return best, bestSp
}

type symbol struct {
	text       string
	prev, next int
}

type bigram struct {
	left, right int
	score       float32
	size        int
}

type bigramQueue []bigram

func (q bigramQueue) Len() int { return len(q) }
func (q bigramQueue) Less(i, j int) bool {
	if q[i].score != q[j].score {
		return q[i].score > q[j].score
	}
	return q[i].left < q[j].left
}
func (q bigramQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *bigramQueue) Push(x any)   { *q = append(*q, x.(bigram)) }
func (q *bigramQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// encodeText appends the tokens of plain text: spaces become "▁" (with
// one added in front of the first segment when the model asks for it),
// characters start as symbols, the adjacent pair whose concatenation is a
// piece with the highest score is merged until none is, and symbols that
// are not pieces fall back to byte tokens.
func (t *tokenizer) encodeText(out []int, text string, first bool) []int {
	if text == "" {
		return out
	}
	if t.bpe != nil {
		return t.bpe.encode(t, out, text)
	}
	if first && t.addSpace {
		text = " " + text
	}
	text = strings.ReplaceAll(text, " ", "▁")
	syms := make([]symbol, 0, len(text))
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		syms = append(syms, symbol{text: text[i : i+n], prev: len(syms) - 1, next: len(syms) + 1})
		i += n
	}
	syms[len(syms)-1].next = -1
	q := &bigramQueue{}
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		s := syms[l].text + syms[r].text
		if len(s) > t.maxPieceSz {
			return
		}
		if id, ok := t.ids[s]; ok && t.types[id] != tokControl {
			heap.Push(q, bigram{left: l, right: r, score: t.scores[id], size: len(s)})
		}
	}
	for i := 1; i < len(syms); i++ {
		try(i-1, i)
	}
	for q.Len() > 0 {
		b := heap.Pop(q).(bigram)
		l, r := &syms[b.left], &syms[b.right]
		if l.text == "" || r.text == "" || len(l.text)+len(r.text) != b.size {
			continue // stale: one side was merged since
		}
		l.text += r.text
		r.text = ""
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		try(l.prev, b.left)
		try(b.left, l.next)
	}
	for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
		s := syms[i].text
		if id, ok := t.ids[s]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(s); j++ {
			if id := t.byteTok[s[j]]; id >= 0 {
				out = append(out, id)
			} else {
				out = append(out, t.unk)
			}
		}
	}
	return out
}

// piece returns the bytes token id stands for in generated text: a byte
// token's byte, a normal piece with "▁" as space, nothing for control tokens.
func (t *tokenizer) piece(id int) string {
	switch t.types[id] {
	case tokByte:
		return string([]byte{t.byteOf[id]})
	case tokControl, tokUnknown, tokUnused:
		return ""
	}
	if t.bpe != nil {
		return t.bpe.decode(t.pieces[id])
	}
	return strings.ReplaceAll(t.pieces[id], "▁", " ")
}
