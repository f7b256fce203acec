package ai

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestEventReader(t *testing.T) {
	in := ": comment\r\n" +
		"event: x\nid: 1\ndata: one\n\n" +
		"data:two\ndata:  lines\r\n\r\n" +
		"retry: 5\n\n" + // no data: not an event
		"data: [DONE]\n\n" +
		"data: last, cut short"
	r := NewEventReader(strings.NewReader(in))
	var got []string
	for {
		d, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d))
	}
	want := []string{"one", "two\n lines", "[DONE]", "last, cut short"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := NewEventReader(strings.NewReader("data: " + strings.Repeat("x", MaxEventSize+1) + "\n\n")).Next(); err != ErrEventTooLarge {
		t.Errorf("large event: %v", err)
	}
}

// TestEventScannerSplitsAnywhere feeds the scanner a stream cut at every byte: it sees the
// same data fields as when the stream comes whole.
func TestEventScannerSplitsAnywhere(t *testing.T) {
	in := []byte("data: {\"a\":1}\r\n\r\n: ping\n\ndata: b\n\ndata: [DONE]\n\n")
	collect := func(chunks ...[]byte) string {
		var out []string
		s := &eventScanner{fn: func(d []byte) { out = append(out, string(d)) }}
		for _, c := range chunks {
			s.Write(c)
		}
		return strings.Join(out, "|")
	}
	whole := collect(in)
	if whole != `{"a":1}|b|[DONE]` {
		t.Fatalf("whole: %q", whole)
	}
	for i := range in {
		if got := collect(in[:i], in[i:]); got != whole {
			t.Errorf("cut at %d: %q", i, got)
		}
	}
}

// FuzzEvents: neither the reader nor the scanner panics or grows past its bound, and both see
// the same data lines of a stream whose events hold one data line each.
func FuzzEvents(f *testing.F) {
	f.Add([]byte("data: x\n\ndata: y\r\n\r\n"), 3)
	f.Add([]byte(": c\nevent: e\ndata:\n\n"), 1)
	f.Add([]byte("data: a\ndata: b\n\n"), 7)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		r := NewEventReader(bytes.NewReader(in))
		for range 10000 {
			d, err := r.Next()
			if err != nil {
				break
			}
			if len(d) > MaxEventSize {
				t.Fatalf("event of %d bytes", len(d))
			}
		}
		s := &eventScanner{fn: func([]byte) {}}
		if cut < 0 {
			cut = -cut
		}
		if len(in) > 0 {
			cut %= len(in)
		} else {
			cut = 0
		}
		s.Write(in[:cut])
		s.Write(in[cut:])
		if len(s.line) > MaxEventSize {
			t.Fatalf("scanner holds %d bytes", len(s.line))
		}
	})
}

func TestCacheKeyNormalises(t *testing.T) {
	a, ok1 := cacheKey("/chat/completions", "k", []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`))
	b, ok2 := cacheKey("/chat/completions", "k", []byte("{ \"temperature\": 0.5,\n \"messages\": [ {\"content\": \"hi\", \"role\": \"user\"} ], \"model\": \"m\" }"))
	if !ok1 || !ok2 || a != b {
		t.Fatal("layout and key order changed the key")
	}
	for name, other := range map[string][32]byte{
		"client": must(cacheKey("/chat/completions", "k2", []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`))),
		"path":   must(cacheKey("/completions", "k", []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`))),
		"value":  must(cacheKey("/chat/completions", "k", []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.6}`))),
		"order":  must(cacheKey("/chat/completions", "k", []byte(`{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"user","content":"x"}],"temperature":0.5}`))),
	} {
		if other == a {
			t.Errorf("a different %s gives the same key", name)
		}
	}
	if _, ok := cacheKey("/x", "k", []byte(`{"a":1} {"b":2}`)); ok {
		t.Error("two JSON values accepted")
	}
}

func must(k [32]byte, ok bool) [32]byte {
	if !ok {
		panic("not JSON")
	}
	return k
}

func TestResponseCacheBounds(t *testing.T) {
	c := newResponseCache(1e9, 2, 100, 60)
	now := time_(0)
	put := func(k byte, n int) { c.put(&cached{key: [32]byte{k}, body: make([]byte, n)}, now) }
	put(1, 10)
	put(2, 10)
	put(3, 10) // evicts 1 (max_entries 2)
	if c.get([32]byte{1}, now) != nil || c.get([32]byte{2}, now) == nil {
		t.Error("LRU by count")
	}
	put(4, 61) // larger than max_entry: not stored
	if c.get([32]byte{4}, now) != nil {
		t.Error("an oversized entry was stored")
	}
	put(5, 60)
	put(6, 50) // 60+50 > 100: the least recently used goes
	if n, b := c.len(); n != 1 || b != 50 {
		t.Errorf("%d entries, %d bytes", n, b)
	}
	if c.get([32]byte{6}, now.Add(2e9)) != nil {
		t.Error("an expired entry was served")
	}
}

func time_(s int64) time.Time { return time.Unix(s, 0) }
