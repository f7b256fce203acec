package compression

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/verge-edge/verge/message"
)

func TestNegotiate(t *testing.T) {
	all := []Algorithm{Zstd, Brotli, Gzip}
	tests := []struct {
		ae      string
		offered []Algorithm
		want    Algorithm
	}{
		{"", all, None},
		{"gzip", all, Gzip},
		{"gzip, deflate, br", all, Brotli},
		{"gzip, deflate, br, zstd", all, Zstd},
		{"gzip, br, zstd", []Algorithm{Gzip, Brotli}, Gzip},
		{"br;q=0.5, gzip;q=0.8", all, Gzip},
		{"br;q=1.0, gzip;q=0.999", all, Brotli},
		{"gzip;q=0", all, None},
		{"*", all, Zstd},
		{"*;q=0.1, zstd;q=0", all, Brotli},
		{"*;q=0", all, None},
		{"identity", all, None},
		{"X-GZIP", all, Gzip},
		{" br ; q=0.3 , gzip ; q=0.2 ", all, Brotli},
		{"br;q=2", all, None},       // malformed weight: refused
		{"br;q=abc", all, None},     // malformed weight: refused
		{"br;level=1", all, Brotli}, // other parameters ignored
		{"gzip;q=0.001", all, Gzip},
		{",,gzip,,", all, Gzip},
		{"zstd", nil, None},
	}
	for _, tc := range tests {
		if got := Negotiate(tc.ae, tc.offered); got != tc.want {
			t.Errorf("Negotiate(%q, %v) = %v, want %v", tc.ae, tc.offered, got, tc.want)
		}
	}
}

func TestNegotiateAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Negotiate("gzip, deflate, br;q=0.9, zstd", DefaultAlgorithms) }); n != 0 {
		t.Errorf("Negotiate allocates %v times", n)
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		algs  []string
		level int
		types []string
		want  string
	}{
		{[]string{"deflate"}, 0, nil, `unknown algorithm "deflate"`},
		{[]string{"gzip", "gzip"}, 0, nil, "listed twice"},
		{nil, 10, nil, "level 10 out of range"},
		{nil, 0, []string{"text"}, "invalid media type"},
		{nil, 0, []string{"text/ht*ml"}, "invalid media type"},
		{nil, 0, []string{"*/*"}, "invalid media type"},
	} {
		_, err := NewPolicy(tc.algs, tc.level, 0, tc.types)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewPolicy(%v, %d, %v) = %v, want %q", tc.algs, tc.level, tc.types, err, tc.want)
		}
	}
}

