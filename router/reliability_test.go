package router

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testnet"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recMetrics records ObserveRequest calls as "route proto status".
type recMetrics struct {
	nopMetrics
	mu   sync.Mutex
	reqs []string
}

func (m *recMetrics) ObserveRequest(route, proto string, status int, _ time.Duration) {
	m.mu.Lock()
	m.reqs = append(m.reqs, fmt.Sprintf("%s %s %d", route, proto, status))
	m.mu.Unlock()
}

func (m *recMetrics) has(s string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.reqs {
		if r == s {
			return true
		}
	}
	return false
}

// observed is a runtime whose error log, access log and metrics a test reads.
type observed struct {
	rt      *Runtime
	base    string
	errLog  *syncBuffer
	access  *syncBuffer
	metrics *recMetrics
}

func startObserved(t *testing.T, y string) *observed {
	t.Helper()
	o := &observed{errLog: &syncBuffer{}, access: &syncBuffer{}, metrics: &recMetrics{}}
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	o.rt = NewRuntime(Options{Deps: Deps{
		Transport:       tr,
		Store:           lb.NewStateStore(),
		Logger:          slog.New(slog.NewTextHandler(o.errLog, nil)),
		Metrics:         o.metrics,
		AccessLogWriter: o.access,
	}})
	if err := o.rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.rt.Close() })
	o.base = "http://" + o.rt.Addr("main").String()
	return o
}

// accessLog flushes the current generation's access log and returns what it wrote.
func (o *observed) accessLog(t *testing.T) string {
	t.Helper()
	if err := o.rt.Current().access.Flush(); err != nil {
		t.Fatal(err)
	}
	return o.access.String()
}

// eventually waits until cond holds: the Logging phase runs after the response reached the
// client, so its log lines and metrics may trail the answer a little.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// send sends one request and returns the status and body.
func send(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// restartableOrigin is an HTTP origin on a fixed loopback port that a test can stop and start
// again on the same port. GET /close closes the connection without answering.
type restartableOrigin struct {
	t    *testing.T
	addr string
	srv  *http.Server
}

func newRestartableOrigin(t *testing.T) *restartableOrigin {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &restartableOrigin{t: t, addr: ln.Addr().String()}
	o.serve(ln)
	t.Cleanup(func() { o.srv.Close() })
	return o
}

func (o *restartableOrigin) serve(ln net.Listener) {
	o.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		io.WriteString(w, "up")
	})}
	go o.srv.Serve(ln)
}

func (o *restartableOrigin) stop() { o.srv.Close() }

func (o *restartableOrigin) start() {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		o.t.Fatalf("reopening the origin on %s: %v", o.addr, err)
	}
	o.serve(ln)
}

// A group of one server keeps answering through origin failures: only the requests sent
// while the origin fails fail, and the first one after it is back succeeds (issue 12: passive
// ejection took the only server out and every request got 503 for 10 s, where NGINX answers
// 200 as soon as the origin is back).
func TestSingleServerGroupSurvivesOriginRestart(t *testing.T) {
	origin := newRestartableOrigin(t)
	o := startObserved(t, runtimeConfig("", origin.addr)) // default passive settings
	c := &http.Client{Timeout: 10 * time.Second}
	if st, body := send(t, c, "GET", o.base+"/"); st != 200 || body != "up" {
		t.Fatalf("before: got %d %q", st, body)
	}

	// The origin closes connections without answering.
	for i := range 2 * 3 {
		if st, _ := send(t, c, "GET", o.base+"/close"); st != 502 {
			t.Fatalf("closed connection %d: got %d, want 502", i, st)
		}
	}
	if st, body := send(t, c, "GET", o.base+"/"); st != 200 || body != "up" {
		t.Fatalf("after closed connections: got %d %q, want 200 at once", st, body)
	}

	// The origin restarts.
	origin.stop()
	for i := range 2 * 3 {
		if st, _ := send(t, c, "GET", o.base+"/"); st != 502 {
			t.Fatalf("origin down, request %d: got %d, want 502", i, st)
		}
	}
	origin.start()
	if st, body := send(t, c, "GET", o.base+"/"); st != 200 || body != "up" {
		t.Fatalf("origin back: got %d %q, want 200 at once", st, body)
	}
	if st := o.rt.Current().Balancer("app").Backend(origin.addr).Status(); st.Ejected || st.Fails == 0 {
		t.Fatalf("got %+v, want failures counted and the only server never ejected", st)
	}
}

