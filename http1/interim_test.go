package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// interimHandler sends 103 (with a Link and connection fields that must not go out), a 100,
// a second 100 that must be dropped, a 102, and the final response; it checks the errors.
func interimHandler(t *testing.T) func(ex *Exchange) {
	return func(ex *Exchange) {
		var h message.Header
		h.Add("Link", "</a.css>; rel=preload")
		h.Add("Connection", "close")
		h.Add("Keep-Alive", "timeout=5")
		h.Add("Content-Length", "12")
		for _, st := range []int{103, 100, 100, 102} {
			if err := ex.WriteInterim(st, &h); err != nil {
				t.Errorf("WriteInterim(%d): %v", st, err)
			}
			h.Reset()
		}
		for _, st := range []int{101, 99, 200} {
			if err := ex.WriteInterim(st, nil); err == nil {
				t.Errorf("WriteInterim(%d) succeeded", st)
			}
		}
		// The request body read after a 100 went out sends no second one.
		if ex.Request().Body != nil {
			io.ReadAll(ex.Request().Body)
		}
		resp := &message.Response{Status: 200, ContentLength: 2}
		ex.WriteHeader(resp)
		if err := ex.WriteInterim(103, nil); !errors.Is(err, ErrHeadWritten) {
			t.Errorf("WriteInterim after the final head: %v, want ErrHeadWritten", err)
		}
		ex.Write([]byte("ok"))
		ex.Finish(nil)
	}
}

func TestWriteInterim(t *testing.T) {
	addr := startServer(t, &Server{Handler: interimHandler(t)})
	c := dial(t, addr)
	c.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"))
	br := bufio.NewReader(c)
	var got strings.Builder
	for range 3 {
		head, err := readRequestHead(br) // reads any head up to its empty line
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString(head)
	}
	want := "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
		"HTTP/1.1 100 Continue\r\n\r\n" +
		"HTTP/1.1 102 Processing\r\n\r\n"
	if got.String() != want {
		t.Fatalf("interim heads\n%q\nwant\n%q", got.String(), want)
	}
	r := readRawResponse(t, br, false)
	if r.status != 200 || r.body != "ok" {
		t.Fatalf("final %d %q", r.status, r.body)
	}
}

// RFC 9110 section 15.2: nothing informational goes to an HTTP/1.0 client, and WriteInterim
// says so by succeeding without sending.
func TestWriteInterimHTTP10(t *testing.T) {
	addr := startServer(t, &Server{Handler: interimHandler(t)})
	c := dial(t, addr)
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	out, _ := readAllUntilClose(c, 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || strings.Contains(out, " 10") {
		t.Fatalf("HTTP/1.0 client got %q", out)
	}
}

// The client hands each interim response to Request.Interim in order, with its fields; a 101
// is final; interim heads count against MaxHeaderBytes together with the final head; an
// error from the callback fails the round trip.
func TestClientInterimCallback(t *testing.T) {
	const heads = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nLink: </b>\r\n\r\n" +
		"HTTP/1.1 102 Processing\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	t.Run("order", func(t *testing.T) {
		addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
			readRequestHead(br)
			c.Write([]byte(heads))
			readRequestHead(br)
		})
		cc := newClient(t, addr, nil)
		req := get("GET", "/")
		var got []string
		req.Interim = func(status int, h *message.Header) error {
			s := message.StatusText(status)
			for _, f := range h.Fields() {
				s += "|" + f.Name + "=" + f.Value
			}
			got = append(got, s)
			return nil
		}
		resp, err := cc.RoundTrip(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(t, resp); resp.Status != 200 || body != "ok" || resp.Header.Len() != 0 {
			t.Fatalf("final %d %q %v", resp.Status, body, resp.Header.Fields())
		}
		want := []string{"Early Hints|Link=</a>|Link=</b>", "Processing"}
		if strings.Join(got, ";") != strings.Join(want, ";") {
			t.Fatalf("interim %q, want %q", got, want)
		}
	})
	t.Run("callback error", func(t *testing.T) {
		addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
			readRequestHead(br)
			c.Write([]byte(heads))
		})
		cc := newClient(t, addr, nil)
		req := get("GET", "/")
		boom := errors.New("boom")
		req.Interim = func(int, *message.Header) error { return boom }
		_, err := cc.RoundTrip(context.Background(), req)
		if !errors.Is(err, boom) || cc.Reusable() {
			t.Fatalf("error %v reusable %v, want boom and a closed connection", err, cc.Reusable())
		}
	})
	t.Run("size budget", func(t *testing.T) {
		big := "HTTP/1.1 103 Early Hints\r\nLink: </" + strings.Repeat("x", 600) + ">\r\n\r\n"
		addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
			readRequestHead(br)
			c.Write([]byte(big + big + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// Each head fits 1 KiB; two of them and the final one do not.
		cc := NewClientConn(c, ClientOptions{MaxHeaderBytes: 1024})
		defer cc.Close()
		n := 0
		req := get("GET", "/")
		req.Interim = func(int, *message.Header) error { n++; return nil }
		_, err = cc.RoundTrip(context.Background(), req)
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Kind != fault.InvalidResponse || n != 1 {
			t.Fatalf("error %v after %d interim, want an invalid response after 1", err, n)
		}
	})
}

// FuzzResponseCodings checks the split of a response's Transfer-Encoding that names codings
// other than chunked: what is passed on is a non-empty, valid field value without a final
// chunked when chunked delimits the body, so the downstream writer's "<codings>, chunked"
// never applies chunked twice in a row.
func FuzzResponseCodings(f *testing.F) {
	for _, s := range []string{"gzip", "gzip, chunked", "chunked, gzip", "x;q=1 ,\tchunked", "a,b , Chunked"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if !validFieldValueString(string(v)) {
			return
		}
		_, err := parseTransferEncoding(v)
		if err != errUnknownTE && err != errChunkedNotLast {
			return
		}
		codings, chunkedLast := responseCodings(v)
		c := string(codings)
		if c == "" || !validFieldValueString(c) || c != message.TrimOWS(c) {
			t.Fatalf("%q: codings %q", v, c)
		}
		if chunkedLast {
			last := c
			if i := strings.LastIndexByte(c, ','); i >= 0 {
				last = c[i+1:]
			}
			if message.EqualFold(message.TrimOWS(last), "chunked") {
				t.Fatalf("%q: codings %q still end with chunked", v, c)
			}
		}
	})
}

