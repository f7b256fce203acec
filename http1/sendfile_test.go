package http1

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verge-edge/verge/message"
)

// TestReadFromFile sends file bodies through Exchange.ReadFrom: the kernel copy with a
// Content-Length (from an offset, pipelined with the next request), the buffered copy for a
// chunked body, nothing for HEAD.
func TestReadFromFile(t *testing.T) {
	content := strings.Repeat("0123456789abcdef", 20000) // 320,000 bytes: several copies
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	const off = 1000
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		f, err := os.Open(path)
		if err != nil {
			ex.Abort(err)
			return
		}
		defer f.Close()
		f.Seek(off, io.SeekStart)
		resp := &message.Response{Status: 200, ContentLength: int64(len(content) - off)}
		if ex.Request().Path() == "/chunked" {
			resp.ContentLength = -1
		}
		ex.WriteHeader(resp)
		n, err := ex.ReadFrom(&io.LimitedReader{R: f, N: int64(len(content) - off)})
		if err != nil || (ex.Request().Method != "HEAD" && n != int64(len(content)-off)) {
			t.Errorf("%s %s: ReadFrom = %d, %v", ex.Request().Method, ex.Request().Path(), n, err)
		}
		ex.Finish(nil)
	}})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	c.Write([]byte("GET /file HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a\r\n\r\nHEAD /file HTTP/1.1\r\nHost: a\r\n\r\n"))
	for _, tc := range []struct {
		head bool
		body string
	}{{false, content[off:]}, {false, content[off:]}, {true, ""}} {
		r := readRawResponse(t, br, tc.head)
		if r.status != 200 || r.body != tc.body {
			t.Fatalf("status %d, %d body bytes, want %d", r.status, len(r.body), len(tc.body))
		}
	}
}

// TestReadFromShortFile checks that a file shorter than the announced length ends the
// connection instead of leaving the client waiting or reading a wrong body.
func TestReadFromShortFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte(strings.Repeat("x", 100000)), 0o644)
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		f, _ := os.Open(path)
		defer f.Close()
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 200000})
		ex.ReadFrom(f)
		if err := ex.Finish(nil); err != ErrContentLength {
			t.Errorf("Finish = %v, want ErrContentLength", err)
		}
	}})
	c := dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	got, closed := readAllUntilClose(c, 10e9)
	if !closed || strings.Count(got, "x") != 100000 {
		t.Errorf("closed %v, %d body bytes", closed, strings.Count(got, "x"))
	}
}
