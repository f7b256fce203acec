package http1

import (
	"bytes"
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/cannedorigin"
	"github.com/verge-edge/verge/message"
)

const benchRequest = "GET /api/v1/items?page=2&sort=desc HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=abcdef0123456789; theme=dark\r\n" +
	"Cache-Control: max-age=0\r\n" +
	"X-Request-Id: 7f1c2a9e-4b1d-4c8e-9a3f-2d6b8e0c1f44\r\n" +
	"\r\n"

func BenchmarkParseRequest(b *testing.B) {
	lim := Limits{}.withDefaults()
	data := []byte(benchRequest)
	var req message.Request
	var rh reqHead
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var scan headScanner
		n, perr := scan.scan(data, lim.MaxRequestLine, lim.MaxHeaderBytes, lim.MaxHeaders)
		if perr != nil || n != len(data) {
			b.Fatal(perr)
		}
		req.Reset()
		if err := parseRequestHead(data[:n], &req, &rh, &lim); err != nil {
			b.Fatal(err)
		}
	}
}

var benchBody = bytes.Repeat([]byte("x"), 1024)

func benchHandler(ex *Exchange) {
	resp := message.Response{Status: 200, ContentLength: int64(len(benchBody))}
	ex.WriteHeader(&resp)
	ex.Write(benchBody)
	ex.Finish(nil)
}

// benchServerLoopback measures one keep-alive request and its 1 KiB response over loopback
// TCP, the client side being raw reads and writes that do not allocate.
func benchServerLoopback(b *testing.B, s *Server) {
	addr := startServer(b, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte(benchRequest)
	c.Write(req)
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		b.Fatal(err)
	}
	respLen := n // one read carries the whole small response on loopback
	if !bytes.HasSuffix(buf[:n], benchBody[:16]) {
		b.Fatalf("unexpected response %q", buf[:n])
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:respLen]); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// cpuMeter reports the process CPU time per operation (client and server together).
type cpuMeter struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter { return cpuMeter{processCPU()} }

func (m cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(processCPU()-m.start)/float64(b.N)/1e3, "cpu-us/op")
}

func BenchmarkServerLoopback(b *testing.B) {
	benchServerLoopback(b, &Server{Handler: benchHandler})
}

// BenchmarkServerLoopbackHoldBuffer keeps the read buffer across keep-alive waits; the
// difference from BenchmarkServerLoopback is the cost of not pinning buffers on idle
// connections (one extra read per request).
func BenchmarkServerLoopbackHoldBuffer(b *testing.B) {
	benchServerLoopback(b, &Server{Handler: benchHandler, holdIdleBuffer: true})
}

func BenchmarkClientRoundTrip(b *testing.B) {
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: canned\r\nContent-Length: 1024\r\n\r\n"), benchBody...)
	addr := cannedorigin.Start(b, resp)
	released := 0
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	cc := NewClientConn(c, ClientOptions{Release: func(*ClientConn, bool) { released++ }})
	defer cc.Close()
	req := &message.Request{Method: "GET", Target: "/api/v1/items", Authority: "origin.internal", Proto: message.HTTP11}
	req.Header.Add("User-Agent", "verge")
	req.Header.Add("Accept", "*/*")
	req.Header.Add("X-Forwarded-For", "192.0.2.1")
	buf := make([]byte, 4096)
	ctx := context.Background()
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		roundTripAndDrain(b, cc, ctx, req, buf)
	}
	cpu.report(b)
	if !cc.Reusable() {
		b.Fatal("connection not reusable")
	}
}

// roundTripAndDrain sends req on cc and reads the response body to its end.
func roundTripAndDrain(b *testing.B, cc *ClientConn, ctx context.Context, req *message.Request, buf []byte) {
	r, err := cc.RoundTrip(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	for {
		_, err := r.Body.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	r.Body.Close()
}

// BenchmarkClientServer is a ClientConn talking to a Server over loopback: both codecs.
func BenchmarkClientServer(b *testing.B) {
	addr := startServer(b, &Server{Handler: benchHandler})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	cc := NewClientConn(c, ClientOptions{})
	defer cc.Close()
	req := &message.Request{Method: "GET", Target: "/", Authority: "a", Proto: message.HTTP11}
	buf := make([]byte, 4096)
	ctx := context.Background()
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		roundTripAndDrain(b, cc, ctx, req, buf)
	}
	cpu.report(b)
}

// BenchmarkRequestAfterHibernation measures a request on a keep-alive connection that
// hibernated first (idle for longer than hibernateAfter): on Linux it wakes from the sleeper's
// epoll set and is served by a parked worker goroutine. Compare with ServerLoopback. Each
// operation idles hibernateAfter+50ms untimed, so at most 8 are run per b.N round; ns/op is
// their mean.
func BenchmarkRequestAfterHibernation(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	s := &Server{Handler: benchHandler}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.ServeConnAsync(context.Background(), c, nil, nil, func() {})
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte(benchRequest)
	buf := make([]byte, 4096)
	c.Write(req)
	respLen, err := c.Read(buf)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	n := min(b.N, 8)
	var total time.Duration
	for range n {
		time.Sleep(hibernateAfter + 50*time.Millisecond)
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:respLen]); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n), "ns/op")
}
