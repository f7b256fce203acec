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
	c, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	o := &origin{handler: fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100000", "Content-Type", "text/plain"}, body: string(make([]byte, 1024))})}
	p := &proxy.Proxy[struct{}]{Phases: testPhases{}, Transport: o, Cache: c}
	ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:40000")}}
	run := func() {
		ex.req.Reset()
		ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto, ex.req.Scheme = "GET", "/index.html", "example.test", message.HTTP11, "http"
		ex.req.Header.Add("User-Agent", "bench")
		ex.req.Header.Add("Accept", "*/*")
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
	c, err := New(Options{Dir: b.TempDir(), MemorySize: 1 << 20, MemoryMaxObject: 1024})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	o := &origin{handler: fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100000", "Content-Type", "text/plain"}, body: string(make([]byte, 64<<10))})}
	p := &proxy.Proxy[struct{}]{Phases: testPhases{}, Transport: o, Cache: c}
	ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:40000")}}
	run := func() {
		ex.req.Reset()
		ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto, ex.req.Scheme = "GET", "/big.bin", "example.test", message.HTTP11, "http"
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
