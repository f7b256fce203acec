package htmlrewrite

import (
	"bytes"
	"strings"
	"testing"
)

func rewriteAll(t testing.TB, r *Rules, doc string) string {
	t.Helper()
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	s := r.NewStream()
	out := s.Rewrite(nil, []byte(doc))
	return string(s.End(out))
}

func TestRewrite(t *testing.T) {
	type tc struct {
		name  string
		rules func(r *Rules)
		in    string
		want  string
	}
	tests := []tc{
		{"passthrough", nil, `<!DOCTYPE html><html><head><title>a < b</title></head><body><p class=x>hi<br/>there<!-- c --></body></html>`, `<!DOCTYPE html><html><head><title>a < b</title></head><body><p class=x>hi<br/>there<!-- c --></body></html>`},
		{"append head", func(r *Rules) {
			r.On("head", func(e *Element) { e.Append(`<script src="/x.js"></script>`, HTML) })
		}, `<html><head><title>t</title></head><body></body></html>`, `<html><head><title>t</title><script src="/x.js"></script></head><body></body></html>`},
		{"set attribute", func(r *Rules) {
			r.On("img", func(e *Element) { e.SetAttr("loading", "lazy") })
		}, `<img src="a.png"><IMG SRC=b.png alt='x"y'/>`, `<img src="a.png" loading="lazy"><IMG SRC=b.png alt='x"y' loading="lazy"/>`},
		{"replace attribute value escaped", func(r *Rules) {
			r.On("a[href]", func(e *Element) {
				v, _ := e.Attr("href")
				e.SetAttr("href", v+`?a=1&b="2"`)
			})
		}, `<a href="/p?x=&amp;">l</a><a name=n>m</a>`, `<a href="/p?x=&amp;?a=1&amp;b=&#34;2&#34;">l</a><a name=n>m</a>`},
		{"remove attribute", func(r *Rules) {
			r.On("[onclick]", func(e *Element) { e.RemoveAttr("onclick") })
		}, `<div id=a onclick="x()" class=b>t</div>`, `<div id=a class=b>t</div>`},
		{"remove element", func(r *Rules) {
			r.On("div.ad", func(e *Element) { e.Remove() })
		}, `<p>a</p><div class="big ad">x<div>y</div>z</div><p>b</p>`, `<p>a</p><p>b</p>`},
		{"inner content text escaped", func(r *Rules) {
			r.On("#t", func(e *Element) { e.SetInnerContent("<b>&</b>", Text) })
		}, `<span id=t>old <i>x</i></span>!`, `<span id=t>&lt;b&gt;&amp;&lt;/b&gt;</span>!`},
		{"before after prepend append", func(r *Rules) {
			r.On("p", func(e *Element) {
				e.Before("[b]", HTML)
				e.Prepend("[p]", HTML)
				e.Append("[a]", HTML)
				e.After("[f]", HTML)
			})
		}, `<p>x</p>`, `[b]<p>[p]x[a]</p>[f]`},
		{"void before after", func(r *Rules) {
			r.On("br", func(e *Element) { e.Before("1", HTML); e.After("2", HTML); e.Append("no", HTML) })
		}, `a<br>b`, `a1<br>2b`},
		{"child combinator", func(r *Rules) {
			r.On("ul > li", func(e *Element) { e.SetAttr("x", "1") })
		}, `<ul><li>a<ol><li>b</ol></ul>`, `<ul><li x="1">a<ol><li>b</ol></ul>`},
		{"descendant combinator", func(r *Rules) {
			r.On("nav a", func(e *Element) { e.SetAttr("x", "1") })
		}, `<a>o</a><nav><div><a>i</a></div></nav><a>o</a>`, `<a>o</a><nav><div><a x="1">i</a></div></nav><a>o</a>`},
		{"implied end tags", func(r *Rules) {
			r.On("li", func(e *Element) { e.Append("!", HTML) })
		}, `<ul><li>a<li>b</ul>`, `<ul><li>a!<li>b!</ul>`},
		{"script content is not markup", func(r *Rules) {
			r.On("b", func(e *Element) { e.Remove() })
		}, `<script>if (a<b) x="<b>";</scri</script><b>x</b>`, `<script>if (a<b) x="<b>";</scri</script>`},
		{"comment content is not markup", func(r *Rules) {
			r.On("b", func(e *Element) { e.Remove() })
		}, `<!-- <b>x</b> --><!--><b>y</b>`, `<!-- <b>x</b> --><!-->`},
		{"attribute value with >", func(r *Rules) {
			r.On("a", func(e *Element) { e.SetAttr("y", "2") })
		}, `<a title="1>2" data-x='>'>t</a>`, `<a title="1>2" data-x='>' y="2">t</a>`},
		{"attribute selectors", func(r *Rules) {
			r.On(`a[href^="https:"]`, func(e *Element) { e.SetAttr("rel", "noopener") })
			r.On(`a[href$=".pdf"]`, func(e *Element) { e.SetAttr("download", "") })
			r.On(`[lang|=en]`, func(e *Element) { e.SetAttr("en", "1") })
			r.On(`[class~=x]`, func(e *Element) { e.SetAttr("cx", "1") })
			r.On(`[data-k*=mid]`, func(e *Element) { e.SetAttr("mid", "1") })
		}, `<a href="https://e.test/">1</a><a href="/f.pdf">2</a><p lang=en-GB class="y x">3</p><i data-k=amidb>4</i>`,
			`<a href="https://e.test/" rel="noopener">1</a><a href="/f.pdf" download="">2</a><p lang=en-GB class="y x" en="1" cx="1">3</p><i data-k=amidb mid="1">4</i>`},
		{"selector list", func(r *Rules) {
			r.On("h1, h2", func(e *Element) { e.Prepend("#", HTML) })
		}, `<h1>a</h1><h2>b</h2><h3>c</h3>`, `<h1>#a</h1><h2>#b</h2><h3>c</h3>`},
		{"replace", func(r *Rules) {
			r.On("x-old", func(e *Element) { e.Replace("<new>", HTML) })
		}, `a<x-old>b<x-old>c</x-old></x-old>d`, `a<new>d`},
		{"unclosed at end", func(r *Rules) {
			r.On("body", func(e *Element) { e.Append("<end>", HTML) })
		}, `<body><p>x`, `<body><p>x<end>`},
		{"bogus and stray", nil, `a < b <? pi ?> </> <!doctype x> <3 </ x>`, `a < b <? pi ?> </> <!doctype x> <3 </ x>`},
		{"end tag case", func(r *Rules) {
			r.On("div", func(e *Element) { e.Append("!", HTML) })
		}, `<DIV>x</Div>`, `<DIV>x!</Div>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRules()
			if tt.rules != nil {
				tt.rules(r)
			}
			if got := rewriteAll(t, r, tt.in); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

const splitDoc = `<!DOCTYPE html><html><head><title>T &amp; <x></title><style>a>b{}</style></head>` +
	`<body class="home page"><!-- a <b> --><div id=main><p>one<p>two <a href="/a?x=1&amp;y=2" data-x='q>r'>link</a>` +
	`<img src=i.png alt="an &quot;image&quot;"/><script>if(a</b){"</scr"+"ipt>"}</script><ul><li>1<li>2</ul>` +
	`<div class=ad>gone <b>bold</b></div><span id=s>old</span></div><?php x ?><br></body></html>`

func splitRules() *Rules {
	return NewRules().
		On("head", func(e *Element) { e.Append(`<script src="/inject.js"></script>`, HTML) }).
		On("img", func(e *Element) { e.SetAttr("loading", "lazy") }).
		On("a[href]", func(e *Element) { v, _ := e.Attr("href"); e.SetAttr("href", "/r"+v) }).
		On("div.ad", func(e *Element) { e.Remove() }).
		On("#s", func(e *Element) { e.SetInnerContent("new & <improved>", Text) }).
		On("ul > li", func(e *Element) { e.Prepend("*", HTML) }).
		On("body p", func(e *Element) { e.Before("<!--p-->", HTML) })
}

// TestChunkSplits feeds the document split at every byte offset, and one byte at a time,
// and wants the output of the whole document each time.
func TestChunkSplits(t *testing.T) {
	for _, rules := range []*Rules{NewRules(), splitRules()} {
		want := rewriteAll(t, rules, splitDoc)
		if len(rules.rules) == 0 && want != splitDoc {
			t.Fatalf("passthrough changed the document:\n%s", want)
		}
		s := rules.NewStream()
		for i := 0; i <= len(splitDoc); i++ {
			out := s.Rewrite(nil, []byte(splitDoc[:i]))
			out = s.Rewrite(out, []byte(splitDoc[i:]))
			if got := string(s.End(out)); got != want {
				t.Fatalf("split at %d (%q|%q):\ngot  %s\nwant %s", i, splitDoc[max(0, i-10):i], splitDoc[i:min(len(splitDoc), i+10)], got, want)
			}
		}
		var out []byte
		for i := 0; i < len(splitDoc); i++ {
			out = s.Rewrite(out, []byte{splitDoc[i]})
		}
		if got := string(s.End(out)); got != want {
			t.Fatalf("byte by byte:\ngot  %s\nwant %s", got, want)
		}
	}
	got := rewriteAll(t, splitRules(), splitDoc)
	for _, w := range []string{`<script src="/inject.js"></script></head>`, `loading="lazy"`, `href="/r/a?x=1&amp;y=2"`, `<span id=s>new &amp; &lt;improved&gt;</span>`, `<li>*1<li>*2`} {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %s:\n%s", w, got)
		}
	}
	if strings.Contains(got, "gone") || !strings.Contains(got, `"</scr"+"ipt>"`) {
		t.Errorf("wrong output:\n%s", got)
	}
}

func TestSelectorErrors(t *testing.T) {
	for _, sel := range []string{"", "a:hover", "a >", "> a", "[", "[x=", "a[x=\"y]", "a ~ b", "a + b"} {
		if err := NewRules().On(sel, func(*Element) {}).Err(); err == nil {
			t.Errorf("selector %q: no error", sel)
		}
	}
	r := NewRules()
	for i := 0; i < MaxCompounds; i++ {
		r.On("a", func(*Element) {})
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	if r.On("b", func(*Element) {}).Err() == nil {
		t.Error("no error past MaxCompounds")
	}
}

func TestLongTagPassesAsText(t *testing.T) {
	r := NewRules().On("a", func(e *Element) { e.SetAttr("x", "1") })
	doc := "<a title=\"" + strings.Repeat("y", MaxTagSize) + "\">t</a><a>u</a>"
	s := r.NewStream()
	var out []byte
	for i := 0; i < len(doc); i += 1000 {
		out = s.Rewrite(out, []byte(doc[i:min(len(doc), i+1000)]))
	}
	out = s.End(out)
	if !bytes.HasPrefix(out, []byte(doc[:MaxTagSize])) || !bytes.HasSuffix(out, []byte(`<a x="1">u</a>`)) {
		t.Errorf("got %.80q ... %q", out, out[len(out)-40:])
	}
}

func TestDeepNestingBounded(t *testing.T) {
	r := NewRules().On("div > b", func(e *Element) { e.Remove() })
	doc := strings.Repeat("<div>", 10000) + "<b>x</b>" + strings.Repeat("</div>", 10000) + "<div><b>y</b></div>"
	got := rewriteAll(t, r, doc)
	want := strings.Repeat("<div>", 10000) + "<b>x</b>" + strings.Repeat("</div>", 10000) + "<div></div>"
	if got != want {
		t.Errorf("deep document rewritten wrongly (len %d, want %d)", len(got), len(want))
	}
	s := r.NewStream()
	s.Rewrite(nil, []byte(strings.Repeat("<div>", 10000)))
	if len(s.stack) > MaxDepth {
		t.Errorf("stack %d > %d", len(s.stack), MaxDepth)
	}
}

func FuzzRewrite(f *testing.F) {
	f.Add(splitDoc, 7)
	f.Add("<a href='x'>y</a><!--", 3)
	f.Add("<script>a</script", 5)
	f.Fuzz(func(t *testing.T, doc string, split int) {
		for _, r := range []*Rules{NewRules(), splitRules()} {
			want := rewriteAll(t, r, doc)
			if len(r.rules) == 0 && want != doc {
				t.Fatalf("passthrough changed %q into %q", doc, want)
			}
			if split < 0 {
				split = -split
			}
			i := split % (len(doc) + 1)
			s := r.NewStream()
			out := s.Rewrite(nil, []byte(doc[:i]))
			out = s.End(s.Rewrite(out, []byte(doc[i:])))
			if string(out) != want {
				t.Fatalf("split %d of %q: got %q, want %q", i, doc, out, want)
			}
			// Byte by byte, every tag goes through the state machine (scanTag) rather than
			// the one-pass scan of whole tags (fastTag): both must agree.
			out = nil
			for j := 0; j < len(doc); j++ {
				out = s.Rewrite(out, []byte{doc[j]})
			}
			if out = s.End(out); string(out) != want {
				t.Fatalf("byte by byte %q: got %q, want %q", doc, out, want)
			}
		}
	})
}

// TestSetAttrExisting checks that SetAttr replaces an attribute the tag has, whatever its
// case and wherever its name appears (serialize looks for the name before parsing).
func TestSetAttrExisting(t *testing.T) {
	r := NewRules().On("img", func(e *Element) { e.SetAttr("loading", "lazy") })
	for doc, want := range map[string]string{
		`<img src=a>`:                       `<img src=a loading="lazy">`,
		`<img LOADING=eager src=a>`:         `<img LOADING="lazy" src=a>`,
		`<img alt="loading" src=a>`:         `<img alt="loading" src=a loading="lazy">`,
		`<img data-x=1 Loading='x'/>`:       `<img data-x=1 Loading="lazy" />`,
		`<img src="l" loadinG>`:             `<img src="l" loadinG="lazy">`,
		`<img xloading=1>`:                  `<img xloading=1 loading="lazy">`,
		`<img src=/a.png/>`:                 `<img src=/a.png/ loading="lazy">`,
		"<img\nsrc=a\n/>":                   "<img\nsrc=a\n loading=\"lazy\"/>",
		`<img src=a loading=eager loading>`: `<img src=a loading="lazy" loading>`,
	} {
		if got := rewriteAll(t, r, doc); got != want {
			t.Errorf("%s: got %s, want %s", doc, got, want)
		}
	}
}

// TestTagFilter checks the start tags passed on by their first letter and length alone
// (Rules.mayMatter): names of the selectors' length and letter in any case still match,
// and the raw text elements still change the mode.
func TestTagFilter(t *testing.T) {
	r := NewRules().
		On("h2", func(e *Element) { e.SetAttr("x", "1") }).
		On("b", func(e *Element) { e.SetAttr("y", "2") }).
		On("averyveryverylongname", func(e *Element) { e.SetAttr("z", "3") })
	doc := `<H2>a</H2><h3>b</h3><h2x>c</h2x><Script><b></script><b><TITLE><b></title>` +
		`<averyveryverylongnamf><AVERYVERYVERYLONGNAME><textarea><b></textarea><b/>`
	want := `<H2 x="1">a</H2><h3>b</h3><h2x>c</h2x><Script><b></script><b y="2"><TITLE><b></title>` +
		`<averyveryverylongnamf><AVERYVERYVERYLONGNAME z="3"><textarea><b></textarea><b y="2"/>`
	if got := rewriteAll(t, r, doc); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestIndexByte checks the word-at-a-time search against bytes.IndexByte for every length
// up to past its 32-byte prefix, every position of the byte, with bytes around it that
// differ from it by one bit or by a borrow (0x3b, 0x3d, 0xbc, 0x00).
func TestIndexByte(t *testing.T) {
	for n := 0; n <= 48; n++ {
		for pos := -1; pos < n; pos++ {
			for _, fill := range []byte{'a', 0x3b, 0x3d, 0xbc, 0x00, 0x7c} {
				b := bytes.Repeat([]byte{fill}, n)
				if pos >= 0 {
					b[pos] = '<'
					if pos+1 < n {
						b[pos+1] = '<' // a second one after the first
					}
				}
				if got, want := indexByte(b, '<'), bytes.IndexByte(b, '<'); got != want {
					t.Fatalf("len %d, '<' at %d, fill %#x: got %d, want %d", n, pos, fill, got, want)
				}
			}
		}
	}
}
