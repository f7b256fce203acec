package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// originHandler echoes like echoHandler, in net/http terms: x-echo-* fields, request fields
// as x-req-*, the body streamed back chunk by chunk, request trailers as response trailers.
func originHandler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Echo-Method", r.Method)
	h.Set("X-Echo-Target", r.RequestURI)
	h.Set("X-Echo-Authority", r.Host)
	h.Set("X-Echo-Proto", r.Proto)
	h.Set("X-Echo-Content-Length", fmt.Sprint(r.ContentLength))
	for k, vv := range r.Header {
		for _, v := range vv {
			h.Add("X-Req-"+k, v)
		}
	}
	if r.URL.Path == "/status/404" {
		w.WriteHeader(404)
		io.WriteString(w, "nope")
		return
	}
	w.WriteHeader(200)
	w.(http.Flusher).Flush()
	buf := make([]byte, 4096)
	n := 0
	for {
		m, err := r.Body.Read(buf)
		if m > 0 {
			n += m
			w.Write(buf[:m])
			w.(http.Flusher).Flush()
		}
		if err != nil {
			break
		}
	}
	for k, vv := range r.Trailer {
		for _, v := range vv {
			h.Add(http.TrailerPrefix+"X-Echo-"+k, v)
		}
	}
	h.Set(http.TrailerPrefix+"X-Body-Bytes", fmt.Sprint(n))
}

// startOrigin runs handler on an HTTP/2 origin: TLS with ALPN h2, or h2c with prior
// knowledge.
func startOrigin(t testing.TB, handler http.Handler, useTLS bool) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	if useTLS {
		srv = httptest.NewUnstartedServer(handler)
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv = httptest.NewServer(h2c.NewHandler(handler, &http2.Server{}))
	}
	t.Cleanup(srv.Close)
	return srv
}

