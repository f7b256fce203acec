package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/h3"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

// rawOrigin accepts connections on loopback and runs serve for each request head read from
// them, until serve reports the connection is done or the peer closes it.
func rawOrigin(t *testing.T, serve func(c net.Conn, br *bufio.Reader, head string) (more bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				for {
					head, err := readHead(br)
					if err != nil || !serve(c, br, head) {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// readHead reads one message head up to and including its empty line.
func readHead(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		l, err := br.ReadString('\n')
		sb.WriteString(l)
		if err != nil {
			return sb.String(), err
		}
		if l == "\r\n" {
			return sb.String(), nil
		}
	}
}

// interimHeads is what the interim origin sends before its final response: 103 Early Hints
// with a Link and a hop-by-hop field, 100 Continue and 102 Processing.
const interimHeads = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n" +
	"Connection: X-Hop\r\nX-Hop: secret\r\n\r\n" +
	"HTTP/1.1 100 Continue\r\n\r\n" +
	"HTTP/1.1 102 Processing\r\n\r\n"

const interimFinal = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nfinal body!"

// interimOrigin answers every request with interimHeads and then interimFinal, keeping the
// connection open.
func interimOrigin(t *testing.T) *upstream.Peer {
	addr := rawOrigin(t, func(c net.Conn, _ *bufio.Reader, _ string) bool {
		_, err := io.WriteString(c, interimHeads+interimFinal)
		return err == nil
	})
	return &upstream.Peer{Address: addr}
}

// startVergeWith starts Verge on loopback with phases, over plain TCP.
func startVergeWith(t *testing.T, phases proxy.Phases[struct{}]) string {
	t.Helper()
	tr := &upstream.Transport{}
	p := &proxy.Proxy[struct{}]{Phases: phases, Transport: tr}
	srv := &server.Server{Handler: p}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		tr.Close()
	})
	return ln.Addr().String()
}

// h1Head is one response head as a raw HTTP/1.1 client read it.
type h1Head struct {
	status int
	header textproto.MIMEHeader
}

// readInterims sends request on a new connection to addr and reads informational heads until
// the final response, which it returns with its body read.
func readInterims(t *testing.T, addr, request string) ([]h1Head, *http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	return readUntilFinal(t, br)
}

func readUntilFinal(t *testing.T, br *bufio.Reader) ([]h1Head, *http.Response, []byte) {
	t.Helper()
	var heads []h1Head
	for {
		line, err := br.Peek(12)
		if err != nil {
			t.Fatalf("reading a status line: %v", err)
		}
		if line[9] != '1' || string(line[9:12]) == "101" {
			break
		}
		tp := textproto.NewReader(br)
		status, err := tp.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatal(err)
		}
		var code int
		fmt.Sscanf(status, "HTTP/1.1 %d", &code)
		heads = append(heads, h1Head{code, h})
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the final response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the final body: %v", err)
	}
	return heads, resp, body
}

func statuses(heads []h1Head) []int {
	var s []int
	for _, h := range heads {
		s = append(s, h.status)
	}
	return s
}

// checkInterims asserts the 103, 100 and 102 arrived in order with the 103's Link and without
// the hop-by-hop field, and the final response is intact.
func checkInterims(t *testing.T, codes []int, early http.Header, status int, body []byte) {
	t.Helper()
	if want := []int{103, 100, 102}; !slices.Equal(codes, want) {
		t.Errorf("interim statuses %v, want %v", codes, want)
	}
	if got := early.Get("Link"); got != "</style.css>; rel=preload; as=style" {
		t.Errorf("103 Link %q", got)
	}
	if early.Get("X-Hop") != "" || early.Get("Connection") != "" {
		t.Errorf("103 carries hop-by-hop fields: %v", early)
	}
	if status != 200 || string(body) != "final body!" {
		t.Errorf("final %d %q, want 200 %q", status, body, "final body!")
	}
}

// An origin's 103, 100 and 102 reach an HTTP/1.1 client in order, before the intact final
// response, with hop-by-hop fields removed.
func TestInterimResponsesHTTP1Downstream(t *testing.T) {
	v := startVerge(t, interimOrigin(t), nil)
	heads, resp, body := readInterims(t, v.addr, "GET /page HTTP/1.1\r\nHost: example.com\r\n\r\n")
	var early http.Header
	if len(heads) > 0 {
		early = http.Header(heads[0].header)
	}
	checkInterims(t, statuses(heads), early, resp.StatusCode, body)
}

