package upstream

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/h3"
	"github.com/verge-edge/verge/message"
)

// newH3Origin serves HTTP/3 with Verge's own adapter: it answers with the request target and
// echoes a request body.
func newH3Origin(t *testing.T) (addr string, conns func() int) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := h3.NewSocket(pc)
	var mu sync.Mutex
	n := 0
	srv := &h3.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{getCA(t).server}},
		ConnHook: func(_ string, d int) {
			if d > 0 {
				mu.Lock()
				n++
				mu.Unlock()
			}
		},
		Handler: func(ex message.ServerExchange) {
			req := ex.Request()
			body := []byte(req.Target)
			if req.Body != nil {
				body, _ = io.ReadAll(req.Body)
			}
			ex.WriteHeader(&message.Response{Status: 200, ContentLength: int64(len(body))})
			ex.Write(body)
			ex.Finish(nil)
		},
	}
	go srv.Serve(sock)
	t.Cleanup(func() { srv.Close(); sock.Close() })
	return pc.LocalAddr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestHTTP3Upstream(t *testing.T) {
	addr, conns := newH3Origin(t)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: addr, Protocol: HTTP3, TLS: &TLSOptions{RootCAs: getCA(t).pool, ServerName: "origin.test"}}
	var wg sync.WaitGroup
	errs := make(chan string, 30)
	for i := range 30 {
		wg.Go(func() {
			target := "/r" + string(rune('a'+i))
			resp, err := tr.RoundTrip(context.Background(), p, get(target))
			if err != nil {
				errs <- err.Error()
				return
			}
			if got := readAll(t, resp); got != target || resp.Proto != message.HTTP3 {
				errs <- "got " + got + " over " + resp.Proto
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := conns(); got != 1 {
		t.Errorf("QUIC connections for 30 concurrent requests: got %d, want 1 (multiplexed)", got)
	}
	post := &message.Request{Method: "POST", Target: "/p", Authority: "origin.test", ContentLength: 5,
		Body: strings.NewReader("hello")}
	resp, err := tr.RoundTrip(context.Background(), p, post)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "hello" {
		t.Errorf("POST echo: got %q, want hello", got)
	}
	if s := tr.Stats(); s.H2Conns != 1 {
		t.Errorf("multiplexed conns in the pool: got %d, want 1", s.H2Conns)
	}
	// A dead address fails fast with a retryable connect error.
	dead := &Peer{Address: "127.0.0.1:1", Protocol: HTTP3, TLS: p.TLS, Timeouts: Timeouts{Connect: 300 * time.Millisecond}}
	if _, err := tr.RoundTrip(context.Background(), dead, get("/")); err == nil {
		t.Error("round trip to a dead h3 peer succeeded")
	}
}
