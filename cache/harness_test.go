package cache

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/upstream"
)

// originResp is what the test origin answers.
type originResp struct {
	status int
	header []string // name, value pairs
	body   string
	delay  time.Duration
	err    error
}

// origin is an in-process origin that counts its requests.
type origin struct {
	mu      sync.Mutex
	n       atomic.Int64
	handler func(req *message.Request) originResp
	last    message.Header
}

func (o *origin) RoundTrip(ctx context.Context, _ *upstream.Peer, req *message.Request) (*message.Response, error) {
	o.n.Add(1)
	o.mu.Lock()
	o.last = req.Header.Clone()
	o.mu.Unlock()
	r := o.handler(req)
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	if r.err != nil {
		return nil, r.err
	}
	resp := &message.Response{Status: r.status, Proto: message.HTTP11, ContentLength: int64(len(r.body))}
	for i := 0; i+1 < len(r.header); i += 2 {
		resp.Header.Add(r.header[i], r.header[i+1])
	}
	if r.status != 304 && req.Method != "HEAD" {
		resp.Body = io.NopCloser(strings.NewReader(r.body))
	} else {
		resp.ContentLength = 0
	}
	return resp, nil
}

func (o *origin) lastHeader(name string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last.Get(name)
}

// recExchange records what the engine sends.
type recExchange struct {
	req    message.Request
	info   message.ConnInfo
	status int
	header message.Header
	cl     int64
	body   bytes.Buffer
	abort  error
	wrote  chan struct{} // when set, gets a token (never blocking) on each Write
}

func (e *recExchange) Request() *message.Request { return &e.req }
func (e *recExchange) Context() context.Context  { return context.Background() }
func (e *recExchange) Conn() *message.ConnInfo   { return &e.info }
func (e *recExchange) WriteHeader(r *message.Response) error {
	e.status, e.cl, e.header = r.Status, r.ContentLength, r.Header.Clone()
	return nil
}
func (e *recExchange) Write(p []byte) (int, error) {
	n, err := e.body.Write(p)
	if e.wrote != nil {
		select {
		case e.wrote <- struct{}{}:
		default:
		}
	}
	return n, err
}
func (e *recExchange) Flush() error                 { return nil }
func (e *recExchange) Finish(*message.Header) error { return nil }
func (e *recExchange) Abort(err error)              { e.abort = err }

type testPhases struct{ proxy.Base[struct{}] }

var testPeer = &upstream.Peer{Address: "127.0.0.1:1"}

func (testPhases) UpstreamPeer(*proxy.Session, *struct{}) (*upstream.Peer, error) {
	return testPeer, nil
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	c     *Cache
	o     *origin
	p     *proxy.Proxy[struct{}]
	clock *clock
}

func newEnv(t *testing.T, opts Options, h func(req *message.Request) originResp) *env {
	t.Helper()
	ck := &clock{t: clockStart}
	if opts.Now == nil {
		opts.Now = ck.Now
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	o := &origin{handler: h}
	p := &proxy.Proxy[struct{}]{Phases: testPhases{}, Transport: o, Cache: c, NoVia: true}
	return &env{t: t, c: c, o: o, p: p, clock: ck}
}

// do sends one request through the engine; hdr are name, value pairs.
func (e *env) do(method, target string, hdr ...string) *recExchange {
	return e.doEx(&recExchange{}, method, target, hdr...)
}

// doEx is do with an exchange the caller made (to watch its writes).
func (e *env) doEx(ex *recExchange, method, target string, hdr ...string) *recExchange {
	ex.req = message.Request{Method: method, Target: target, Scheme: "http", Authority: "example.test", Proto: message.HTTP11}
	for i := 0; i+1 < len(hdr); i += 2 {
		ex.req.Header.Add(hdr[i], hdr[i+1])
	}
	ex.info = message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:5000"), Proto: message.HTTP11}
	e.p.ServeExchange(ex)
	return ex
}

func (e *env) hits() int64 { return e.o.n.Load() }

// expect checks status, body and origin request count.
func (e *env) expect(ex *recExchange, status int, body string, originCount int64) {
	e.t.Helper()
	if ex.status != status {
		e.t.Fatalf("status %d, want %d (Cache-Status %q)", ex.status, status, ex.header.Get("Cache-Status"))
	}
	if ex.body.String() != body {
		e.t.Fatalf("body %q, want %q", ex.body.String(), body)
	}
	if got := e.hits(); got != originCount {
		e.t.Fatalf("origin saw %d requests, want %d (Cache-Status %q)", got, originCount, ex.header.Get("Cache-Status"))
	}
}

// expectCached checks, after two requests for one URL, whether the second came from the
// cache (the origin saw one request) or not (two). what names the case; ex is the second
// answer, whose Cache-Status the message shows.
func (e *env) expectCached(ex *recExchange, cached bool, what string) {
	e.t.Helper()
	want := int64(2)
	if cached {
		want = 1
	}
	if got := e.hits(); got != want {
		e.t.Errorf("%s: origin saw %d requests, want %d (%s)", what, got, want, cacheStatus(ex))
	}
}

func cacheStatus(ex *recExchange) string {
	var all []string
	ex.header.Values("Cache-Status", func(v string) bool { all = append(all, v); return true })
	return strings.Join(all, ", ")
}

func httpDate(t time.Time) string { return t.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT") }

// streamOrigin answers with a body the test controls, length unknown.
type streamOrigin struct {
	n    atomic.Int64
	body io.ReadCloser
}

func (o *streamOrigin) RoundTrip(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
	o.n.Add(1)
	r := &message.Response{Status: 200, Proto: message.HTTP11, ContentLength: -1, Body: o.body}
	r.Header.Add("Cache-Control", "max-age=100")
	return r, nil
}

// clockStart is the test clock's initial time.
var clockStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
