package sdk

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestCopyOfWholeBodyIsAWrite: io.Copy of a body that arrived whole (no handle) is buffered
// like a Write, with no host call and no flush (the response keeps its exact length).
func TestCopyOfWholeBodyIsAWrite(t *testing.T) {
	w := &responseWriter{}
	n, err := io.Copy(w, &streamBody{first: []byte("hello")})
	if err != nil || n != 5 || string(w.buf) != "hello" || w.sent || w.status != 200 {
		t.Fatalf("copy: n %d, err %v, buffered %q, head sent %v, status %d", n, err, w.buf, w.sent, w.status)
	}
	// Another reader goes through the writer's own buffer too.
	n, err = io.Copy(w, io.MultiReader(strings.NewReader(" wor"), strings.NewReader("ld")))
	if err != nil || n != 6 || string(w.buf) != "hello world" || w.sent {
		t.Fatalf("copy of a reader: n %d, err %v, buffered %q", n, err, w.buf)
	}
}

// TestReadBodyWhole: the SDK's own reads (Response.JSON, RPC results) of a body that came
// whole take its bytes without a host call; a closed body reads as an error.
func TestReadBodyWhole(t *testing.T) {
	sb := &streamBody{first: []byte(`{"n":1}`)}
	resp := &Response{StatusCode: 200, Body: sb}
	var v struct{ N int }
	if err := resp.JSON(&v); err != nil || v.N != 1 {
		t.Fatalf("JSON: %v, %+v", err, v)
	}
	if _, err := sb.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("read after close: %v, want an error", err)
	}
	b, err := readBody(&Response{Body: io.NopCloser(bytes.NewReader([]byte("x")))})
	if err != nil || string(b) != "x" {
		t.Fatalf("readBody of another reader: %q, %v", b, err)
	}
}
