package h2

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/h2/internal/selfsigned"
	"github.com/verge-edge/verge/message"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPool *x509.CertPool
)

func certificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	certOnce.Do(func() {
		var err error
		testCert, testPool, err = selfsigned.Certificate()
		if err != nil {
			panic(err)
		}
	})
	return testCert, testPool
}

// quietLogger drops everything below Error.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// serve runs srv on a loopback listener, TLS with ALPN h2 when useTLS, h2c with prior
// knowledge otherwise, and returns the address. Everything stops at test cleanup.
func serve(t testing.TB, srv *Server, useTLS bool) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = quietLogger()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if useTLS {
		cert, _ := certificate(t)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if tc, ok := c.(*tls.Conn); ok {
					hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
					err := tc.HandshakeContext(hctx)
					hcancel()
					if err != nil {
						c.Close()
						return
					}
				}
				srv.ServeConn(ctx, c, nil)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		scancel()
		cancel()
		wg.Wait()
	})
	return ln.Addr().String()
}

// h2Client returns an HTTP/2-only client for addr: h2c with prior knowledge, or TLS with
// ALPN h2 trusting the test certificate.
func h2Client(t testing.TB, useTLS bool) *http.Client {
	t.Helper()
	tr := &http2.Transport{}
	if useTLS {
		_, pool := certificate(t)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}}
	} else {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func scheme(useTLS bool) string {
	if useTLS {
		return "https"
	}
	return "http"
}

// echoHandler answers with the request's method, target, authority, scheme and protocol in
// x-echo-* fields, each request field as x-req-<name>, the request body, and the request's
// trailers as response trailers plus x-body-bytes.
func echoHandler(ex message.ServerExchange) {
	req := ex.Request()
	resp := &message.Response{Status: 200, ContentLength: -1}
	resp.Header.Add("x-echo-method", req.Method)
	resp.Header.Add("x-echo-target", req.Target)
	resp.Header.Add("x-echo-authority", req.Authority)
	resp.Header.Add("x-echo-scheme", req.Scheme)
	resp.Header.Add("x-echo-proto", req.Proto)
	for _, f := range req.Header.Fields() {
		resp.Header.Add("x-req-"+f.Name, f.Value)
	}
	if err := ex.WriteHeader(resp); err != nil {
		ex.Abort(err)
		return
	}
	var n int64
	if req.Body != nil {
		buf := make([]byte, 4096)
		for {
			m, err := req.Body.Read(buf)
			if m > 0 {
				n += int64(m)
				if _, werr := ex.Write(buf[:m]); werr != nil {
					ex.Abort(werr)
					return
				}
				ex.Flush()
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				ex.Abort(err)
				return
			}
		}
	}
	var tr message.Header
	tr.CopyFrom(&req.Trailer)
	tr.Add("x-body-bytes", itoa(n))
	ex.Finish(&tr)
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// lockedWriter serializes writes to a buffer shared with the test.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// slogTo logs at Debug and above to w, guarded by mu.
func slogTo(mu *sync.Mutex, w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu, w}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// shutdownAsync runs srv.Shutdown with a timeout on its own goroutine; the channel receives
// its result.
func shutdownAsync(srv *Server, timeout time.Duration) <-chan error {
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	return shut
}
