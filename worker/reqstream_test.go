package worker

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestLentBodyClose: a request body passed on reads until its owner's invocation ends
// (Close); afterwards every read fails, so a callee that outlives the caller cannot read
// the client's connection any more.
func TestLentBodyClose(t *testing.T) {
	b := &lentBody{r: strings.NewReader("hello world")}
	p := make([]byte, 5)
	if n, err := b.Read(p); n != 5 || err != nil || string(p) != "hello" {
		t.Fatalf("read: %d %q %v", n, p[:n], err)
	}
	b.Close()
	if n, err := b.Read(p); n != 0 || !errors.Is(err, errLentClosed) {
		t.Fatalf("read after close: %d %v", n, err)
	}
	b = &lentBody{r: strings.NewReader("x")}
	if got, err := io.ReadAll(b); string(got) != "x" || err != nil {
		t.Fatalf("read to the end: %q %v", got, err)
	}
	if n, err := b.Read(p); n != 0 || err != io.EOF {
		t.Fatalf("read past the end: %d %v", n, err)
	}
}

// TestTakeBodyOnce: an invocation's body is passed on once; the invocation then reads its
// end, and a second hand-off passes an empty body.
func TestTakeBodyOnce(t *testing.T) {
	inv := &invocation{body: strings.NewReader("abcdef"), bodySize: 6}
	r, size := inv.takeBody()
	if size != 6 {
		t.Fatalf("size of an unread body: %d", size)
	}
	if inv.body != nil {
		t.Fatal("the invocation still reads the body it passed on")
	}
	if _, size := inv.takeBody(); size != 0 {
		t.Fatalf("second hand-off: size %d, want 0", size)
	}
	if got, _ := io.ReadAll(r); string(got) != "abcdef" {
		t.Fatalf("passed on: %q", got)
	}
	inv = &invocation{body: strings.NewReader("abcdef"), bodySize: 6, bodyRead: true}
	if _, size := inv.takeBody(); size != -1 {
		t.Fatalf("size of a body read in part: %d, want -1 (unknown)", size)
	}
	inv.clear()
}
