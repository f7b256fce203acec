package local

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// bpe is the byte-level BPE tokenizer of GPT-2 and its descendants
// (tokenizer.ggml.model = "gpt2": Llama 3, SmolLM, many others). Text is
// split into words by a pre-tokenizer, each word's bytes are written as
// printable characters (GPT-2's byte-to-unicode table), and adjacent
// symbols are merged by the rank of their pair in tokenizer.ggml.merges.
type bpe struct {
	ranks     map[[2]string]int
	llama3    bool // Llama 3's pre-tokenizer rules rather than GPT-2's
	maxDigits int  // digits per word with Llama 3's rules: 3 (Llama 3) or 1 (Qwen2)
}

// byteRune is GPT-2's table from bytes to printable characters, and runeByte its inverse.
var byteRune, runeByte = func() ([256]rune, map[rune]byte) {
	var br [256]rune
	rb := map[rune]byte{}
	n := 0
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff) {
			br[b] = rune(b)
		} else {
			br[b] = rune(256 + n)
			n++
		}
		rb[br[b]] = byte(b)
	}
	return br, rb
}()

func loadBPE(f *gguf.File, t *tokenizer) error {
	v, _ := f.Get("tokenizer.ggml.merges")
	merges, ok := v.([]string)
	if !ok {
		return fmt.Errorf("missing tokenizer.ggml.merges")
	}
	b := &bpe{ranks: make(map[[2]string]int, len(merges))}
	for i, m := range merges {
		l, r, ok := strings.Cut(m, " ")
		if !ok {
			return fmt.Errorf("tokenizer.ggml.merges[%d] %q is not two pieces", i, m)
		}
		if _, dup := b.ranks[[2]string{l, r}]; !dup {
			b.ranks[[2]string{l, r}] = i
		}
	}
	switch pre, _ := f.String("tokenizer.ggml.pre"); pre {
	case "llama-bpe", "llama3", "smaug-bpe":
		b.llama3, b.maxDigits = true, 3
	case "qwen2":
		b.llama3, b.maxDigits = true, 1
	}
	t.bpe = b
	t.addSpace = false
	return nil
}

// words splits text the way the GPT-2 (or Llama 3) pre-tokenizer regular
// expression does: contractions, runs of letters with an optional leading
// space (any one non-letter, non-digit, non-newline character for Llama
// 3), runs of digits (at most three for Llama 3, one for Qwen2), runs of other symbols
// with an optional leading space, and whitespace, of which the last
// character before a word goes with the word.
func (b *bpe) words(text string) []string {
	var out []string
	isL := unicode.IsLetter
	isN := unicode.IsNumber
	isS := unicode.IsSpace
	other := func(r rune) bool { return !isS(r) && !isL(r) && !isN(r) }
	at := func(i int) (rune, int) {
		if i >= len(text) {
			return -1, 0
		}
		return utf8.DecodeRuneInString(text[i:])
	}
	run := func(i int, pred func(rune) bool, maxN int) int {
		n := 0
		for i < len(text) && (maxN == 0 || n < maxN) {
			r, sz := at(i)
			if !pred(r) {
				break
			}
			i += sz
			n++
		}
		return i
	}
	for i := 0; i < len(text); {
		r, sz := at(i)
		// Contractions.
		if r == '\'' {
			rest := text[i+1:]
			if b.llama3 {
				rest = strings.ToLower(rest[:min(2, len(rest))])
			}
			matched := false
			for _, c := range []string{"re", "ve", "ll", "s", "t", "m", "d"} {
				if strings.HasPrefix(rest, c) {
					out = append(out, text[i:i+1+len(c)])
					i += 1 + len(c)
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		r2, _ := at(i + sz)
		// Letters, with an optional prefix character.
		if isL(r) {
			j := run(i, isL, 0)
			out = append(out, text[i:j])
			i = j
			continue
		}
		prefixOK := r == ' '
		if b.llama3 {
			prefixOK = r != '\r' && r != '\n' && !isL(r) && !isN(r)
		}
		if prefixOK && isL(r2) {
			j := run(i+sz, isL, 0)
			out = append(out, text[i:j])
			i = j
			continue
		}
		// Digits.
		if isN(r) {
			maxN := 0
			if b.llama3 {
				maxN = max(1, b.maxDigits)
			}
			j := run(i, isN, maxN)
			out = append(out, text[i:j])
			i = j
			continue
		}
		if !b.llama3 && r == ' ' && isN(r2) {
			j := run(i+sz, isN, 0)
			out = append(out, text[i:j])
			i = j
			continue
		}
		// Other symbols, with an optional leading space.
		if other(r) || (r == ' ' && r2 >= 0 && other(r2)) {
			start := i
			if r == ' ' {
				i += sz
			}
			j := run(i, other, 0)
			if b.llama3 {
				j = run(j, func(r rune) bool { return r == '\r' || r == '\n' }, 0)
			}
			out = append(out, text[start:j])
			i = j
			continue
		}
		// Whitespace.
		j := run(i, isS, 0)
		if b.llama3 {
			// \s*[\r\n]+ : whitespace ending in newlines.
			k := i
			lastNL := -1
			for k < j {
				r, sz := at(k)
				k += sz
				if r == '\r' || r == '\n' {
					lastNL = k
				}
			}
			if lastNL > 0 {
				out = append(out, text[i:lastNL])
				i = lastNL
				continue
			}
		}
		if j < len(text) && j-i > sz {
			// Leave the last whitespace character for the next word.
			_, lastSz := utf8.DecodeLastRuneInString(text[i:j])
			j -= lastSz
		}
		out = append(out, text[i:j])
		i = j
	}
	return out
}

// maxWord bounds the bytes merged at once: a longer word (a run of
// letters with no space) is merged in pieces of this size, keeping the
// quadratic merge loop short.
const maxWord = 128

// encode appends the tokens of plain text.
func (b *bpe) encode(t *tokenizer, out []int, text string) []int {
	for _, w := range b.words(text) {
		for len(w) > maxWord {
			out = b.encodeWord(t, out, w[:maxWord])
			w = w[maxWord:]
		}
		out = b.encodeWord(t, out, w)
	}
	return out
}

func (b *bpe) encodeWord(t *tokenizer, out []int, w string) []int {
	{
		syms := make([]string, 0, len(w))
		for i := 0; i < len(w); i++ {
			syms = append(syms, string(byteRune[w[i]]))
		}
		for len(syms) > 1 {
			best, bestRank := -1, int(^uint(0)>>1)
			for i := 0; i+1 < len(syms); i++ {
				if r, ok := b.ranks[[2]string{syms[i], syms[i+1]}]; ok && r < bestRank {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			syms[best] += syms[best+1]
			syms = append(syms[:best+1], syms[best+2:]...)
		}
		for _, s := range syms {
			if id, ok := t.ids[s]; ok {
				out = append(out, id)
				continue
			}
			for _, r := range s {
				if id, ok := t.ids[string(r)]; ok {
					out = append(out, id)
				} else {
					out = append(out, t.unk)
				}
			}
		}
	}
	return out
}

// decode turns a piece back into bytes through the inverse table.
func (b *bpe) decode(piece string) string {
	var sb strings.Builder
	for _, r := range piece {
		if c, ok := runeByte[r]; ok {
			sb.WriteByte(c)
		} else {
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