func TestCompressible(t *testing.T) {
	p, err := NewPolicy(nil, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for ct, want := range map[string]bool{
		"text/html; charset=utf-8":   true,
		"TEXT/CSS":                   true,
		"application/json":           true,
		"application/problem+json":   true,
		"application/vnd.api+json":   true,
		"image/svg+xml":              true,
		"application/wasm":           true,
		"image/png":                  false,
		"application/octet-stream":   false,
		"application/zip":            false,
		"":                           false,
		"text/":                      false,
		"application/+json":          false,
		"font/woff2":                 false,
		"application/javascript ; x": true,
	} {
		if got := p.Compressible(ct); got != want {
			t.Errorf("Compressible(%q) = %v, want %v", ct, got, want)
		}
	}
}

func resp(status int, ct string, length int64, fields ...string) *message.Response {
	r := &message.Response{Status: status, ContentLength: length}
	if ct != "" {
		r.Header.Add("Content-Type", ct)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.Add(fields[i], fields[i+1])
	}
	return r
}

func TestDecide(t *testing.T) {
	p, _ := NewPolicy(nil, 0, 0, nil)
	get := &message.Request{Method: "GET"}
	get.Header.Add("Accept-Encoding", "gzip, br")
	head := &message.Request{Method: "HEAD"}
	head.Header.Add("Accept-Encoding", "gzip")
	none := &message.Request{Method: "GET"}
	tests := []struct {
		name string
		req  *message.Request
		resp *message.Response
		alg  Algorithm
		vary bool
	}{
		{"html", get, resp(200, "text/html", -1), Brotli, true},
		{"large", get, resp(200, "text/html", 5000), Brotli, true},
		{"small", get, resp(200, "text/html", 100), None, false},
		{"no accept", none, resp(200, "text/html", -1), None, true},
		{"head", head, resp(200, "text/html", 5000), Gzip, true},
		{"png", get, resp(200, "image/png", 5000), None, false},
		{"no type", get, resp(200, "", 5000), None, false},
		{"206", get, resp(206, "text/html", 5000, "Content-Range", "bytes 0-4999/10000"), None, false},
		{"content-range", get, resp(200, "text/html", 5000, "Content-Range", "bytes 0-4999/10000"), None, false},
		{"204", get, resp(204, "text/html", 0), None, false},
		{"encoded", get, resp(200, "text/html", 5000, "Content-Encoding", "gzip"), None, false},
		{"identity", get, resp(200, "text/html", 5000, "Content-Encoding", "identity"), Brotli, true},
		{"no-transform", get, resp(200, "text/html", 5000, "Cache-Control", "public, no-transform"), None, false},
		{"304", get, resp(304, "", -1), None, true},
		{"404 page", get, resp(404, "text/html", 5000), Brotli, true},
	}
	for _, tc := range tests {
		alg, vary := p.Decide(tc.req, tc.resp)
		if alg != tc.alg || vary != tc.vary {
			t.Errorf("%s: Decide = %v, %v; want %v, %v", tc.name, alg, vary, tc.alg, tc.vary)
		}
	}
}

func decodeAll(t testing.TB, alg Algorithm, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch alg {
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case Brotli:
		r = brotli.NewReader(bytes.NewReader(b))
	case Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%v: %v", alg, err)
	}
	return out
}

var text = []byte(strings.Repeat("Verge compresses responses as they stream, chunk by chunk. ", 2000))

// TestEncoderStreams compresses in chunks with flushes, for every coding and a few levels,
// and checks the head changes and that the decoded stream equals the input; a flushed
// prefix must already decode before the stream ends.
func TestEncoderStreams(t *testing.T) {
	for _, alg := range []Algorithm{Gzip, Brotli, Zstd} {
		for _, level := range []int{1, 5, 9} {
			p, err := NewPolicy([]string{alg.Token()}, level, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			req := &message.Request{Method: "GET"}
			req.Header.Add("Accept-Encoding", alg.Token())
			r := resp(200, "text/plain", int64(len(text)), "ETag", `"abc"`, "Content-Length", "x", "Accept-Ranges", "bytes")
			var e Encoder
			if !e.Start(p, req, r) {
				t.Fatalf("%v: not started", alg)
			}
			if r.Header.Get("Content-Encoding") != alg.Token() || r.ContentLength != -1 || r.Header.Has("Content-Length") ||
				r.Header.Has("Accept-Ranges") || r.Header.Get("ETag") != `W/"abc"` || r.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("%v: head %v", alg, r.Header.Fields())
			}
			var out []byte
			first, _ := e.Body(text[:1000], true, false)
			out = append(out, first...)
			for i := 1000; i < len(text); i += 7000 {
				chunk, err := e.Body(text[i:min(i+7000, len(text))], false, false)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, chunk...)
			}
			last, err := e.Body(nil, false, true)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, last...)
			e.Release()
			if got := decodeAll(t, alg, out); !bytes.Equal(got, text) {
				t.Errorf("%v level %d: decoded %d bytes, want %d", alg, level, len(got), len(text))
			}
			if len(out) >= len(text)/4 {
				t.Errorf("%v level %d: %d bytes from %d", alg, level, len(out), len(text))
			}
		}
	}
}

// TestFlushReleasesPrefix checks that after a flush the output so far decodes to the input so
// far: a streamed response is not held in the encoder.
func TestFlushReleasesPrefix(t *testing.T) {
	for _, alg := range []Algorithm{Gzip, Brotli, Zstd} {
		p, _ := NewPolicy([]string{alg.Token()}, 0, 0, nil)
		req := &message.Request{Method: "GET"}
		req.Header.Add("Accept-Encoding", alg.Token())
		var e Encoder
		e.Start(p, req, resp(200, "text/event-stream", -1))
		out, err := e.Body([]byte("data: one\n\n"), true, false)
		if err != nil || len(out) == 0 {
			t.Fatalf("%v: flush gave %d bytes, %v", alg, len(out), err)
		}
		prefix := append([]byte(nil), out...)
		var r io.Reader
		switch alg {
		case Gzip:
			zr, err := gzip.NewReader(bytes.NewReader(prefix))
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		case Brotli:
			r = brotli.NewReader(bytes.NewReader(prefix))
		case Zstd:
			zr, _ := zstd.NewReader(bytes.NewReader(prefix))
			defer zr.Close()
			r = zr
		}
		buf := make([]byte, 11)
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "data: one\n\n" {
			t.Errorf("%v: flushed prefix decodes to %q, %v", alg, buf, err)
		}
		e.Release()
	}
}

