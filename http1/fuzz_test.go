package http1

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

// readerConn is a net.Conn that reads from r and discards writes.
type readerConn struct{ r io.Reader }

func (c readerConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c readerConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c readerConn) Close() error                       { return nil }
func (c readerConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c readerConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c readerConn) SetDeadline(t time.Time) error      { return nil }
func (c readerConn) SetReadDeadline(t time.Time) error  { return nil }
func (c readerConn) SetWriteDeadline(t time.Time) error { return nil }

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET http://h:1/x HTTP/1.1\r\nHost: h\r\n\r\n",
	"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
}

// FuzzParseRequest checks that the request parser never panics and that what it accepts keeps
// the framing invariants.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, data []byte) {
		var scan headScanner
		n, perr := scan.scan(data, lim.MaxRequestLine, lim.MaxHeaderBytes, lim.MaxHeaders)
		if perr != nil || n == 0 {
			return
		}
		var req message.Request
		var rh reqHead
		if perr := parseRequestHead(data[scan.skip:n], &req, &rh, &lim); perr != nil {
			if perr.status < 400 || perr.status > 505 {
				t.Fatalf("status %d", perr.status)
			}
			return
		}
		if !validTokenString(req.Method) || req.Target == "" {
			t.Fatalf("accepted method %q target %q", req.Method, req.Target)
		}
		for _, fl := range req.Header.Fields() {
			if isFramingField(fl.Name) || message.EqualFold(fl.Name, "Host") {
				t.Fatalf("framing field %q left in Header", fl.Name)
			}
			if strings.ContainsAny(fl.Value, "\r\n\x00") || !validTokenString(fl.Name) {
				t.Fatalf("invalid field accepted: %q: %q", fl.Name, fl.Value)
			}
		}
		if rh.chunked && rh.hasCL {
			t.Fatal("accepted Content-Length with Transfer-Encoding")
		}
		if (req.ContentLength == -1) != rh.chunked {
			t.Fatalf("ContentLength %d chunked %v", req.ContentLength, rh.chunked)
		}
		if req.Proto == message.HTTP11 && rh.hosts != 1 {
			t.Fatalf("HTTP/1.1 accepted with %d Host fields", rh.hosts)
		}
	})
}

// FuzzChunked decodes arbitrary chunked bodies; what decodes must re-encode and decode to the
// same bytes and trailers.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\n",
		"5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
		"ffffffffffffffff\r\n",
		"5\r\nhelloXX",
		"1\r\na\r\n1 ;x\r\nb\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, data []byte) {
		watchdog := time.AfterFunc(5*time.Second, func() { panic(fmt.Sprintf("decoding %q hangs", data)) })
		defer watchdog.Stop()
		body, trailer, err := decodeChunked(data, &lim)
		if err != nil {
			return
		}
		var enc bytes.Buffer
		if len(body) > 0 {
			enc.Write(appendHex(nil, int64(len(body))))
			enc.WriteString("\r\n")
			enc.Write(body)
			enc.WriteString("\r\n")
		}
		enc.WriteString("0\r\n")
		for _, fl := range trailer.Fields() {
			enc.WriteString(fl.Name + ": " + fl.Value + "\r\n")
		}
		enc.WriteString("\r\n")
		body2, trailer2, err := decodeChunked(enc.Bytes(), &lim)
		if err != nil || !bytes.Equal(body, body2) || trailer.Len() != trailer2.Len() {
			t.Fatalf("re-encoded body did not round trip: %v", err)
		}
	})
}

func decodeChunked(data []byte, lim *Limits) ([]byte, *message.Header, error) {
	in := &inbuf{conn: readerConn{bytes.NewReader(data)}}
	defer in.release()
	var br bodyReader
	trailer := new(message.Header)
	br.init(in, bodyChunked, -1, lim, trailer, 0)
	body, err := io.ReadAll(&br)
	if err != nil {
		return nil, nil, err
	}
	// Strings alias the buffer: copy before it goes back to the pool.
	cl := trailer.Clone()
	return body, &cl, nil
}

// FuzzParseResponse checks the response parser and body setup.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200\r\n\r\nbody",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var scan headScanner
		n, perr := scan.scan(data, 1<<16, 1<<16, 100)
		if perr != nil || n == 0 {
			return
		}
		var resp message.Response
		var rh respHead
		if parseResponseHead(data[scan.skip:n], &resp, &rh, 100) != nil {
			return
		}
		if resp.Status < 100 || resp.Status > 999 {
			t.Fatalf("status %d", resp.Status)
		}
		for _, fl := range resp.Header.Fields() {
			if isFramingField(fl.Name) {
				t.Fatalf("framing field %q left in Header", fl.Name)
			}
		}
	})
}

func TestParseRequestHead(t *testing.T) {
	lim := Limits{}.withDefaults()
	var req message.Request
	var rh reqHead
	head := "GET /a?b HTTP/1.1\r\nHost: h:80\r\nX-One: 1 \r\nx-two:\t2\r\nContent-Length: 0\r\n\r\n"
	if err := parseRequestHead([]byte(head), &req, &rh, &lim); err != nil {
		t.Fatal(err)
	}
	if req.Method != "GET" || req.Target != "/a?b" || req.Authority != "h:80" || req.Proto != message.HTTP11 {
		t.Fatalf("got %q %q %q %q", req.Method, req.Target, req.Authority, req.Proto)
	}
	f := req.Header.Fields()
	if len(f) != 2 || f[0] != (message.Field{Name: "X-One", Value: "1"}) || f[1] != (message.Field{Name: "x-two", Value: "2"}) {
		t.Fatalf("fields %v", f)
	}
	if req.ContentLength != 0 {
		t.Fatalf("ContentLength %d", req.ContentLength)
	}
	// Trailing whitespace after "chunked" is optional whitespace, not an obfuscation.
	req.Reset()
	head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked \r\n\r\n"
	if err := parseRequestHead([]byte(head), &req, &rh, &lim); err != nil || req.ContentLength != -1 {
		t.Fatalf("chunked with OWS: %v CL %d", err, req.ContentLength)
	}
}

func TestParseChunkSize(t *testing.T) {
	cases := []struct {
		line string
		size int64
		ok   bool
	}{
		{"0", 0, true}, {"a", 10, true}, {"FF", 255, true}, {"00010", 16, true},
		{"5;a", 5, true}, {"5 ;a=b", 5, true}, {"5;a=\"q\\\"x\"", 5, true}, {"5;a;b=c", 5, true},
		{"", 0, false}, {"x", 0, false}, {"0x5", 0, false}, {"-5", 0, false}, {"+5", 0, false},
		{" 5", 0, false}, {"5 ", 0, false}, {"5;", 0, false}, {"5;a=", 0, false}, {"5;a=\"x", 0, false},
		{"5;a ", 0, false}, {"8000000000000000", 0, false}, {"7fffffffffffffff", 1<<63 - 1, true},
	}
	for _, tc := range cases {
		size, _, err := parseChunkSize([]byte(tc.line), 1024)
		if (err == nil) != tc.ok || (tc.ok && size != tc.size) {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d ok=%v", tc.line, size, err, tc.size, tc.ok)
		}
	}
}
