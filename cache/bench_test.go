package cache

import (
	"context"
	"net/netip"
	"testing"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// benchExchange discards what it is sent.
type benchExchange struct {
	req  message.Request
	info message.ConnInfo
	n    int64
}

func (e *benchExchange) Request() *message.Request           { return &e.req }
func (e *benchExchange) Context() context.Context            { return context.Background() }
func (e *benchExchange) Conn() *message.ConnInfo             { return &e.info }
func (e *benchExchange) WriteHeader(*message.Response) error { return nil }
func (e *benchExchange) Write(p []byte) (int, error)         { e.n += int64(len(p)); return len(p), nil }
func (e *benchExchange) Flush() error                        { return nil }
func (e *benchExchange) Finish(*message.Header) error        { return nil }
func (e *benchExchange) Abort(error)                         {}

// BenchmarkMemoryHit measures a 1 KiB hit from the memory tier through the engine.
func BenchmarkMemoryHit(b *testing.B) {
	benchHit(b, Options{}, "/index.html", 1024, "User-Agent", "bench", "Accept", "*/*")
}

// BenchmarkKey measures the default key computation with query rules.
func BenchmarkKey(b *testing.B) {
	req := &message.Request{Method: "GET", Scheme: "https", Authority: "Example.COM:443", Target: "/a/b/c?x=1&utm_source=y&z=2"}
	p := &Policy{ExcludeQuery: []string{"utm_source"}}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendKey(buf[:0], req, p)
		_ = hashKey(buf)
	}
}

// BenchmarkDiskHit measures a 64 KiB hit served from the disk tier (too large for memory).
func BenchmarkDiskHit(b *testing.B) {
	benchHit(b, Options{Dir: b.TempDir(), MemorySize: 1 << 20, MemoryMaxObject: 1024}, "/big.bin", 64<<10)
}

// benchHit stores a response with a body of size bytes at target, then measures hits on it
// through the engine; hdr are the request's fields, name, value pairs.
func benchHit(b *testing.B, opts Options, target string, size int, hdr ...string) {
	c, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	o := &origin{handler: fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100000", "Content-Type", "text/plain"}, body: string(make([]byte, size))})}
	p := &proxy.Proxy[struct{}]{Phases: testPhases{}, Transport: o, Cache: c}
	ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:40000")}}
	run := func() {
		ex.req.Reset()
		ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto, ex.req.Scheme = "GET", target, "example.test", message.HTTP11, "http"
		for i := 0; i+1 < len(hdr); i += 2 {
			ex.req.Header.Add(hdr[i], hdr[i+1])
		}
		p.ServeExchange(ex)
	}
	run()
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
	if o.n.Load() != 1 {
		b.Fatalf("origin saw %d requests, want 1", o.n.Load())
	}
}