// RFC 9110 section 15.2: an HTTP/1.0 client gets no 1xx.
func TestInterimResponsesNotSentToHTTP10(t *testing.T) {
	v := startVerge(t, interimOrigin(t), nil)
	heads, resp, body := readInterims(t, v.addr, "GET /page HTTP/1.0\r\nHost: example.com\r\n\r\n")
	if len(heads) != 0 {
		t.Errorf("HTTP/1.0 client got interim responses %v", statuses(heads))
	}
	if resp.StatusCode != 200 || string(body) != "final body!" {
		t.Errorf("final %d %q", resp.StatusCode, body)
	}
}

// got1xx records the informational responses a net/http-style client reports.
type got1xx struct {
	mu    sync.Mutex
	codes []int
	early http.Header
}

func (g *got1xx) trace(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.codes = append(g.codes, code)
			if code == 103 {
				g.early = http.Header(h).Clone()
			}
			return nil
		},
	})
}

// The same over HTTP/2 (h2c), seen by x/net/http2's client through httptrace.
func TestInterimResponsesHTTP2Downstream(t *testing.T) {
	v := startVerge(t, interimOrigin(t), nil)
	var g got1xx
	req, _ := http.NewRequestWithContext(g.trace(context.Background()), "GET", "http://"+v.addr+"/page", nil)
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("body err %v proto %s", err, resp.Proto)
	}
	checkInterims(t, g.codes, g.early, resp.StatusCode, body)
}

// startVergeH3 serves Verge over HTTP/3 in front of peer and returns its UDP address and a
// client pool trusting its certificate.
func startVergeH3(t *testing.T, peer *upstream.Peer) (string, *x509.CertPool) {
	t.Helper()
	serverTLS, pool := tlsPair(t)
	tr := &upstream.Transport{}
	p := &proxy.Proxy[struct{}]{Phases: staticPhases{peer: peer}, Transport: tr}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := h3.NewSocket(pc)
	srv := &h3.Server{Handler: p.ServeExchange, TLSConfig: serverTLS}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(sock) }()
	t.Cleanup(func() {
		srv.Close()
		sock.Close()
		<-served
		tr.Close()
	})
	return pc.LocalAddr().String(), pool
}

// The same over HTTP/3, seen by quic-go's client through httptrace.
func TestInterimResponsesHTTP3Downstream(t *testing.T) {
	addr, pool := startVergeH3(t, interimOrigin(t))
	h3t := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"}}
	defer h3t.Close()
	var g got1xx
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(g.trace(ctx), "GET", "https://"+addr+"/page", nil)
	resp, err := h3t.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkInterims(t, g.codes, g.early, resp.StatusCode, body)
}

// earlyHintsOrigin is an origin that sends 103 Early Hints itself and then a 200.
func earlyHintsHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Link", "</app.js>; rel=preload; as=script")
	w.WriteHeader(http.StatusEarlyHints)
	w.Header().Del("Link")
	io.WriteString(w, "from "+r.Proto)
}

