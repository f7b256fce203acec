package upstream

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/verge-edge/verge/internal/cannedorigin"
	"github.com/verge-edge/verge/message"
)

// nullCodec answers every request with a preallocated bodiless 204 and releases the conn as
// reusable, so measurements see only the transport and pool.
type nullCodec struct {
	c       net.Conn
	release func(bool)
	resp    message.Response
}

func (n *nullCodec) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	n.resp.Status = 204
	n.release(true)
	return &n.resp, nil
}

func (n *nullCodec) Close() error { return n.c.Close() }

var nullCodecs = codecFactory{
	http1: func(c net.Conn, o *codecOptions, release func(bool)) codec {
		return &nullCodec{c: c, release: release}
	},
	http2: newH2Codec,
}

// silentOrigin accepts connections and never writes: enough for the null codec.
func silentOrigin(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tb.Cleanup(func() { c.Close() })
		}
	}()
	return ln.Addr().String()
}

func nullTransport(tb testing.TB) (*Transport, *Peer) {
	tr := &Transport{codecs: &nullCodecs}
	tb.Cleanup(func() { tr.Close() })
	return tr, &Peer{Address: silentOrigin(tb)}
}

// TestTransportZeroAllocs checks that a keep-alive HTTP/1 round trip allocates nothing in
// this package: bucket lookup, checkout with the liveness check, the exchange state machine
// and checkin.
func TestTransportZeroAllocs(t *testing.T) {
	tr, p := nullTransport(t)
	req := get("/")
	ctx := context.Background()
	if _, err := tr.RoundTrip(ctx, p, req); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := tr.RoundTrip(ctx, p, req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocs per round trip = %v, want 0", allocs)
	}
	if s := tr.Stats(); s.Dials != 1 || s.ReusedRequests != s.Requests-1 {
		t.Errorf("dials=%d reused=%d requests=%d, want 1 dial and all others reused", s.Dials, s.ReusedRequests, s.Requests)
	}
}

// BenchmarkPoolCheckoutCheckin measures taking an idle HTTP/1 conn (with the liveness check
// system call) and giving it back.
func BenchmarkPoolCheckoutCheckin(b *testing.B) {
	tr, p := nullTransport(b)
	ctx := context.Background()
	if _, err := tr.RoundTrip(ctx, p, get("/")); err != nil {
		b.Fatal(err)
	}
	to := tr.cfg.resolve(&p.Timeouts)
	bk := tr.pool.bucketFor(p, &to)
	b.ReportAllocs()
	for b.Loop() {
		pc, _, err := tr.pool.get(ctx, bk, &to, false, true)
		if err != nil {
			b.Fatal(err)
		}
		tr.pool.put(pc, true)
	}
}

// BenchmarkTransportNullCodec measures the transport's own cost per keep-alive round trip.
func BenchmarkTransportNullCodec(b *testing.B) {
	tr, p := nullTransport(b)
	req := get("/")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.RoundTrip(ctx, p, req); err != nil {
			b.Fatal(err)
		}
	}
}

// fixedOrigin is an allocation-free HTTP/1.1 origin: it answers every request head with a
// fixed 1 KiB response.
func fixedOrigin(tb testing.TB) string {
	return cannedorigin.Start(tb, cannedorigin.Response(1024))
}

// BenchmarkRoundTripHTTP1 is a steady-state keep-alive HTTP/1.1 round trip over loopback
// through the Transport and the http1 codec, reading a 1 KiB body.
func BenchmarkRoundTripHTTP1(b *testing.B) {
	tr := &Transport{}
	b.Cleanup(func() { tr.Close() })
	p := &Peer{Address: fixedOrigin(b)}
	req := get("/")
	ctx := context.Background()
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := tr.RoundTrip(ctx, p, req)
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
	if s := tr.Stats(); s.Dials != 1 {
		b.Errorf("dials = %d, want 1", s.Dials)
	}
}
