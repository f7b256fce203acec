package http1

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSmuggling sends each malformed or ambiguous request over a real loopback connection and
// checks the exact status and that the server closes the connection after answering.
func TestSmuggling(t *testing.T) {
	s := &Server{Handler: echoHandler, Limits: Limits{MaxBodySize: 1 << 20}}
	addr := startServer(t, s)
	longTarget := "/" + strings.Repeat("a", DefaultMaxRequestLine)
	manyHeaders := strings.Repeat("X-A: b\r\n", DefaultMaxHeaders+1)
	bigHeader := "X-Big: " + strings.Repeat("b", DefaultMaxHeaderBytes) + "\r\n"
	bigExt := ";e=" + strings.Repeat("x", DefaultMaxChunkExtension)
	cases := []struct {
		name, req string
		status    int
	}{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400},
		{"TE.TE duplicate fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", 400},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
		{"TE chunked identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
		{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501},
		{"TE gzip chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \vchunked\r\n\r\n0\r\n\r\n", 400},
		{"TE form feed", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\f\r\n\r\n0\r\n\r\n", 400},
		{"TE empty element", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400},
		{"TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"CL duplicate equal", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400},
		{"CL duplicate different", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\na", 400},
		{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na", 400},
		{"CL minus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\na", 400},
		{"CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\na", 400},
		{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\na", 400},
		{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400},
		{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"CL over MaxBodySize", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", 413},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400},
		{"whitespace before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400},
		{"bare CR line end", "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", 400},
		{"bare LF in head", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400},
		{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
		{"bare LF only", "GET / HTTP/1.1\nHost: a\n\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\n\r\n", 400},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7f\r\n\r\n", 400},
		{"empty field name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n", 400},
		{"chunk size non-hex", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400},
		{"chunk size 0x prefix", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size negative", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size leading space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size trailing space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk ext too long", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5" + bigExt + "\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk ext malformed", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;=x\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk data without CRLF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400},
		{"chunk data bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400},
		{"chunk line bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400},
		{"chunked over MaxBodySize", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n", 413},
		{"request line too long", "GET " + longTarget + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"too many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders + "\r\n", 431},
		{"head too large", "GET / HTTP/1.1\r\nHost: a\r\n" + bigHeader + "\r\n", 431},
		{"HTTP/2.0 version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"HTTP/1.2 version", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"version trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"invalid method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"invalid target", "GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"target with fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"target not origin form", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"absolute form userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"double Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"invalid Host", "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400},
		{"unknown expectation", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\na", 417},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			if _, err := c.Write([]byte(tc.req)); err != nil {
				t.Fatal(err)
			}
			out, closed := readAllUntilClose(c, 3*time.Second)
			want := "HTTP/1.1 " + strconv.Itoa(tc.status) + " "
			if !strings.HasPrefix(out, want) {
				t.Fatalf("response = %q, want status %d", firstLine(out), tc.status)
			}
			if !closed {
				t.Fatalf("connection still open after %d response", tc.status)
			}
			if !strings.Contains(out, "\r\nConnection: close\r\n") {
				t.Errorf("response %q lacks Connection: close", out)
			}
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