// HTTP/2 and HTTP/3 origins' 103 responses reach an HTTP/1.1 client: the h2 and h3 client
// adapters relay them.
func TestInterimResponsesFromHTTP2AndHTTP3Origins(t *testing.T) {
	h2o := httptest.NewUnstartedServer(http.HandlerFunc(earlyHintsHandler))
	h2o.EnableHTTP2 = true
	h2o.StartTLS()
	t.Cleanup(h2o.Close)
	h2pool := h2o.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	originTLS, h3pool := tlsPair(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := h3.NewSocket(pc)
	h3o := &h3.Server{TLSConfig: originTLS, Handler: func(ex message.ServerExchange) {
		var h message.Header
		h.Add("Link", "</app.js>; rel=preload; as=script")
		if err := ex.(message.InterimWriter).WriteInterim(103, &h); err != nil {
			t.Errorf("h3 origin WriteInterim: %v", err)
		}
		body := "from HTTP/3.0"
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: int64(len(body))})
		io.WriteString(ex, body)
		ex.Finish(nil)
	}}
	go h3o.Serve(sock)
	t.Cleanup(func() { h3o.Close(); sock.Close() })

	for _, tc := range []struct {
		name string
		peer *upstream.Peer
		body string
	}{
		{"h2", &upstream.Peer{Address: h2o.Listener.Addr().String(), Protocol: upstream.HTTP2,
			TLS: &upstream.TLSOptions{ServerName: "example.com", RootCAs: h2pool}}, "from HTTP/2.0"},
		{"h3", &upstream.Peer{Address: pc.LocalAddr().String(), Protocol: upstream.HTTP3,
			TLS: &upstream.TLSOptions{ServerName: "example.com", RootCAs: h3pool}}, "from HTTP/3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := startVerge(t, tc.peer, nil)
			heads, resp, body := readInterims(t, v.addr, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
			if got := statuses(heads); !slices.Equal(got, []int{103}) {
				t.Fatalf("interim statuses %v, want [103]", got)
			}
			if got := heads[0].header.Get("Link"); got != "</app.js>; rel=preload; as=script" {
				t.Errorf("103 Link %q", got)
			}
			if resp.StatusCode != 200 || string(body) != tc.body || resp.Header.Get("Link") != "" {
				t.Errorf("final %d %q Link %q", resp.StatusCode, body, resp.Header.Get("Link"))
			}
		})
	}
}

