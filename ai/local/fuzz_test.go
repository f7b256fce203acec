package local

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/verge-edge/verge/ai/local/gguf"
)

// FuzzTokenizer feeds arbitrary text to both tokenizers: neither may
// panic, the BPE pre-tokenizer's words must add up to the text, and
// decoding the tokens must give the text back (after the SentencePiece
// space prefix), since both fall back to bytes.
func FuzzTokenizer(f *testing.F) {
	for _, s := range []string{"", "hello world", "  a\n\n b\t'S 12345 ", "héllo wörld ✓", "\xff\xfe", "<|im_end|>", strings.Repeat("x", 300)} {
		f.Add(s)
	}
	spm := openTiny(f, Options{}).tok
	m, err := Load(randomModel(f, testShape{dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 32, ctx: 64, wtype: gguf.F32,
		bpeMerges: []string{"h e", "l l", "Ġ w", "Ġ t", "Ġt he"}}, 1), Options{})
	if err != nil {
		f.Fatal(err)
	}
	bpeTok := m.tok
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 4096 {
			return
		}
		for _, llama3 := range []bool{false, true} {
			if got := strings.Join((&bpe{llama3: llama3}).words(text), ""); got != text {
				t.Fatalf("llama3=%v: words join to %q, want %q", llama3, got, text)
			}
		}
		decode := func(tk *tokenizer, ids []int) string {
			var sb strings.Builder
			for _, id := range ids {
				sb.WriteString(tk.piece(id))
			}
			return sb.String()
		}
		if got := decode(bpeTok, bpeTok.encode([]segment{{text: text}}, false)); got != text {
			t.Fatalf("BPE round trip: %q, want %q", got, text)
		}
		want := text
		if text != "" {
			want = " " + text
		}
		// "▁" in the input reads back as a space, as in SentencePiece itself.
		if got := decode(spm, spm.encode([]segment{{text: text}}, false)); utf8.ValidString(text) && !strings.Contains(text, "▁") && got != want {
			t.Fatalf("SentencePiece round trip: %q, want %q", got, want)
		}
	})
}
