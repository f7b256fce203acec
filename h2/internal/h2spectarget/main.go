// Command h2spectarget serves a fixed 200 response through h2.Server for conformance runs
// with h2spec: h2c with prior knowledge on -h2c and TLS with ALPN h2 on -tls (a self-signed
// certificate). It prints "listening h2c ADDR" and "listening tls ADDR" and runs until
// interrupted.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/h2"
	"github.com/verge-edge/verge/h2/internal/selfsigned"
	"github.com/verge-edge/verge/message"
)

func main() {
	h2cAddr := flag.String("h2c", "127.0.0.1:0", "address for h2c with prior knowledge; empty disables")
	tlsAddr := flag.String("tls", "127.0.0.1:0", "address for TLS with ALPN h2; empty disables")
	flag.Parse()
	if err := run(*h2cAddr, *tlsAddr); err != nil {
		fmt.Fprintln(os.Stderr, "h2spectarget:", err)
		os.Exit(1)
	}
}

var body = []byte("hello from verge h2\n")

func handle(ex message.ServerExchange) {
	if r := ex.Request().Body; r != nil {
		io.Copy(io.Discard, r)
	}
	resp := &message.Response{Status: 200, ContentLength: int64(len(body))}
	resp.Header.Add("content-type", "text/plain")
	if err := ex.WriteHeader(resp); err != nil {
		ex.Abort(err)
		return
	}
	if _, err := ex.Write(body); err != nil {
		ex.Abort(err)
		return
	}
	ex.Finish(nil)
}

func run(h2cAddr, tlsAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &h2.Server{
		Handler: handle,
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	var lns []net.Listener
	if h2cAddr != "" {
		ln, err := net.Listen("tcp", h2cAddr)
		if err != nil {
			return err
		}
		fmt.Println("listening h2c", ln.Addr())
		lns = append(lns, ln)
	}
	if tlsAddr != "" {
		cert, _, err := selfsigned.Certificate()
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", tlsAddr)
		if err != nil {
			return err
		}
		fmt.Println("listening tls", ln.Addr())
		lns = append(lns, tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2"},
		}))
	}
	for _, ln := range lns {
		go acceptLoop(ctx, ln, srv)
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	return srv.Shutdown(context.Background())
}

// serveOne hands c to srv: after the TLS handshake, or, in plain text, once the client
// preface has been seen, as Verge's listener does before it picks HTTP/2 over HTTP/1.1. A
// plain-text client that does not send the preface is not speaking h2c: its connection is
// half-closed and drained briefly so it sees an orderly close, not a reset.
func serveOne(ctx context.Context, c net.Conn, srv *h2.Server) {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return
		}
		srv.ServeConn(ctx, c, nil)
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, len(http2.ClientPreface))
	peek, err := br.Peek(len(http2.ClientPreface))
	c.SetReadDeadline(time.Time{})
	if err != nil || string(peek) != http2.ClientPreface {
		if tcp, ok := c.(*net.TCPConn); ok {
			tcp.CloseWrite()
			c.SetReadDeadline(time.Now().Add(time.Second))
			io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
		c.Close()
		return
	}
	srv.ServeConn(ctx, &peekedConn{Conn: c, r: br}, nil)
}

// peekedConn replays the bytes a bufio.Reader peeked before reading from the connection.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

// CloseWrite half-closes the TCP connection, as h2 does after its last GOAWAY.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

func acceptLoop(ctx context.Context, ln net.Listener, srv *h2.Server) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serveOne(ctx, c, srv)
	}
}