// dialOrigin connects a ClientConn to srv.
func dialOrigin(t testing.TB, srv *httptest.Server, opts ClientOptions) *ClientConn {
	t.Helper()
	addr := srv.Listener.Addr().String()
	var c net.Conn
	var err error
	if srv.TLS != nil {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewClientConn(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func newReq(method, authority, target string, body io.Reader, n int64) *message.Request {
	return &message.Request{Method: method, Target: target, Authority: authority, Body: body, ContentLength: n}
}

func readBody(t testing.TB, resp *message.Response) string {
	t.Helper()
	if resp.Body == nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

func TestClientGetPost(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(scheme(useTLS), func(t *testing.T) {
			srv := startOrigin(t, http.HandlerFunc(originHandler), useTLS)
			cc := dialOrigin(t, srv, ClientOptions{})
			ctx := context.Background()

			req := newReq("GET", "example.test", "/a/b?x=1&y", nil, 0)
			req.Header.Add("X-Multi", "1")
			req.Header.Add("x-multi", "2")
			req.Header.Add("Connection", "keep-alive, x-hop")
			req.Header.Add("X-Hop", "dropped")
			req.Header.Add("Keep-Alive", "timeout=5")
			req.Header.Add("TE", "trailers")
			resp, err := cc.RoundTrip(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || resp.Proto != message.HTTP2 {
				t.Errorf("got %d %s, want 200 %s", resp.Status, resp.Proto, message.HTTP2)
			}
			for k, want := range map[string]string{
				"x-echo-method": "GET", "x-echo-target": "/a/b?x=1&y", "x-echo-authority": "example.test",
				"x-echo-proto": "HTTP/2.0", "x-req-te": "trailers", "x-req-x-hop": "", "x-req-keep-alive": "",
				"x-req-connection": "", "x-req-user-agent": "",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
			var multi []string
			resp.Header.Values("x-req-x-multi", func(v string) bool { multi = append(multi, v); return true })
			if strings.Join(multi, ",") != "1,2" {
				t.Errorf("x-multi: got %v, want [1 2]", multi)
			}
			readBody(t, resp)

			body := strings.Repeat("0123456789", 10000)
			resp, err = cc.RoundTrip(ctx, newReq("POST", "example.test", "/post", strings.NewReader(body), int64(len(body))))
			if err != nil {
				t.Fatal(err)
			}
			if got := readBody(t, resp); got != body {
				t.Errorf("echoed body: got %d bytes, want %d", len(got), len(body))
			}
			if got := resp.Header.Get("x-echo-content-length"); got != fmt.Sprint(len(body)) {
				t.Errorf("origin saw content-length %s, want %d", got, len(body))
			}
			if got := resp.Trailer.Get("x-body-bytes"); got != fmt.Sprint(len(body)) {
				t.Errorf("trailer x-body-bytes: got %q", got)
			}

			resp, err = cc.RoundTrip(ctx, newReq("GET", "example.test", "/status/404", nil, 0))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 404 || readBody(t, resp) != "nope" {
				t.Errorf("got %d, want 404 nope", resp.Status)
			}
			if st := cc.State(); st.Requests != 3 || st.Closed {
				t.Errorf("state: %+v", st)
			}
		})
	}
}

func TestClientStreamingBothWaysWithTrailers(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(scheme(useTLS), func(t *testing.T) {
			srv := startOrigin(t, http.HandlerFunc(originHandler), useTLS)
			cc := dialOrigin(t, srv, ClientOptions{})
			pr, pw := io.Pipe()
			req := newReq("POST", "example.test", "/stream", pr, -1)
			req.Header.Add("Trailer", "x-checksum")
			resp, err := cc.RoundTrip(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.ContentLength != -1 {
				t.Errorf("content length: got %d, want -1", resp.ContentLength)
			}
			buf := make([]byte, 5)
			for _, chunk := range []string{"hello", "world"} {
				go pw.Write([]byte(chunk))
				if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != chunk {
					t.Fatalf("echo of %q while the request is open: got %q, %v", chunk, buf, err)
				}
			}
			req.Trailer.Add("X-Checksum", "abc123")
			pw.Close()
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Fatalf("rest: %q, %v", rest, err)
			}
			if got := resp.Trailer.Get("x-echo-x-checksum"); got != "abc123" {
				t.Errorf("request trailer seen by origin: got %q, want abc123", got)
			}
			if got := resp.Trailer.Get("x-body-bytes"); got != "10" {
				t.Errorf("x-body-bytes: got %q, want 10", got)
			}
		})
	}
}

func TestClientConcurrentRoundTrips(t *testing.T) {
	srv := startOrigin(t, http.HandlerFunc(originHandler), true)
	cc := dialOrigin(t, srv, ClientOptions{})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := strings.Repeat("x", i*10)
			resp, err := cc.RoundTrip(context.Background(), newReq("PUT", "o", fmt.Sprintf("/r/%d", i), strings.NewReader(body), int64(len(body))))
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != body || resp.Header.Get("x-echo-target") != fmt.Sprintf("/r/%d", i) {
				errs <- fmt.Errorf("request %d: got %d bytes target %q err %v", i, len(b), resp.Header.Get("x-echo-target"), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := cc.State(); st.Requests != n || st.ActiveStreams != 0 || st.Closed {
		t.Errorf("state after %d requests: %+v", n, st)
	}
	if !cc.CanTakeNewRequest() {
		t.Error("CanTakeNewRequest: got false on a healthy idle conn")
	}
}

func TestClientHeadAndNoBody(t *testing.T) {
	srv := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "42")
		w.WriteHeader(200)
	}), false)
	cc := dialOrigin(t, srv, ClientOptions{})
	resp, err := cc.RoundTrip(context.Background(), newReq("HEAD", "o", "/", nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Body != nil || resp.ContentLength != 42 {
		t.Errorf("HEAD: got body %v length %d, want nil and 42", resp.Body, resp.ContentLength)
	}
}

func TestClientErrorsClassified(t *testing.T) {
	block := make(chan struct{})
	srv := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}), false)
	t.Cleanup(func() { close(block) })

	t.Run("closed conn is retryable", func(t *testing.T) {
		cc := dialOrigin(t, srv, ClientOptions{})
		cc.Close()
		_, err := cc.RoundTrip(context.Background(), newReq("GET", "o", "/", nil, 0))
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Source != fault.Upstream || fe.Kind != fault.ConnectionClosed || !fe.Retry {
			t.Fatalf("got %#v, want upstream connection-closed with Retry", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		cc := dialOrigin(t, srv, ClientOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := cc.RoundTrip(ctx, newReq("GET", "o", "/", nil, 0))
		fe := fault.As(err)
		if fe.Source != fault.Upstream || fe.Kind != fault.ReadTimeout || fe.Retry {
			t.Fatalf("got %v (kind %v retry %v), want upstream read timeout without Retry", err, fe.Kind, fe.Retry)
		}
		if fe.StatusCode() != 504 {
			t.Errorf("status: got %d, want 504", fe.StatusCode())
		}
	})
	t.Run("response header timeout", func(t *testing.T) {
		cc := dialOrigin(t, srv, ClientOptions{ResponseHeaderTimeout: 50 * time.Millisecond})
		_, err := cc.RoundTrip(context.Background(), newReq("GET", "o", "/", nil, 0))
		if fe := fault.As(err); fe.Kind != fault.ReadTimeout {
			t.Fatalf("got %v (kind %v), want read timeout", err, fe.Kind)
		}
	})
	t.Run("reused flag", func(t *testing.T) {
		cc := dialOrigin(t, srv, ClientOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		cc.RoundTrip(ctx, newReq("GET", "o", "/", nil, 0))
		_, err := cc.RoundTrip(ctx, newReq("GET", "o", "/", nil, 0))
		if fe := fault.As(err); !fe.Reused || fe.Kind != fault.Canceled {
			t.Fatalf("second request: got %v reused=%v kind %v, want Reused and Canceled", err, fe.Reused, fe.Kind)
		}
	})
}

func TestClientGoAwayBeforeStreamIsRetryable(t *testing.T) {
	// An origin served by Verge's own Server: Shutdown sends GOAWAY to the open connection.
	srv := &Server{Handler: func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}
	addr := serve(t, srv, false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := NewClientConn(c, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	resp, err := cc.RoundTrip(context.Background(), newReq("GET", "o", "/", nil, 0))
	if err != nil || resp.Status != 204 {
		t.Fatalf("first request: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for cc.CanTakeNewRequest() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if cc.CanTakeNewRequest() {
		t.Fatal("CanTakeNewRequest still true after GOAWAY")
	}
	_, err = cc.RoundTrip(context.Background(), newReq("GET", "o", "/", nil, 0))
	fe := fault.As(err)
	if !fe.Retry || !fe.Unprocessed || fe.Kind != fault.ConnectionClosed || !fe.Reused {
		t.Fatalf("after GOAWAY: got %v retry=%v kind %v reused=%v, want a retryable connection-closed error on a reused conn", err, fe.Retry, fe.Kind, fe.Reused)
	}
}

func TestClientRejectsWrongALPN(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(originHandler)) // http/1.1 only
	t.Cleanup(srv.Close)
	c, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClientConn(c, ClientOptions{})
	if fe := fault.As(err); fe.Kind != fault.TLSHandshake {
		t.Fatalf("got %v, want a TLS handshake error", err)
	}
}

func TestClientIdleTimeout(t *testing.T) {
	srv := startOrigin(t, http.HandlerFunc(originHandler), false)
	// The idle timer runs from the conn's start, before the first stream: 50 ms could pass
	// before the first request on a busy machine (under the race detector), closing the conn
	// under it. 500 ms keeps the test about the idle close.
	cc := dialOrigin(t, srv, ClientOptions{IdleTimeout: 500 * time.Millisecond})
	resp, err := cc.RoundTrip(context.Background(), newReq("GET", "o", "/", nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if st := cc.State(); st.IdleSince.IsZero() {
		t.Errorf("IdleSince: zero after the only stream ended")
	}
	deadline := time.Now().Add(20 * time.Second) // a failure guard
	for !cc.State().Closed && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !cc.State().Closed {
		t.Error("idle connection not closed after IdleTimeout")
	}
	if err := cc.Ping(context.Background()); err == nil {
		t.Error("Ping on a closed conn: got nil error")
	}
}