func TestResponseCodings(t *testing.T) {
	for _, tc := range []struct {
		in, codings string
		chunked     bool
	}{
		{"gzip", "gzip", false},
		{"gzip, chunked", "gzip", true},
		{"gzip , Chunked ", "gzip", true},
		{"br, gzip,chunked", "br, gzip", true},
		{"chunked, gzip", "chunked, gzip", false},
	} {
		c, ch := responseCodings([]byte(tc.in))
		if string(c) != tc.codings || ch != tc.chunked {
			t.Errorf("responseCodings(%q) = %q, %v; want %q, %v", tc.in, c, ch, tc.codings, tc.chunked)
		}
	}
}

// interimDeadlineConn records the write deadlines set on it.
type interimDeadlineConn struct {
	net.Conn
	mu  sync.Mutex
	wdl []time.Time
}

func (c *interimDeadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = append(c.wdl, t)
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *interimDeadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = append(c.wdl, t)
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// An interim head is written under interimWriteTimeout, not the server's longer write
// timeout (the relay may run on a reader other requests share); the final response gets the
// server's timeout again.
func TestWriteInterimShortWriteDeadline(t *testing.T) {
	srvSide, cliSide := net.Pipe()
	dc := &interimDeadlineConn{Conn: srvSide}
	var marks []int
	s := &Server{WriteTimeout: time.Hour, Handler: func(ex *Exchange) {
		dc.mu.Lock()
		marks = append(marks, len(dc.wdl))
		dc.mu.Unlock()
		ex.WriteInterim(103, nil)
		dc.mu.Lock()
		marks = append(marks, len(dc.wdl))
		dc.mu.Unlock()
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}
	done := make(chan struct{})
	go func() { defer close(done); s.ServeConn(context.Background(), dc, nil) }()
	cliSide.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(cliSide, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	out, _ := io.ReadAll(cliSide)
	<-done
	if !strings.HasPrefix(string(out), "HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 204 No Content\r\n") {
		t.Fatalf("got %q", out)
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	interim := dc.wdl[marks[0]:marks[1]]
	if len(interim) != 1 || time.Until(interim[0]) > interimWriteTimeout {
		t.Fatalf("deadlines set for the interim write: %v, want one within %v", interim, interimWriteTimeout)
	}
	final := dc.wdl[marks[1]:]
	if len(final) == 0 || time.Until(final[0]) < 30*time.Minute {
		t.Fatalf("deadlines set for the final response: %v, want the hour-long write timeout", final)
	}
}
