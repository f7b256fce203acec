package compression

import (
	"bytes"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/verge-edge/verge/message"
)

func getReq(method, ae string, fields ...string) *message.Request {
	r := &message.Request{Method: method}
	if ae != "" {
		r.Header.Add("Accept-Encoding", ae)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.Add(fields[i], fields[i+1])
	}
	return r
}

// A 304 from an upstream gets the Vary and ETag of the 200 it stands for: weak only when
// that 200 was compressed, as the client's If-None-Match tells, or as the type says.
func TestStartNotModifiedKeepsThe200sETag(t *testing.T) {
	p, _ := NewPolicy([]string{"gzip"}, 0, 0, nil)
	tests := []struct {
		name     string
		req      *message.Request
		resp     *message.Response
		etag     string
		wantVary bool
	}{
		{"client holds the compressed 200", getReq("GET", "gzip", "If-None-Match", `W/"x"`),
			resp(304, "", -1, "ETag", `"x"`), `W/"x"`, true},
		{"client accepting gzip holds the identity 200", getReq("GET", "gzip", "If-None-Match", `"x"`),
			resp(304, "", -1, "ETag", `"x"`), `"x"`, false},
		{"client refusing codings holds the identity 200", getReq("GET", "", "If-None-Match", `"x"`),
			resp(304, "", -1, "ETag", `"x"`), `"x"`, true},
		{"identity 200 of an image, type on the 304", getReq("GET", "gzip", "If-None-Match", `"x"`),
			resp(304, "image/png", -1, "ETag", `"x"`), `"x"`, false},
		{"image, If-Modified-Since only", getReq("GET", "gzip", "If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"),
			resp(304, "image/png", -1, "ETag", `"x"`), `"x"`, false},
		{"200 encoded upstream", getReq("GET", "gzip", "If-None-Match", `W/"x"`),
			resp(304, "", -1, "ETag", `"x"`, "Content-Encoding", "gzip"), `"x"`, false},
		{"no type, If-Modified-Since only, gzip accepted", getReq("GET", "gzip", "If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"),
			resp(304, "", -1, "ETag", `"x"`), `W/"x"`, true},
		{"no type, no coding accepted", getReq("GET", "", "If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"),
			resp(304, "", -1, "ETag", `"x"`), `"x"`, true},
		{"both forms listed", getReq("GET", "gzip", "If-None-Match", `"x", W/"x"`),
			resp(304, "", -1, "ETag", `"x"`), `W/"x"`, true},
	}
	for _, tc := range tests {
		var e Encoder
		if e.Start(p, tc.req, tc.resp) {
			t.Errorf("%s: Start encodes a 304", tc.name)
		}
		if got := tc.resp.Header.Get("ETag"); got != tc.etag {
			t.Errorf("%s: ETag %s, want %s", tc.name, got, tc.etag)
		}
		if got := tc.resp.Header.HasToken("Vary", "Accept-Encoding"); got != tc.wantVary {
			t.Errorf("%s: Vary: Accept-Encoding %v, want %v", tc.name, got, tc.wantVary)
		}
	}
}

// Validators, on a 200's head, gives it exactly what Start gives the 200.
func TestValidatorsMatchStart(t *testing.T) {
	p, _ := NewPolicy([]string{"gzip"}, 0, 0, nil)
	for _, r := range []*message.Response{
		resp(200, "text/css", 5000), resp(200, "text/css", 10), resp(200, "image/png", 5000),
		resp(200, "text/css", 5000, "Content-Encoding", "gzip"),
	} {
		r.Header.Add("ETag", `"e"`)
		a, b := *r, *r
		a.Header, b.Header = r.Header.Clone(), r.Header.Clone()
		var e Encoder
		e.Start(p, getReq("GET", "gzip"), &a)
		e.Release()
		p.Validators(getReq("GET", "gzip"), &b)
		if a.Header.Get("ETag") != b.Header.Get("ETag") || a.Header.Get("Vary") != b.Header.Get("Vary") {
			t.Errorf("%s %d: Start gives ETag %s Vary %q, Validators %s %q", r.Header.Get("Content-Type"), r.ContentLength,
				a.Header.Get("ETag"), a.Header.Get("Vary"), b.Header.Get("ETag"), b.Header.Get("Vary"))
		}
	}
}

// A HEAD gets the head of its GET, and no encoder.
func TestStartHeadGetsTheGetsHead(t *testing.T) {
	p, _ := NewPolicy([]string{"gzip"}, 0, 0, nil)
	get, head := resp(200, "text/css", 5000, "ETag", `"e"`, "Accept-Ranges", "bytes"), resp(200, "text/css", 5000, "ETag", `"e"`, "Accept-Ranges", "bytes")
	var e Encoder
	if !e.Start(p, getReq("GET", "gzip"), get) {
		t.Fatal("GET not compressed")
	}
	e.Release()
	before := ActiveCount()
	if e.Start(p, getReq("HEAD", "gzip"), head) || e.Active() {
		t.Fatal("HEAD took an encoder")
	}
	if ActiveCount() != before {
		t.Error("HEAD counted as an active compression")
	}
	for _, f := range []string{"ETag", "Vary", "Content-Encoding", "Content-Length", "Accept-Ranges"} {
		if g, h := get.Header.Get(f), head.Header.Get(f); g != h {
			t.Errorf("%s: GET %q, HEAD %q", f, g, h)
		}
	}
	if get.ContentLength != head.ContentLength {
		t.Errorf("Content-Length: GET %d, HEAD %d", get.ContentLength, head.ContentLength)
	}
}

