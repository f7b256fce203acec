package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/message"
)

var kib = bytes.Repeat([]byte("x"), 1024)

// kibHandler answers every request with 1 KiB.
func kibHandler(ex message.ServerExchange) {
	resp := &message.Response{Status: 200, ContentLength: int64(len(kib))}
	resp.Header.Add("content-type", "text/plain")
	ex.WriteHeader(resp)
	ex.Write(kib)
	ex.Finish(nil)
}

// BenchmarkServerRequest measures one downstream GET answered with 1 KiB through the
// neutral model. The client is a bare Framer, so nearly all allocations are the server's.
func BenchmarkServerRequest(b *testing.B) {
	addr := serve(b, &Server{Handler: kibHandler}, false)
	rc := dialRaw(b, addr)
	rc.conn.SetDeadline(time.Time{})
	b.ReportAllocs()
	b.ResetTimer()
	id := uint32(1)
	var window int
	for b.Loop() {
		rc.hbuf.Reset()
		for _, f := range [...]hpack.HeaderField{
			{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/bench"}, {Name: ":authority", Value: "bench"},
			{Name: "user-agent", Value: "bench"}, {Name: "accept", Value: "*/*"},
		} {
			rc.henc.WriteField(f)
		}
		if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			b.Fatal(err)
		}
		for done := false; !done; {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				window += len(f.Data())
				done = f.StreamEnded()
			case *http2.MetaHeadersFrame:
				done = f.StreamEnded()
			}
		}
		if window >= 32<<10 {
			rc.fr.WriteWindowUpdate(0, uint32(window))
			window = 0
		}
		id += 2
	}
}

// BenchmarkClientRoundTrip measures one upstream GET with a 1 KiB response over one
// ClientConn; the origin is this package's Server, so allocations of both sides count.
func BenchmarkClientRoundTrip(b *testing.B) { benchClientRoundTrip(b, nil) }

// BenchmarkClientRoundTripWithInterim is BenchmarkClientRoundTrip with req.Interim set, as the
// proxy engine sets it on every upstream request whose client can receive 1xx responses: it
// measures what the relay costs when no interim response arrives.
func BenchmarkClientRoundTripWithInterim(b *testing.B) {
	benchClientRoundTrip(b, func(int, *message.Header) error { return nil })
}

func benchClientRoundTrip(b *testing.B, interim func(int, *message.Header) error) {
	addr := serve(b, &Server{Handler: kibHandler}, false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	cc, err := NewClientConn(c, ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	req := &message.Request{Method: "GET", Target: "/bench", Authority: "bench", Scheme: "http"}
	req.Header.Add("accept", "*/*")
	req.Interim = interim
	ctx := context.Background()
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := cc.RoundTrip(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := resp.Body.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		resp.Body.Close()
	}
}
