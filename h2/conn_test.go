package h2

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/message"
)

// TestServerLargeUploadFlowControl sends a body four times the stream window and twice the
// connection window: it only gets through if the server returns window as the handler reads.
func TestServerLargeUploadFlowControl(t *testing.T) {
	addr := serve(t, &Server{Handler: echoHandler, MaxUploadBufferPerStream: 64 << 10,
		MaxUploadBufferPerConnection: 128 << 10}, false)
	body := make([]byte, 256<<10)
	rand.Read(body)
	resp, err := h2Client(t, false).Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("echo: got %d bytes (equal %v), err %v; want the %d bytes sent", len(got), bytes.Equal(got, body), err, len(body))
	}
}

// TestServerFieldsInArrivalOrder: request fields keep the order they had on the wire, and
// several cookie fields are joined into one (RFC 9113 section 8.2.3).
func TestServerFieldsInArrivalOrder(t *testing.T) {
	got := make(chan []message.Field, 1)
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		got <- append([]message.Field(nil), ex.Request().Header.Fields()...)
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}, false)
	rc := dialRaw(t, addr)
	block := rc.headerBlock(
		hpack.HeaderField{Name: "x-zulu", Value: "1"}, hpack.HeaderField{Name: "cookie", Value: "a=1"},
		hpack.HeaderField{Name: "x-alpha", Value: "2"}, hpack.HeaderField{Name: "cookie", Value: "b=2"},
		hpack.HeaderField{Name: "host", Value: "ignored"},
	)
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	var fields []message.Field
	select {
	case fields = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called")
	}
	want := []message.Field{{Name: "x-zulu", Value: "1"}, {Name: "cookie", Value: "a=1; b=2"}, {Name: "x-alpha", Value: "2"}}
	if len(fields) != len(want) {
		t.Fatalf("fields: got %v, want %v", fields, want)
	}
	for i := range want {
		if fields[i] != want[i] {
			t.Fatalf("fields: got %v, want %v", fields, want)
		}
	}
}

// TestServerExpectContinue: a request with "expect: 100-continue" gets 100 Continue when the
// handler first reads the body, and not before.
func TestServerExpectContinue(t *testing.T) {
	addr := serve(t, &Server{Handler: echoHandler}, false)
	rc := dialRaw(t, addr)
	block := rc.headerBlock(hpack.HeaderField{Name: "expect", Value: "100-continue"})
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	err := rc.readUntil(func(f http2.Frame) bool {
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			statuses = append(statuses, h.PseudoValue("status"))
			if h.PseudoValue("status") == "100" {
				rc.fr.WriteData(1, true, []byte("body"))
			}
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
			return true
		}
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamEnded()
	})
	if err != nil || len(statuses) < 2 || statuses[0] != "100" || statuses[1] != "200" {
		t.Fatalf("statuses: got %v (err %v), want 100 then 200", statuses, err)
	}
}

// TestServerIdleTimeout: a connection without streams gets GOAWAY NO_ERROR and is closed.
func TestServerIdleTimeout(t *testing.T) {
	// The idle timer runs from the conn's start: 500 ms, not 50, so that a test stalled on a
	// busy machine still opens its stream before the conn counts as idle.
	addr := serve(t, &Server{Handler: kibHandler, IdleTimeout: 500 * time.Millisecond}, false)
	rc := dialRaw(t, addr)
	if err := rc.openStream(1, true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var ga *http2.GoAwayFrame
	err := rc.readUntil(func(f http2.Frame) bool {
		ga, _ = f.(*http2.GoAwayFrame)
		return ga != nil
	})
	if ga == nil || ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Fatalf("got GOAWAY %v (err %v), want NO_ERROR with last stream 1", ga, err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("GOAWAY after %v, want about 500ms", d)
	}
	if err := rc.readUntil(func(http2.Frame) bool { return false }); err == nil {
		t.Error("connection still open after the idle GOAWAY")
	}
}

// TestServerKeepAlivePing: a silent client gets a PING after ReadIdleTimeout and, when it
// does not answer within PingTimeout, its connection is closed.
func TestServerKeepAlivePing(t *testing.T) {
	addr := serve(t, &Server{Handler: kibHandler, ReadIdleTimeout: 50 * time.Millisecond,
		PingTimeout: 100 * time.Millisecond, IdleTimeout: -1}, false)
	rc := dialRaw(t, addr)
	var pinged atomic.Bool
	start := time.Now()
	err := rc.readUntil(func(f http2.Frame) bool {
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			pinged.Store(true)
		}
		return false
	})
	if !pinged.Load() || err == nil {
		t.Fatalf("pinged %v, read error %v: want a PING and then the connection closed", pinged.Load(), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v, want about 150ms", d)
	}
}

// TestServerRespectsPeerFrameSize: a 40 KiB response to a client that allows 16 KiB frames
// comes in DATA frames of at most 16 KiB, and a large head is split into CONTINUATION.
func TestServerRespectsPeerFrameSize(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 40<<10)
	long := string(bytes.Repeat([]byte("v"), 20<<10))
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		resp := &message.Response{Status: 200, ContentLength: int64(len(big))}
		resp.Header.Add("x-long", long)
		ex.WriteHeader(resp)
		ex.Write(big)
		ex.Finish(nil)
	}}, false)
	resp, err := h2Client(t, false).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, big) || resp.Header.Get("X-Long") != long {
		t.Fatalf("got %d bytes, x-long %d bytes, err %v", len(b), len(resp.Header.Get("X-Long")), err)
	}
	rc := dialRaw(t, addr)
	rc.openStream(1, true)
	maxData := 0
	rc.readUntil(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok {
			maxData = max(maxData, len(d.Data()))
			if d.StreamEnded() {
				return true
			}
			rc.fr.WriteWindowUpdate(0, uint32(len(d.Data())))
			rc.fr.WriteWindowUpdate(1, uint32(len(d.Data())))
		}
		return false
	})
	if maxData != 16<<10 {
		t.Errorf("largest DATA frame: got %d, want %d", maxData, 16<<10)
	}
}

// TestWorkerPoolSweep: idle workers exit after two sweeps.
func TestWorkerPoolSweep(t *testing.T) {
	srv := &Server{Handler: kibHandler}
	addr := serve(t, srv, false)
	resp, err := h2Client(t, false).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p := &srv.config().pool
	idle := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle)
	}
	deadline := time.Now().Add(5 * time.Second)
	for idle() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if idle() == 0 {
		t.Fatal("no idle worker after a request")
	}
	p.sweep()
	p.sweep()
	if n := idle(); n != 0 {
		t.Errorf("idle workers after two sweeps: got %d, want 0", n)
	}
	// The pool still serves.
	resp, err = h2Client(t, false).Get("http://" + addr + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after sweeping: %v", err)
	}
	resp.Body.Close()
}