// brotliWindowBits reads WBITS from the start of a brotli stream (RFC 7932 section 9.1).
func brotliWindowBits(b []byte) int {
	v := uint(b[0]) | uint(b[1])<<8
	if v&1 == 0 {
		return 16
	}
	if n := (v >> 1) & 7; n != 0 {
		return 17 + int(n)
	}
	if m := (v >> 4) & 7; m != 0 {
		if m == 1 {
			return 17 // (large-window streams are not produced here)
		}
		return 8 + int(m)
	}
	return 17
}

// The encoders' windows, which their memory grows with, are bounded: brotli 2^19 instead
// of the library's 2^22, zstd 1 MiB. Read from the streams they write.
func TestEncoderWindowsBounded(t *testing.T) {
	body := bytes.Repeat(text, 20) // 2.4 MB, past every window
	for level := 1; level <= 9; level++ {
		var br bytes.Buffer
		w := NewWriter(Brotli, level, &br)
		w.Write(body)
		w.Close()
		if got := brotliWindowBits(br.Bytes()); got > 20 {
			t.Errorf("brotli level %d: window 2^%d", level, got)
		}
		var zb bytes.Buffer
		w = NewWriter(Zstd, level, &zb)
		w.Write(body)
		w.Close()
		var h zstd.Header
		if err := h.Decode(zb.Bytes()); err != nil {
			t.Fatal(err)
		}
		if h.WindowSize > zstdWindow {
			t.Errorf("zstd level %d: window %d", level, h.WindowSize)
		}
		if out := decodeAll(t, Brotli, br.Bytes()); !bytes.Equal(out, body) {
			t.Errorf("brotli level %d: round trip differs", level)
		}
	}
}

func idle(p *encoderPool) []*codec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.idle)
}

// An encoder that compressed more than maxPooledInput in one response is dropped on
// Release, not pooled; one that served only small responses goes back, however many.
func TestLargeEncoderNotPooled(t *testing.T) {
	for _, alg := range []Algorithm{Brotli, Zstd, Gzip} {
		p, _ := NewPolicy([]string{alg.Token()}, 3, -1, nil)
		pool := p.pools[alg]
		var e Encoder
		e.Start(p, getReq("GET", alg.Token()), resp(200, "text/html", -1))
		c := e.c
		for sent := 0; sent <= maxPooledInput; sent += len(text) {
			if _, err := e.Body(text, false, false); err != nil {
				t.Fatal(err)
			}
		}
		e.Body(nil, false, true)
		e.Release()
		if slices.Contains(idle(pool), c) {
			t.Errorf("%s: an encoder that compressed %d bytes went back to the pool", alg.Token(), c.in)
		}
		e.Start(p, getReq("GET", alg.Token()), resp(200, "text/html", -1))
		c = e.c
		e.Body(text, false, true)
		e.Release()
		for range 2 * maxPooledInput / len(text) {
			e.Start(p, getReq("GET", alg.Token()), resp(200, "text/html", -1))
			if e.c != c {
				t.Fatalf("%s: the pool did not hand back its last encoder", alg.Token())
			}
			e.Body(text, false, true)
			e.Release()
		}
		if !slices.Contains(idle(pool), c) {
			t.Errorf("%s: a small response's encoder was not pooled", alg.Token())
		}
	}
}

// Past SetMaxActive concurrent compressions a response goes identity, strong ETag and
// Vary kept; a released encoder frees its slot.
func TestMaxActiveCompressions(t *testing.T) {
	SetMaxActive(2)
	t.Cleanup(func() { SetMaxActive(0) })
	p, _ := NewPolicy([]string{"gzip"}, 0, 0, nil)
	req := getReq("GET", "gzip")
	es := make([]Encoder, 3)
	for i := range 2 {
		if !es[i].Start(p, req, resp(200, "text/html", -1)) {
			t.Fatalf("compression %d refused under the cap", i)
		}
	}
	r := resp(200, "text/html", 5000, "ETag", `"e"`)
	if es[2].Start(p, req, r) {
		t.Fatal("third compression allowed past a cap of 2")
	}
	if r.Header.Get("ETag") != `"e"` || r.Header.Has("Content-Encoding") || r.ContentLength != 5000 ||
		!r.Header.HasToken("Vary", "Accept-Encoding") {
		t.Errorf("identity head past the cap: ETag %s CE %q CL %d Vary %q", r.Header.Get("ETag"),
			r.Header.Get("Content-Encoding"), r.ContentLength, r.Header.Get("Vary"))
	}
	if out, _ := es[2].Body([]byte("plain"), false, true); string(out) != "plain" {
		t.Errorf("identity body %q", out)
	}
	es[0].Release()
	if !es[2].Start(p, req, resp(200, "text/html", -1)) {
		t.Error("slot not freed by Release")
	}
	es[1].Release()
	es[2].Release()
	if n := ActiveCount(); n != 0 {
		t.Errorf("%d compressions still counted", n)
	}
}

// Starting an Encoder twice releases the first encoder and its slot under the cap.
func TestStartTwiceFreesTheSlot(t *testing.T) {
	p, _ := NewPolicy([]string{"gzip"}, 0, 0, nil)
	before := ActiveCount()
	var e Encoder
	e.Start(p, getReq("GET", "gzip"), resp(200, "text/html", -1))
	e.Start(p, getReq("GET", "gzip"), resp(200, "text/html", -1))
	if n := ActiveCount() - before; n != 1 {
		t.Errorf("%d slots held by one encoder", n)
	}
	e.Release()
	if ActiveCount() != before {
		t.Error("slot not freed")
	}
}
