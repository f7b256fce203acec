package h2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/message"
)

func TestServerEcho(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(scheme(useTLS), func(t *testing.T) {
			addr := serve(t, &Server{Handler: echoHandler}, useTLS)
			c := h2Client(t, useTLS)
			body := strings.Repeat("hello ", 1000)
			req, _ := http.NewRequest("POST", scheme(useTLS)+"://"+addr+"/p/a?q=1&r", strings.NewReader(body))
			req.Header.Add("X-One", "a")
			req.Header.Add("X-One", "b")
			req.Header.Set("Connection", "close") // dropped by the client's HTTP/2 encoder
			req.Trailer = http.Header{"X-Req-Trailer": nil}
			req.ContentLength = -1
			req.Body = &trailerSettingReader{r: strings.NewReader(body), trailer: req.Trailer, key: "X-Req-Trailer", val: "tv"}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != body {
				t.Errorf("body: got %d bytes, want %d", len(got), len(body))
			}
			checks := map[string]string{
				"X-Echo-Method":    "POST",
				"X-Echo-Target":    "/p/a?q=1&r",
				"X-Echo-Authority": addr,
				"X-Echo-Scheme":    scheme(useTLS),
				"X-Echo-Proto":     message.HTTP2,
				"X-Req-Trailer":    "x-req-trailer",
			}
			for k, want := range checks {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
			if got := strings.Join(resp.Header.Values("X-Req-X-One"), ","); got != "a,b" {
				t.Errorf("x-one values: got %q, want %q", got, "a,b")
			}
			if got := resp.Trailer.Get("X-Req-Trailer"); got != "tv" {
				t.Errorf("echoed request trailer: got %q, want %q", got, "tv")
			}
			if got := resp.Trailer.Get("X-Body-Bytes"); got != fmt.Sprint(len(body)) {
				t.Errorf("x-body-bytes trailer: got %q, want %d", got, len(body))
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("proto: got %s", resp.Proto)
			}
		})
	}
}

// trailerSettingReader sets a request trailer value when the body reaches EOF, as a client
// that computes a trailer from the body would.
type trailerSettingReader struct {
	r        io.Reader
	trailer  http.Header
	key, val string
}

func (r *trailerSettingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		r.trailer.Set(r.key, r.val)
	}
	return n, err
}

func (r *trailerSettingReader) Close() error { return nil }

func TestServerRequestFields(t *testing.T) {
	var got atomic.Pointer[message.Request]
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		r := ex.Request()
		cp := &message.Request{Method: r.Method, Target: r.Target, Scheme: r.Scheme,
			Authority: r.Authority, Proto: r.Proto, ContentLength: r.ContentLength, Header: r.Header.Clone()}
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			cp.Body = strings.NewReader("")
		}
		got.Store(cp)
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}, false)
	c := h2Client(t, false)

	resp, err := c.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := got.Load()
	if r.Body != nil || r.ContentLength != 0 {
		t.Errorf("GET: got Body %v ContentLength %d, want nil and 0", r.Body, r.ContentLength)
	}
	if r.Header.Has("host") {
		t.Error("Host must travel in Authority, not Header")
	}
	for _, f := range r.Header.Fields() {
		if f.Name != strings.ToLower(f.Name) {
			t.Errorf("field name %q is not lower case", f.Name)
		}
	}

	resp, err = c.Post("http://"+addr+"/x", "text/plain", strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := got.Load(); r.ContentLength != 3 || r.Body == nil {
		t.Errorf("POST: got ContentLength %d Body nil=%v, want 3 and a body", r.ContentLength, r.Body == nil)
	}
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte("abc")); pw.Close() }()
	resp, err = c.Post("http://"+addr+"/x", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := got.Load(); r.ContentLength != -1 || r.Body == nil {
		t.Errorf("streamed POST: got ContentLength %d, want -1", r.ContentLength)
	}
}

func TestServerResponseHeadersFiltered(t *testing.T) {
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		resp := &message.Response{Status: 200, ContentLength: 2}
		for _, kv := range [][2]string{
			{"Connection", "x-hop"}, {"X-Hop", "1"}, {"Keep-Alive", "timeout=5"},
			{"Transfer-Encoding", "chunked"}, {"Upgrade", "websocket"}, {"Proxy-Connection", "x"},
			{"TE", "gzip"}, {"X-Kept", "yes"}, {"Content-Length", "999"},
		} {
			resp.Header.Add(kv[0], kv[1])
		}
		ex.WriteHeader(resp)
		ex.Write([]byte("ok"))
		ex.Finish(nil)
	}}, false)
	resp, err := h2Client(t, false).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "Te", "Content-Type", "Date"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("%s: got %q, want it dropped", k, v)
		}
	}
	if resp.Header.Get("X-Kept") != "yes" || string(b) != "ok" || resp.ContentLength != 2 {
		t.Errorf("got X-Kept %q body %q length %d, want yes, ok, 2", resp.Header.Get("X-Kept"), b, resp.ContentLength)
	}
}

func TestServerStreamingResponse(t *testing.T) {
	release := make(chan struct{})
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Write([]byte("first"))
		ex.Flush()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
			ex.Abort(errors.New("test timed out"))
			return
		}
		ex.Write([]byte("second"))
		ex.Finish(nil)
	}}, false)
	resp, err := h2Client(t, false).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first chunk before the handler finished: got %q, %v", buf, err)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest: got %q, %v; want second", rest, err)
	}
}

