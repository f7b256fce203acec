package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// fakeCodecs hold a minimal HTTP/1.1 client codec honouring the http1 contract, used to test
// the pool and transport on their own.
var fakeCodecs = codecFactory{
	http1: func(c net.Conn, o *codecOptions, release func(bool)) codec {
		return &fakeH1{c: c, br: bufio.NewReader(c), o: o, release: release}
	},
}

// fakeH1 speaks just enough HTTP/1.1: Content-Length framed responses, bodiless requests or
// Content-Length request bodies, and 101 upgrades.
type fakeH1 struct {
	c       net.Conn
	br      *bufio.Reader
	o       *codecOptions
	release func(bool)
	uses    int
}

func (f *fakeH1) fail(reused, retry bool, err error) error {
	f.release(false)
	fe := fault.Classify(fault.Upstream, err)
	fe.Retry = reused && retry
	return fe
}

func (f *fakeH1) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	f.uses++
	reused := f.uses > 1
	if f.o.WriteTimeout > 0 {
		f.c.SetWriteDeadline(time.Now().Add(f.o.WriteTimeout))
	}
	var buf []byte
	buf = append(buf, req.Method...)
	buf = append(buf, ' ')
	buf = append(buf, req.Target...)
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, req.Authority...)
	buf = append(buf, "\r\n"...)
	for _, fl := range req.Header.Fields() {
		buf = append(buf, fl.Name...)
		buf = append(buf, ": "...)
		buf = append(buf, fl.Value...)
		buf = append(buf, "\r\n"...)
	}
	if req.Body != nil {
		buf = append(buf, "Content-Length: "...)
		buf = strconv.AppendInt(buf, req.ContentLength, 10)
		buf = append(buf, "\r\n"...)
	}
	buf = append(buf, "\r\n"...)
	if _, err := f.c.Write(buf); err != nil {
		return nil, f.fail(reused, true, err)
	}
	if req.Body != nil {
		if _, err := io.Copy(f.c, req.Body); err != nil {
			return nil, f.fail(reused, false, err)
		}
	}
	if f.o.ReadTimeout > 0 {
		f.c.SetReadDeadline(time.Now().Add(f.o.ReadTimeout))
	}
	if _, err := f.br.Peek(1); err != nil {
		return nil, f.fail(reused, true, err)
	}
	hr, err := http.ReadResponse(f.br, nil)
	if err != nil {
		return nil, f.fail(reused, false, err)
	}
	resp := &message.Response{}
	resp.Status = hr.StatusCode
	resp.Proto = message.HTTP11
	for name, vs := range hr.Header {
		for _, v := range vs {
			resp.Header.Add(name, v)
		}
	}
	if hr.StatusCode == 101 {
		resp.Body = &fakeUpgraded{c: f.c, br: f.br}
		return resp, nil
	}
	resp.ContentLength = hr.ContentLength
	if hr.ContentLength == 0 || req.Method == "HEAD" {
		f.release(!hr.Close)
		return resp, nil
	}
	resp.Body = &fakeBody{f: f, r: hr.Body, close: hr.Close}
	return resp, nil
}

func (f *fakeH1) Close() error { return f.c.Close() }

type fakeBody struct {
	f     *fakeH1
	r     io.ReadCloser
	close bool
	done  bool
}

func (b *fakeBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.done = true
		b.f.release(!b.close)
	} else if err != nil {
		b.done = true
		b.f.release(false)
		err = fault.Classify(fault.Upstream, err)
	}
	return n, err
}

func (b *fakeBody) Close() error {
	if !b.done {
		b.done = true
		b.f.release(false)
	}
	return nil
}

type fakeUpgraded struct {
	c  net.Conn
	br *bufio.Reader
}

func (u *fakeUpgraded) Read(p []byte) (int, error)  { return u.br.Read(p) }
func (u *fakeUpgraded) Write(p []byte) (int, error) { return u.c.Write(p) }
func (u *fakeUpgraded) Close() error                { return u.c.Close() }

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *countingListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// closeAccepted closes every connection the listener accepted (an origin dropping idle conns).
func (l *countingListener) closeAccepted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

var errTest = errors.New("test")

func must(err error) {
	if err != nil {
		panic(fmt.Sprint(err))
	}
}

// testCodecs are the codecs the tests drive.
var testCodecs = codecFactory{http1: fakeCodecs.http1, http2: newH2Codec}
