package h2

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/verge-edge/verge/message"
)

// WriteInterim sends each informational head in its own HEADERS frame, drops connection
// fields, sends 100 Continue once (not again when the body is read) and fails once the final
// head is written.
func TestServerWriteInterim(t *testing.T) {
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		iw := ex.(message.InterimWriter)
		var h message.Header
		h.Add("Link", "</s.css>; rel=preload")
		h.Add("Connection", "close")
		for _, st := range []int{103, 100, 100, 102} {
			if err := iw.WriteInterim(st, &h); err != nil {
				t.Errorf("WriteInterim(%d): %v", st, err)
			}
		}
		if err := iw.WriteInterim(101, nil); err == nil {
			t.Error("WriteInterim(101) succeeded")
		}
		body, _ := io.ReadAll(ex.Request().Body)
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: int64(len(body))})
		if err := iw.WriteInterim(103, nil); err == nil {
			t.Error("WriteInterim after the final head succeeded")
		}
		ex.Write(body)
		ex.Finish(nil)
	}}, false)
	codes, link, status, body := postWithInterim(t, addr)
	if !slices.Equal(codes, []int{103, 100, 102}) || !slices.Equal(link, []string{"</s.css>; rel=preload", ""}) {
		t.Errorf("interim %v 103 fields %q; want [103 100 102] with the Link only", codes, link)
	}
	if status != 200 || body != "body" {
		t.Errorf("final %d %q", status, body)
	}
}

// WriteHeader with a 1xx status sends it as WriteInterim does: a 100 Continue written that
// way is not sent a second time when the body is read.
func TestServerWriteHeaderInterim(t *testing.T) {
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		resp := &message.Response{Status: 103}
		resp.Header.Add("Link", "</s.css>; rel=preload")
		for _, st := range []int{103, 100} {
			resp.Status = st
			if err := ex.WriteHeader(resp); err != nil {
				t.Errorf("WriteHeader(%d): %v", st, err)
			}
		}
		echoHandler(ex)
	}}, false)
	codes, link, status, body := postWithInterim(t, addr)
	if !slices.Equal(codes, []int{103, 100}) || !slices.Equal(link, []string{"</s.css>; rel=preload", ""}) {
		t.Errorf("interim %v 103 fields %q; want [103 100] with the Link only", codes, link)
	}
	if status != 200 || body != "body" {
		t.Errorf("final %d %q", status, body)
	}
}

// postWithInterim POSTs "body" with Expect: 100-continue and returns the interim statuses
// the client saw, the Link and Connection fields of each 103, and the final response.
func postWithInterim(t *testing.T, addr string) (codes []int, link []string, status int, body string) {
	t.Helper()
	var mu sync.Mutex
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			codes = append(codes, code)
			if code == 103 {
				link = append(link, h.Get("Link"), h.Get("Connection"))
			}
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/", strings.NewReader("body"))
	req.Header.Set("Expect", "100-continue")
	resp, err := h2Client(t, false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	return codes, link, resp.StatusCode, string(b)
}

// Interim heads are not flow controlled: for a client that reads nothing, those beyond
// maxPendingWrite waiting in the write buffer are dropped instead of piling up.
func TestServerWriteInterimBoundedForStalledClient(t *testing.T) {
	var h message.Header
	h.Add("Link", "</"+strings.Repeat("a", 8<<10)+">; rel=preload")
	const heads = 2000 // 16 MiB: more than the sockets absorb
	pending := make(chan int, 1)
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		iw := ex.(message.InterimWriter)
		for range heads {
			if err := iw.WriteInterim(103, &h); err != nil {
				t.Errorf("WriteInterim: %v", err)
				break
			}
		}
		sc := ex.(*stream).c
		sc.mu.Lock()
		pending <- len(sc.wbuf)
		sc.mu.Unlock()
		ex.Finish(nil)
	}}, false)
	rc := dialRaw(t, addr)
	if err := rc.openStream(1, true); err != nil {
		t.Fatal(err)
	}
	if n := <-pending; n > maxPendingWrite+16<<10 {
		t.Fatalf("%d bytes of interim heads queued for a client that reads nothing; want at most about %d", n, maxPendingWrite)
	}
}