// postCountingOrigin answers GETs and POSTs with 200, keeping the connection open, except a
// POST arriving on a connection that already served a request: it counts it and closes the
// connection without answering, as an origin whose keep-alive timer fired just then would.
func postCountingOrigin(t *testing.T) (addr string, posts *atomic.Int64) {
	posts = new(atomic.Int64)
	addr = loopbackOrigin(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			cl := 0
			for {
				h, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if h == "\r\n" {
					break
				}
				if name, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(name, "Content-Length") {
					cl, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			if _, err := io.CopyN(io.Discard, br, int64(cl)); err != nil {
				return
			}
			if strings.HasPrefix(line, "POST ") {
				posts.Add(1)
				if i > 0 {
					return
				}
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return addr, posts
}

// A body-less POST that fails on a reused upstream connection after it was sent is not sent
// again (RFC 9112 section 9.3.1; issue 12: the origin counted it twice, attempts=2).
func TestPostNotRetriedOnReusedConnection(t *testing.T) {
	addr, posts := postCountingOrigin(t)
	o := startObserved(t, runtimeConfig("", addr))
	c := &http.Client{Timeout: 10 * time.Second}
	if st, _ := send(t, c, "GET", o.base+"/"); st != 200 {
		t.Fatalf("GET: got %d", st)
	}
	// The upstream connection that served the GET is idle in the pool: the POST reuses it.
	if st, _ := send(t, c, "POST", o.base+"/"); st != 502 {
		t.Fatalf("POST: got %d, want 502", st)
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("origin received the POST %d times, want 1", n)
	}
	var log string
	eventually(t, "the POST's access-log line", func() bool {
		log = o.accessLog(t)
		return strings.Contains(log, `"method":"POST"`)
	})
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"method":"POST"`) && (!strings.Contains(l, `"attempts":1,`) || !strings.Contains(l, `"status":502,`)) {
			t.Fatalf("access log line %q: want the POST answered 502 after one attempt", l)
		}
	}

	// An idempotent request is still retried on a new connection after the same failure.
	if st, _ := send(t, c, "GET", o.base+"/"); st != 200 {
		t.Fatalf("GET after: got %d", st)
	}
}

// Requests the HTTP/1 codec rejects are counted and logged like others, with the reason in
// the body and its length as bytes_sent (issue 12: verge_connections_total 13 against
// verge_requests_total 4).
func TestParserRejectionsCountedAndLogged(t *testing.T) {
	o := startObserved(t, runtimeConfig("fixed"))
	addr := o.rt.Addr("main").String()
	tests := []struct {
		req    string
		status int
		reason string
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 40<<10) + "\r\n\r\n", 431, "request head too large"},
		{"GET /" + strings.Repeat("a", 10<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, "request line too long"},
		{"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400, "invalid header field name"},
		{"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"},
	}
	bodies := make([]int, len(tests))
	for i, tt := range tests {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { c.Write([]byte(tt.req)) }()
		b, _ := io.ReadAll(c)
		c.Close()
		if want := fmt.Sprintf("HTTP/1.1 %d ", tt.status); !strings.HasPrefix(string(b), want) || !strings.Contains(string(b), tt.reason) {
			t.Fatalf("got %q, want %q... with the reason %q in the body", b, want, tt.reason)
		}
		_, body, _ := strings.Cut(string(b), "\r\n\r\n")
		bodies[i] = len(body)
		// OnReject runs before the connection closes, so the count is there once the client
		// read to the end.
		if m := fmt.Sprintf("none HTTP/1.1 %d", tt.status); !o.metrics.has(m) {
			t.Errorf("metrics: no request observed as %q", m)
		}
	}
	log := o.accessLog(t)
	for i, tt := range tests {
		line := ""
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, fmt.Sprintf(`"status":%d,`, tt.status)) {
				line = l
			}
		}
		if !strings.Contains(line, `"route":"none"`) || !strings.Contains(line, tt.reason) || !strings.Contains(line, `"remote_addr":"127.0.0.1:`) {
			t.Errorf("access log has no line for the %d with route none, client and reason: %q", tt.status, log)
		}
		// bytes_sent counts the body with the reason, as for any other response.
		if want := fmt.Sprintf(`"bytes_sent":%d,`, bodies[i]); !strings.Contains(line, want) {
			t.Errorf("access log line %q: want %s", line, want)
		}
	}
}

// A reload that disables passive checks ends the ejections it carries over (issue 12: an
// ejection survived a SIGHUP setting passive.max_fails: -1).
func TestReloadDisablingPassiveClearsEjection(t *testing.T) {
	live := origin(t, "live")
	dead := testnet.RefusedAddr(t)
	y := runtimeConfig("", "http://"+dead, live.URL)
	rt, base := startRuntime(t, y+"    passive: {max_fails: 1, fail_timeout: 1h}\n")
	for i := range 4 {
		if got, err := get(http.DefaultClient, base+"/"); err != nil || got != "live" {
			t.Fatalf("request %d: got %q, %v", i, got, err)
		}
	}
	if st := rt.Current().Balancer("app").Backend(dead).Status(); !st.Ejected {
		t.Fatalf("got %+v, want the dead server ejected", st)
	}
	if err := rt.Apply(mustConfig(t, y+"    passive: {max_fails: -1}\n")); err != nil {
		t.Fatal(err)
	}
	b := rt.Current().Balancer("app").Backend(dead)
	if st := b.Status(); st.Ejected || !b.Available() {
		t.Fatalf("after the reload: got %+v, want the ejection cleared", st)
	}
}

// 502 and 504 answers leave a line in the error log, not only the access log's error field.
func TestUpstreamFailuresInErrorLog(t *testing.T) {
	// An origin that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	stop := make(chan struct{})
	held.Add(1)
	go func() {
		defer held.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				<-stop
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); close(stop); held.Wait() })

	y := `listeners: [{name: main, address: "127.0.0.1:0", trusted_proxies: [127.0.0.1]}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: refused
    match: {path_prefix: /refused}
    upstream: dead
    retries: 0
  - name: slow
    match: {path_prefix: /slow}
    upstream: silent
    timeouts: {read: 100ms}
upstreams:
  - name: dead
    servers: [{address: "` + testnet.RefusedAddr(t) + `"}]
  - name: silent
    servers: [{address: "` + ln.Addr().String() + `"}]
`
	o := startObserved(t, y)
	c := &http.Client{Timeout: 10 * time.Second}
	// The peer is a trusted proxy: the line names the client it forwarded, as the access log
	// does.
	req, err := http.NewRequest("GET", o.base+"/refused", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("got %d, want 502", resp.StatusCode)
	}
	if st, _ := send(t, c, "GET", o.base+"/slow"); st != 504 {
		t.Fatalf("got %d, want 504", st)
	}
	for _, want := range []string{
		"level=ERROR msg=\"upstream request failed\" status=502 route=refused method=GET",
		"client=198.51.100.7 ",
		"level=ERROR msg=\"upstream request failed\" status=504 route=slow method=GET",
	} {
		eventually(t, "an error-log line with "+want, func() bool { return strings.Contains(o.errLog.String(), want) })
	}
}

// A client that stops reading is a downstream write timeout in the access log (issue 12: it
// was logged as a read timeout).
func TestStalledClientWriteLoggedAsWriteTimeout(t *testing.T) {
	chunk := make([]byte, 64<<10)
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range (256 << 20) / len(chunk) { // far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(big.Close)
	y := strings.Replace(runtimeConfig("", big.URL),
		`listeners: [{name: main, address: "127.0.0.1:0"}]`,
		`listeners: [{name: main, address: "127.0.0.1:0", timeouts: {write: 200ms}}]`, 1)
	o := startObserved(t, y)
	c, err := net.Dial("tcp", o.rt.Addr("main").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read nothing: the server's writes stall once the socket buffers are full. Wait for the
	// access-log line the failed request leaves.
	deadline := time.Now().Add(20 * time.Second)
	for {
		log := o.accessLog(t)
		if strings.Contains(log, `"path":"/big"`) {
			if !strings.Contains(log, "downstream write timeout") {
				t.Fatalf("access log %q: want a downstream write timeout", log)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access-log line for the stalled request: %q", log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
