package proxy

import (
	"context"
	"io"
	"net/netip"
	"testing"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// benchExchange is a reusable exchange that discards what it is sent.
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

// cannedBody replays a fixed body; Close rewinds it.
type cannedBody struct {
	data []byte
	off  int
}

func (b *cannedBody) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}
func (b *cannedBody) Close() error { b.off = 0; return nil }

type benchTransport struct {
	resp message.Response
	body cannedBody
}

func (t *benchTransport) RoundTrip(_ context.Context, _ *upstream.Peer, r *message.Request) (*message.Response, error) {
	t.resp.Reset()
	t.resp.Status = 200
	t.resp.Proto = message.HTTP11
	t.resp.ContentLength = int64(len(t.body.data))
	t.resp.Header.Add("Content-Type", "text/plain")
	t.resp.Header.Add("Connection", "keep-alive")
	t.resp.Body = &t.body
	return &t.resp, nil
}

type benchPhases struct{ Base[struct{ route int }] }

func (benchPhases) UpstreamPeer(*Session, *struct{ route int }) (*upstream.Peer, error) {
	return testPeer, nil
}

// BenchmarkEngine measures the engine's own cost for a proxied 1 KiB GET: phases, header
// rewriting (hop-by-hop, Via, X-Forwarded-*) and the body copy, with codecs and network faked.
func BenchmarkEngine(b *testing.B) {
	p := &Proxy[struct{ route int }]{Phases: benchPhases{}}
	benchEngine(b, p, "127.0.0.1:40000", "Connection", "keep-alive")
}

// BenchmarkEngineTrustedProxy is BenchmarkEngine behind a trusted proxy: the client address is
// resolved from X-Forwarded-For and the forwarding fields (Forwarded too) are appended to,
// without allocating.
func BenchmarkEngineTrustedProxy(b *testing.B) {
	p := &Proxy[struct{ route int }]{Phases: benchPhases{},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Forwarded: true}
	benchEngine(b, p, "10.1.2.3:40000",
		"X-Forwarded-For", "198.51.100.9, 10.9.9.9",
		"X-Forwarded-Proto", "https",
		"Forwarded", "for=198.51.100.9;proto=https")
}

// benchEngine runs p (its Transport set here) on a GET from peer with User-Agent, Accept and
// the given name, value pairs, and checks every 1 KiB body was written.
func benchEngine(b *testing.B, p *Proxy[struct{ route int }], peer string, fields ...string) {
	p.Transport = &benchTransport{body: cannedBody{data: make([]byte, 1024)}}
	ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort(peer)}}
	b.ReportAllocs()
	for b.Loop() {
		ex.req.Reset()
		ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto = "GET", "/index.html", "example.test", message.HTTP11
		ex.req.Header.Add("User-Agent", "bench")
		ex.req.Header.Add("Accept", "*/*")
		for i := 0; i+1 < len(fields); i += 2 {
			ex.req.Header.Add(fields[i], fields[i+1])
		}
		p.ServeExchange(ex)
	}
	if ex.n != int64(b.N)*1024 {
		b.Fatalf("wrote %d bytes, want %d", ex.n, b.N*1024)
	}
}