func TestStartLeavesOthers(t *testing.T) {
	p, _ := NewPolicy(nil, 0, 0, nil)
	req := &message.Request{Method: "GET"}
	req.Header.Add("Accept-Encoding", "gzip")
	r := resp(200, "image/png", 5000, "ETag", `"abc"`)
	var e Encoder
	if e.Start(p, req, r) || r.Header.Get("ETag") != `"abc"` || r.Header.Has("Vary") || r.ContentLength != 5000 {
		t.Errorf("png changed: %v", r.Header.Fields())
	}
	if out, _ := e.Body([]byte("raw"), false, true); string(out) != "raw" {
		t.Errorf("passthrough body %q", out)
	}
	r = resp(304, "", -1, "ETag", `"abc"`, "Vary", "Origin")
	if e.Start(p, req, r) || r.Header.Get("ETag") != `W/"abc"` || !r.Header.HasToken("Vary", "Accept-Encoding") {
		t.Errorf("304: %v", r.Header.Fields())
	}
	var nilPolicy Encoder
	if nilPolicy.Start(nil, req, resp(200, "text/html", -1)) {
		t.Error("nil policy compressed")
	}
}

func TestAddVary(t *testing.T) {
	for _, tc := range []struct{ have, want []string }{
		{nil, []string{"Accept-Encoding"}},
		{[]string{"Origin"}, []string{"Origin", "Accept-Encoding"}},
		{[]string{"origin, accept-encoding"}, []string{"origin, accept-encoding"}},
		{[]string{"*"}, []string{"*"}},
	} {
		var h message.Header
		for _, v := range tc.have {
			h.Add("Vary", v)
		}
		AddVary(&h)
		var got []string
		h.Values("Vary", func(v string) bool { got = append(got, v); return true })
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("AddVary(%v) = %v, want %v", tc.have, got, tc.want)
		}
	}
}

// recorder is a minimal message.ServerExchange that keeps what was written.
type recorder struct {
	req      message.Request
	resp     *message.Response
	body     bytes.Buffer
	flushes  int
	finished bool
}

func (r *recorder) Request() *message.Request                { return &r.req }
func (r *recorder) Context() context.Context                 { return context.Background() }
func (r *recorder) Conn() *message.ConnInfo                  { return &message.ConnInfo{} }
func (r *recorder) WriteHeader(resp *message.Response) error { r.resp = resp; return nil }
func (r *recorder) Write(p []byte) (int, error)              { return r.body.Write(p) }
func (r *recorder) Flush() error                             { r.flushes++; return nil }
func (r *recorder) Finish(*message.Header) error             { r.finished = true; return nil }
func (r *recorder) Abort(error)                              {}

func TestExchange(t *testing.T) {
	p, _ := NewPolicy([]string{"gzip"}, 0, 0, nil)
	rec := &recorder{req: message.Request{Method: "GET"}}
	rec.req.Header.Add("Accept-Encoding", "gzip")
	x := &Exchange{ServerExchange: rec, Policy: p}
	if err := x.WriteHeader(resp(200, "text/plain", -1)); err != nil {
		t.Fatal(err)
	}
	x.Write(text[:5000])
	x.Flush()
	if rec.flushes != 1 || rec.body.Len() == 0 {
		t.Errorf("Flush: %d flushes, %d bytes", rec.flushes, rec.body.Len())
	}
	x.Write(text[5000:])
	x.Finish(nil)
	if !rec.finished || rec.resp.Header.Get("Content-Encoding") != "gzip" || x.Compressed() != Gzip {
		t.Errorf("finish: %v %v", rec.finished, rec.resp.Header.Fields())
	}
	if x.BytesWritten() != int64(rec.body.Len()) {
		t.Errorf("BytesWritten %d, wrote %d", x.BytesWritten(), rec.body.Len())
	}
	x.Release()
	if got := decodeAll(t, Gzip, rec.body.Bytes()); !bytes.Equal(got, text) {
		t.Errorf("decoded %d bytes", len(got))
	}
}