// A client that sent Expect: 100-continue gets exactly one 100 Continue, the origin's, before
// it sends its body, and the origin gets the body.
func TestExpectContinueForwardedOnce(t *testing.T) {
	addr := rawOrigin(t, func(c net.Conn, br *bufio.Reader, head string) bool {
		if !strings.Contains(strings.ToLower(head), "expect: 100-continue") {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return false
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		body := make([]byte, 4)
		if _, err := io.ReadFull(br, body); err != nil {
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ngot "+string(body))
		return true
	})
	v := startVerge(t, &upstream.Peer{Address: addr}, nil)
	c, err := net.Dial("tcp", v.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	head, err := readHead(br)
	if err != nil || !strings.HasPrefix(head, "HTTP/1.1 100 ") {
		t.Fatalf("first head %q (%v), want a 100 Continue", head, err)
	}
	io.WriteString(c, "data")
	heads, resp, body := readUntilFinal(t, br)
	if len(heads) != 0 {
		t.Errorf("more interim responses after the 100: %v", statuses(heads))
	}
	if resp.StatusCode != 200 || string(body) != "got data" {
		t.Errorf("final %d %q", resp.StatusCode, body)
	}
}

// A hostile origin's flood of 1xx responses: at most proxy.MaxInterimResponses reach the
// client; beyond what the upstream codec accepts (16) the request fails with 502.
func TestInterimFloodIsCapped(t *testing.T) {
	flood := func(n int) *upstream.Peer {
		addr := rawOrigin(t, func(c net.Conn, _ *bufio.Reader, _ string) bool {
			io.WriteString(c, strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n", n)+interimFinal)
			return true
		})
		return &upstream.Peer{Address: addr}
	}
	v := startVerge(t, flood(16), nil)
	heads, resp, body := readInterims(t, v.addr, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if len(heads) != proxy.MaxInterimResponses || resp.StatusCode != 200 || string(body) != "final body!" {
		t.Errorf("16 interim: client saw %d interim, final %d %q; want %d, 200", len(heads), resp.StatusCode, body, proxy.MaxInterimResponses)
	}
	v = startVerge(t, flood(17), nil)
	heads, resp, _ = readInterims(t, v.addr, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if len(heads) != proxy.MaxInterimResponses || resp.StatusCode != 502 {
		t.Errorf("17 interim: client saw %d interim, final %d; want %d, 502", len(heads), resp.StatusCode, proxy.MaxInterimResponses)
	}
}

// earlyHintsPhases sends 103 Early Hints from the Request phase, then proxies.
type earlyHintsPhases struct {
	staticPhases
}

func (p earlyHintsPhases) Request(s *proxy.Session, _ *struct{}) (bool, error) {
	var h message.Header
	h.Add("Link", "</hero.jpg>; rel=preload; as=image")
	return false, s.WriteEarlyHints(&h)
}

// A phase sends Early Hints before the origin answers; the client sees them first, then the
// origin's own interim responses and the final one.
func TestPhaseSendsEarlyHints(t *testing.T) {
	addr := startVergeWith(t, earlyHintsPhases{staticPhases{peer: interimOrigin(t)}})
	heads, resp, body := readInterims(t, addr, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	if got := statuses(heads); !slices.Equal(got, []int{103, 103, 100, 102}) {
		t.Fatalf("interim statuses %v, want [103 103 100 102]", got)
	}
	if got := heads[0].header.Get("Link"); got != "</hero.jpg>; rel=preload; as=image" {
		t.Errorf("phase's 103 Link %q", got)
	}
	if resp.StatusCode != 200 || string(body) != "final body!" {
		t.Errorf("final %d %q", resp.StatusCode, body)
	}
	// HTTP/1.0: nothing but the final response.
	heads, resp, _ = readInterims(t, addr, "GET / HTTP/1.0\r\n\r\n")
	if len(heads) != 0 || resp.StatusCode != 200 {
		t.Errorf("HTTP/1.0: interim %v final %d", statuses(heads), resp.StatusCode)
	}
}

// gzipped returns s compressed with gzip.
func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.Bytes()
}

// teGzipOrigin answers with "Transfer-Encoding: gzip" and no chunked: the body runs until it
// closes the connection (RFC 9112 section 6.3, item 4).
func teGzipOrigin(t *testing.T, payload []byte) *upstream.Peer {
	addr := rawOrigin(t, func(c net.Conn, _ *bufio.Reader, _ string) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\n\r\n")
		c.Write(payload)
		return false
	})
	return &upstream.Peer{Address: addr}
}

const teText = "a body that the origin transfer-coded with gzip and delimited by closing\n"

// An HTTP/1.1 client gets the close-delimited, transfer-coded body re-framed as
// "Transfer-Encoding: gzip, chunked" on a connection that stays open; an HTTP/1.0 client gets
// the coded bytes until close, without Transfer-Encoding.
func TestTransferCodingWithoutChunkedHTTP1(t *testing.T) {
	payload := gzipped(teText)
	v := startVerge(t, teGzipOrigin(t, payload), nil)
	c, err := net.Dial("tcp", v.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 { // the downstream connection stays usable
		io.WriteString(c, "GET /te HTTP/1.1\r\nHost: example.com\r\n\r\n")
		status, h, coded := readCodedResponse(t, br)
		if status != "HTTP/1.1 200 OK" || h.Get("Transfer-Encoding") != "gzip, chunked" || h.Get("Content-Length") != "" {
			t.Fatalf("request %d: %s %v", i, status, h)
		}
		if !bytes.Equal(coded, payload) {
			t.Fatalf("request %d: coded body differs: %d bytes, want %d", i, len(coded), len(payload))
		}
		zr, err := gzip.NewReader(bytes.NewReader(coded))
		if err != nil {
			t.Fatal(err)
		}
		if plain, _ := io.ReadAll(zr); string(plain) != teText {
			t.Fatalf("request %d: decoded %q", i, plain)
		}
	}

	c10, err := net.Dial("tcp", v.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c10.Close()
	c10.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c10, "GET /te HTTP/1.0\r\nHost: example.com\r\n\r\n")
	raw, err := io.ReadAll(c10)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	if bytes.Contains(bytes.ToLower(head), []byte("transfer-encoding")) || !bytes.Equal(body, payload) {
		t.Fatalf("HTTP/1.0: head %q, body %d bytes (want %d)", head, len(body), len(payload))
	}
}

// HTTP/2 cannot carry a transfer coding (RFC 9113 section 8.2.2): the client gets the coded
// bytes, intact, without Transfer-Encoding.
func TestTransferCodingWithoutChunkedHTTP2(t *testing.T) {
	payload := gzipped(teText)
	v := startVerge(t, teGzipOrigin(t, payload), nil)
	resp, err := h2cClient().Get("http://" + v.addr + "/te")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 ||
		resp.Header.Get("Transfer-Encoding") != "" || !bytes.Equal(body, payload) {
		t.Fatalf("%s %d TE %v %q: body %d bytes, want %d", resp.Proto, resp.StatusCode, resp.TransferEncoding,
			resp.Header.Get("Transfer-Encoding"), len(body), len(payload))
	}
}

// A request with an unknown transfer coding is still refused (501), and one whose final
// coding is not chunked with 400: only responses are read until close.
func TestTransferCodingRequestsStayStrict(t *testing.T) {
	v := startVerge(t, teGzipOrigin(t, nil), nil)
	for _, tc := range []struct {
		te   string
		want int
	}{{"gzip, chunked", 501}, {"gzip", 501}, {"chunked, gzip", 400}} {
		_, resp, _ := readInterims(t, v.addr, "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: "+
			tc.te+"\r\n\r\n0\r\n\r\n")
		if resp.StatusCode != tc.want {
			t.Errorf("request TE %q: %d, want %d", tc.te, resp.StatusCode, tc.want)
		}
	}
}

// Through the verge binary (`verge proxy`): the origin's interim responses reach the client
// and a transfer-coded close-delimited body is re-framed.
func TestInterimAndTransferCodingThroughBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the verge binary")
	}
	payload := gzipped(teText)
	originAddr := rawOrigin(t, func(c net.Conn, _ *bufio.Reader, head string) bool {
		if strings.HasPrefix(head, "GET /te ") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
			c.Write(payload)
			return false
		}
		_, err := io.WriteString(c, interimHeads+interimFinal)
		return err == nil
	})
	bin := buildVerge(t)
	addr, _ := startProxy(t, bin, "--upstream", "http://"+originAddr)

	heads, resp, body := readInterims(t, addr, "GET /page HTTP/1.1\r\nHost: example.com\r\n\r\n")
	var early http.Header
	if len(heads) > 0 {
		early = http.Header(heads[0].header)
	}
	checkInterims(t, statuses(heads), early, resp.StatusCode, body)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /te HTTP/1.1\r\nHost: example.com\r\n\r\n")
	status, h, coded := readCodedResponse(t, bufio.NewReader(c))
	if status != "HTTP/1.1 200 OK" || h.Get("Transfer-Encoding") != "gzip, chunked" || !bytes.Equal(coded, payload) {
		t.Fatalf("TE response: %s %v, coded body %d bytes (want %d)", status, h, len(coded), len(payload))
	}
}

// readCodedResponse reads a response head and its chunked body as raw bytes (net/http's
// reader refuses transfer codings other than chunked).
func readCodedResponse(t *testing.T, br *bufio.Reader) (string, textproto.MIMEHeader, []byte) {
	t.Helper()
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(h.Get("Transfer-Encoding"), "chunked") {
		t.Fatalf("%s %v: not chunked", status, h)
	}
	coded, err := io.ReadAll(httputil.NewChunkedReader(br))
	if err != nil {
		t.Fatal(err)
	}
	readHead(br) // the empty trailer section
	return status, h, coded
}

// An HTTP/1.1 client's Expect: 100-continue through an HTTP/2 origin: the h2 client reads the
// request body on its own goroutine (the downstream adapter then sends its 100) while its
// connection reader relays the origin's 100; the client still gets exactly one.
func TestExpectContinueThroughHTTP2Origin(t *testing.T) {
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // net/http's server sends 100 Continue on this read
		io.WriteString(w, "got "+string(body))
	}))
	origin.EnableHTTP2 = true
	origin.StartTLS()
	t.Cleanup(origin.Close)
	pool := origin.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	v := startVerge(t, &upstream.Peer{Address: origin.Listener.Addr().String(), Protocol: upstream.HTTP2,
		TLS: &upstream.TLSOptions{ServerName: "example.com", RootCAs: pool}}, nil)
	for i := range 5 {
		c, err := net.Dial("tcp", v.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		br := bufio.NewReader(c)
		head, err := readHead(br)
		if err != nil || !strings.HasPrefix(head, "HTTP/1.1 100 ") {
			t.Fatalf("request %d: first head %q (%v), want a 100 Continue", i, head, err)
		}
		io.WriteString(c, "data")
		heads, resp, body := readUntilFinal(t, br)
		if len(heads) != 0 || resp.StatusCode != 200 || string(body) != "got data" {
			t.Fatalf("request %d: more interim %v, final %d %q", i, statuses(heads), resp.StatusCode, body)
		}
		c.Close()
	}
}