func TestServerStreamingRequestBody(t *testing.T) {
	// The echo handler writes back each chunk as it reads it, so the client sees its first
	// chunk echoed while its request body is still open: both directions stream.
	for _, useTLS := range []bool{false, true} {
		t.Run(scheme(useTLS), func(t *testing.T) {
			addr := serve(t, &Server{Handler: echoHandler}, useTLS)
			pr, pw := io.Pipe()
			req, _ := http.NewRequest("POST", scheme(useTLS)+"://"+addr+"/", pr)
			done := make(chan struct{})
			go func() {
				defer close(done)
				pw.Write([]byte("ping1"))
			}()
			resp, err := h2Client(t, useTLS).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "ping1" {
				t.Fatalf("echo of first chunk: got %q, %v", buf, err)
			}
			<-done
			pw.Write([]byte("ping2"))
			pw.Close()
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "ping2" {
				t.Fatalf("rest: got %q, %v; want ping2", rest, err)
			}
			if got := resp.Trailer.Get("X-Body-Bytes"); got != "10" {
				t.Errorf("x-body-bytes: got %q, want 10", got)
			}
		})
	}
}

func TestServerAbortResetsStream(t *testing.T) {
	aborted := make(chan struct{})
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 100})
		ex.Write([]byte("partial"))
		ex.Flush()
		ex.Abort(errors.New("upstream went away"))
		if _, err := ex.Write([]byte("more")); err == nil {
			t.Error("Write after Abort: got nil error")
		}
		close(aborted)
	}}, false)
	resp, err := h2Client(t, false).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeInternal {
		t.Fatalf("got body %q err %v, want a stream reset with INTERNAL_ERROR", b, err)
	}
	<-aborted
}

func TestServerUnfinishedAndPanickingHandlersReset(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	srv := &Server{
		Logger: slogTo(&mu, &logs),
		Handler: func(ex message.ServerExchange) {
			switch ex.Request().Path() {
			case "/panic":
				ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
				ex.Flush()
				panic("boom")
			case "/unfinished":
				ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
				ex.Write([]byte("x"))
				ex.Flush()
			default:
				ex.WriteHeader(&message.Response{Status: 200, ContentLength: 2})
				ex.Write([]byte("ok"))
				ex.Finish(nil)
			}
		},
	}
	addr := serve(t, srv, false)
	c := h2Client(t, false)
	for _, path := range []string{"/panic", "/unfinished"} {
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		var se http2.StreamError
		if !errors.As(err, &se) {
			t.Errorf("%s: got %v, want a stream reset", path, err)
		}
	}
	// The connection survives: another request on it succeeds.
	resp, err := c.Get("http://" + addr + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("after resets: got %q, want ok", b)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged; log: %s", logs.String())
	}
}

func TestServerConcurrentStreams(t *testing.T) {
	const n = 40
	var inFlight, peak atomic.Int32
	all := make(chan struct{})
	var once sync.Once
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		if ex.Request().Target == "/warm" {
			ex.WriteHeader(&message.Response{Status: 204})
			ex.Finish(nil)
			return
		}
		cur := inFlight.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		if cur == n {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
		case <-time.After(5 * time.Second):
		}
		inFlight.Add(-1)
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 2})
		ex.Write([]byte("ok"))
		ex.Finish(nil)
	}}, true)
	c := h2Client(t, true)
	// Warm up so all requests share one connection.
	if resp, err := c.Get("https://" + addr + "/warm"); err == nil {
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("https://" + addr + "/")
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := peak.Load(); got != n {
		t.Errorf("peak concurrent handlers: got %d, want %d", got, n)
	}
}

func TestServerInterimAndHead(t *testing.T) {
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		var early message.Response
		early.Status = 103
		early.Header.Add("Link", "</s.css>; rel=preload")
		if err := ex.WriteHeader(&early); err != nil {
			t.Errorf("103: %v", err)
		}
		if err := ex.WriteHeader(&message.Response{Status: 101}); err == nil {
			t.Error("101: got nil error, want one")
		}
		if _, err := ex.Write([]byte("x")); err == nil {
			t.Error("Write before the final head: got nil error")
		}
		resp := &message.Response{Status: 200, ContentLength: 1234}
		ex.WriteHeader(resp)
		if err := ex.WriteHeader(resp); err == nil {
			t.Error("second final head: got nil error")
		}
		ex.Finish(nil)
	}}, false)
	req, _ := http.NewRequest("HEAD", "http://"+addr+"/", nil)
	resp, err := h2Client(t, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 1234 || resp.Header.Get("Link") != "" {
		t.Errorf("got %d length %d link %q; want 200, 1234 and no Link on the final head",
			resp.StatusCode, resp.ContentLength, resp.Header.Get("Link"))
	}
}

func TestServerShutdownIsGraceful(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	srv := &Server{Handler: func(ex message.ServerExchange) {
		close(started)
		<-release
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 4})
		ex.Write([]byte("done"))
		ex.Finish(nil)
	}}
	addr := serve(t, srv, false)
	c := h2Client(t, false)
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-started
	shut := shutdownAsync(srv, 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	close(release)
	if r := <-res; r.err != nil || r.body != "done" {
		t.Errorf("in-flight request: got %q, %v; want done", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestServerNilHandler(t *testing.T) {
	addr := serve(t, &Server{}, false)
	resp, err := h2Client(t, false).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("status: got %d, want 404", resp.StatusCode)
	}
}

func TestServerContextCanceledOnReset(t *testing.T) {
	done := make(chan error, 1)
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		ctx := ex.(interface{ Context() context.Context }).Context()
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Flush()
		select {
		case <-ctx.Done():
			done <- nil
		case <-time.After(5 * time.Second):
			done <- errors.New("context not canceled after client reset")
		}
		ex.Abort(ctx.Err())
	}}, false)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	resp, err := h2Client(t, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
