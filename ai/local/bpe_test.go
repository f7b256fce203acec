package local

import (
	"slices"
	"strings"
	"testing"

	"github.com/verge-edge/verge/ai/local/gguf"
)

func TestBPEWords(t *testing.T) {
	text := "Hello world's  123 !!\n\nok (hi) 12345"
	for _, tc := range []struct {
		llama3 bool
		want   []string
	}{
		{false, []string{"Hello", " world", "'s", " ", " 123", " !!", "\n", "\n", "ok", " (", "hi", ")", " 12345"}},
		{true, []string{"Hello", " world", "'s", " ", " ", "123", " !!\n\n", "ok", " (", "hi", ")", " ", "123", "45"}},
	} {
		got := (&bpe{llama3: tc.llama3, maxDigits: 3}).words(text)
		if !slices.Equal(got, tc.want) {
			t.Errorf("llama3=%v: got %q, want %q", tc.llama3, got, tc.want)
		}
		if strings.Join(got, "") != text {
			t.Errorf("llama3=%v: words do not add up to the text", tc.llama3)
		}
	}
	if got := (&bpe{llama3: true, maxDigits: 1}).words("a 123"); !slices.Equal(got, []string{"a", " ", "1", "2", "3"}) {
		t.Errorf("Qwen2 digits: got %q", got)
	}
	// Llama 3 lets one punctuation character lead a word and ignores case in contractions.
	if got := (&bpe{llama3: true, maxDigits: 3}).words("(hello I'M"); !slices.Equal(got, []string{"(hello", " I", "'M"}) {
		t.Errorf("got %q", got)
	}
}

func TestBPETokenizer(t *testing.T) {
	// "Ġ" is the byte-level character for a space.
	data := randomModel(t, testShape{dim: 32, layers: 1, heads: 2, kvHeads: 1, ffn: 32, ctx: 64, wtype: gguf.F32,
		bpeMerges: []string{"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"},
		specials:  []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
		template:  "<|start_header_id|>...",
	}, 1)
	m, err := Load(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tk := m.tok
	got := tk.piecesOf(tk.encode([]segment{{text: "hello wow é"}}, true))
	want := []string{"<|begin_of_text|>", "hello", "Ġwo", "w", "Ġ", "Ã", "©"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	var sb strings.Builder
	for _, id := range tk.encode([]segment{{text: "hello wow é\n"}}, true) {
		sb.WriteString(tk.piece(id))
	}
	if sb.String() != "hello wow é\n" {
		t.Fatalf("decoded %q", sb.String())
	}
	if m.tmpl != tmplLlama3 {
		t.Fatalf("template %v", m.tmpl)
	}
	// A long run of letters is merged in bounded pieces and still decodes.
	long := strings.Repeat("hello", 2000)
	sb.Reset()
	for _, id := range tk.encode([]segment{{text: long}}, false) {
		sb.WriteString(tk.piece(id))
	}
	if sb.String() != long {
		t.Fatal("long word did not round-trip")
	}
}
