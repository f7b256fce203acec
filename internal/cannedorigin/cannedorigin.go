// Package cannedorigin is a test and benchmark origin that answers every HTTP/1.1 request head
// with one fixed response, allocating nothing per request, so that a benchmark's allocs/op are
// those of the code under test.
package cannedorigin

import (
	"bytes"
	"net"
	"strconv"
	"testing"
)

// Start listens on a loopback port and serves every connection with Serve(resp). The listener
// and the connections are closed when tb ends. It returns the listener's address.
func Start(tb testing.TB, resp []byte) string {
	tb.Helper()
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
			go Serve(c, resp)
		}
	}()
	return ln.Addr().String()
}

// Response returns a 200 response with a body of size bytes.
func Response(size int) []byte {
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	return append([]byte(head), bytes.Repeat([]byte("x"), size)...)
}

// Serve writes resp once for each request head (bodies are not expected) read from c, until c
// fails or a head does not fit in 8 KiB; then it closes c.
func Serve(c net.Conn, resp []byte) {
	defer c.Close()
	buf := make([]byte, 8<<10)
	have := 0
	for {
		n, err := c.Read(buf[have:])
		if err != nil {
			return
		}
		have += n
		for {
			i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
			if i < 0 {
				break
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
			have = copy(buf, buf[i+4:have])
		}
		if have == len(buf) {
			return
		}
	}
}
