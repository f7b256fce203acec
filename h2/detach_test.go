package h2

import (
	"io"
	"testing"
	"unsafe"

	"github.com/verge-edge/verge/message"
)

// A proxied response's strings point into a buffer the upstream connection reuses once the
// response body is closed, which happens before the handler returns. x/net/http2 encodes the
// head and trailers later, so the adapter must have copied them.
func TestResponseStringsCopied(t *testing.T) {
	srv := &Server{Handler: func(ex message.ServerExchange) {
		buf := []byte("x-origin: from-origin; x-sum: 42")
		view := func(i, j int) string { return unsafe.String(&buf[i], j-i) }
		resp := &message.Response{Status: 200, ContentLength: -1}
		resp.Header.Add(view(0, 8), view(10, 21))
		ex.WriteHeader(resp)
		var tr message.Header
		tr.Add(view(23, 28), view(30, 32))
		ex.Finish(&tr)
		for i := range buf { // the "upstream buffer" is reused
			buf[i] = '#'
		}
	}, Logger: quietLogger()}
	addr := serve(t, srv, false)
	resp, err := h2Client(t, false).Get(scheme(false) + "://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get("X-Origin"); got != "from-origin" {
		t.Errorf("header X-Origin = %q, want from-origin", got)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "42" {
		t.Errorf("trailer X-Sum = %q, want 42", got)
	}
}
