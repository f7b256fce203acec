package e2e

import (
	"bytes"
	"net"
	"testing"

	"github.com/verge-edge/verge/internal/cannedorigin"
	"github.com/verge-edge/verge/upstream"
)

// BenchmarkProxyHTTP1 measures a full proxied request over loopback: a keep-alive client
// connection into Verge's server, the HTTP/1.1 codec, the phases engine, the pooled upstream
// transport, and a raw origin, for a 1 KiB and a 64 KiB response. The client and the origin
// allocate nothing per request, so allocs/op is Verge's own.
func BenchmarkProxyHTTP1(b *testing.B) {
	b.Run("1KiB", func(b *testing.B) { benchProxyHTTP1(b, 1<<10) })
	b.Run("64KiB", func(b *testing.B) { benchProxyHTTP1(b, 64<<10) })
}

func benchProxyHTTP1(b *testing.B, size int) {
	origin := cannedorigin.Start(b, cannedorigin.Response(size))
	v := startVerge(b, &upstream.Peer{Address: origin}, nil)
	c, err := net.Dial("tcp", v.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /index.html HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, size+8<<10)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		// Read the head, then exactly the body announced.
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
				for n-(i+4) < size {
					m, err := c.Read(buf[n:])
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
				return
			}
		}
	}
	for i := 0; i < 100; i++ {
		roundTrip()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
	b.SetBytes(int64(size))
}
