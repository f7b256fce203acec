package e2e

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/h2"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

// TestH2ZeroWindowReleasesUpstream reproduces issue 12 through the proxy: an HTTP/2 client
// with SETTINGS_INITIAL_WINDOW_SIZE 0 that never sends WINDOW_UPDATE opens streams for large
// responses. Before the fix each stream held its origin connection for ever. Now each stream
// is reset after the send timeout and the origin connection behind it is closed (the origin's
// writes fail), so nothing stays held.
func TestH2ZeroWindowReleasesUpstream(t *testing.T) {
	const streams = 6
	var started, released atomic.Int32
	done := make(chan struct{}, streams)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		chunk := make([]byte, 32<<10)
		for i := 0; i < 64<<10; i++ { // up to 2 GiB: only a failed write ends it
			if _, err := w.Write(chunk); err != nil {
				released.Add(1)
				done <- struct{}{}
				return
			}
		}
	}))
	t.Cleanup(origin.Close)

	tr := &upstream.Transport{}
	p := &proxy.Proxy[struct{}]{Phases: staticPhases{peer: peerFor(origin)}, Transport: tr}
	srv := &server.Server{Handler: p, HTTP2: h2.Server{SendTimeout: 300 * time.Millisecond}}
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

	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fr := http2.NewFramer(c, c)
	io.WriteString(c, http2.ClientPreface)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for i := range streams {
		hbuf.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/big"}, {Name: ":authority", Value: "test"}} {
			enc.WriteField(f)
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1),
			BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	resets := make(chan http2.ErrCode, streams)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.RSTStreamFrame:
				resets <- f.ErrCode
			}
		}
	}()
	for i := range streams {
		select {
		case code := <-resets:
			if code != http2.ErrCodeCancel {
				t.Errorf("stream reset with %v, want CANCEL", code)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d stalled streams reset", i, streams)
		}
	}
	for i := range streams {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("origin connections released: %d of %d (started %d)", i, streams, started.Load())
		}
	}
	t.Logf("origin requests %d, released %d", started.Load(), released.Load())
}
