package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// goAwayWatch reads frames in the background until a GOAWAY or the end of the connection.
// ended is closed then; code is the GOAWAY's error code (valid when got is true).
type goAwayWatch struct {
	ended chan struct{}
	got   atomic.Bool
	code  atomic.Uint32
}

func watchGoAway(rc *rawClient, onFrame func(http2.Frame)) *goAwayWatch {
	w := &goAwayWatch{ended: make(chan struct{})}
	go func() {
		defer close(w.ended)
		rc.readUntil(func(f http2.Frame) bool {
			if onFrame != nil {
				onFrame(f)
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				w.code.Store(uint32(ga.ErrCode))
				w.got.Store(true)
				return true
			}
			return false
		})
	}()
	return w
}

func (w *goAwayWatch) done() bool {
	select {
	case <-w.ended:
		return true
	default:
		return false
	}
}

// wait waits for the connection to end and checks it ended with GOAWAY code.
func (w *goAwayWatch) wait(t *testing.T, code http2.ErrCode) {
	t.Helper()
	select {
	case <-w.ended:
	case <-time.After(15 * time.Second):
		t.Fatal("connection not ended")
	}
	if !w.got.Load() {
		t.Fatal("connection closed without GOAWAY")
	}
	if got := http2.ErrCode(w.code.Load()); got != code {
		t.Errorf("GOAWAY code: got %v, want %v", got, code)
	}
}

// TestAbuseFloods sends, per case, a flood of frames that each cost the server a little and
// carry no request progress, from a client that reads everything the server sends. The
// server must end the connection with GOAWAY ENHANCE_YOUR_CALM within a bounded number of
// frames (NGINX cuts each of these within a second), count it through CountError, and keep
// serving other connections.
func TestAbuseFloods(t *testing.T) {
	// The default budget is 10,000 cheap frames or 100 rejects; the client counts what it
	// wrote, which runs ahead of what the server read by the sockets' buffers.
	const maxFrames = 1 << 20
	cases := []struct {
		name   string
		reason string
		setup  func(rc *rawClient) error
		send   func(rc *rawClient, i int) error
	}{
		{name: "ping", reason: "ping_flood", send: func(rc *rawClient, i int) error {
			return rc.fr.WritePing(false, [8]byte{byte(i)})
		}},
		{name: "settings", reason: "settings_flood", send: func(rc *rawClient, i int) error {
			return rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
		}},
		{name: "empty data", reason: "empty_data_flood",
			setup: func(rc *rawClient) error {
				return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1,
					BlockFragment: rc.headerBlock(hpack.HeaderField{Name: "content-type", Value: "text/plain"}), EndHeaders: true})
			},
			send: func(rc *rawClient, i int) error { return rc.fr.WriteData(1, false, nil) }},
		{name: "empty continuation", reason: "continuation_flood",
			setup: func(rc *rawClient) error {
				return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock()})
			},
			send: func(rc *rawClient, i int) error { return rc.fr.WriteContinuation(1, false, nil) }},
		{name: "priority", reason: "priority_flood", send: func(rc *rawClient, i int) error {
			return rc.fr.WritePriority(uint32(2*i+1), http2.PriorityParam{Weight: 1})
		}},
		{name: "tiny window updates", reason: "window_update_flood", send: func(rc *rawClient, i int) error {
			return rc.fr.WriteWindowUpdate(0, 1)
		}},
		{name: "unknown frame", reason: "unknown_frame_flood", send: func(rc *rawClient, i int) error {
			return rc.fr.WriteRawFrame(0xfa, 0, 0, nil)
		}},
		{name: "hpack bomb", reason: "rejected_header_flood",
			send: func(rc *rawClient, i int) error {
				// An HPACK bomb: a 4 KiB field enters the dynamic table and is referenced 20
				// times: a few KiB encoded, 80 KiB decoded, over the 64 KiB list limit: 431.
				extra := make([]hpack.HeaderField, 20)
				for j := range extra {
					extra[j] = hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)}
				}
				return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1),
					BlockFragment: rc.headerBlock(extra...), EndStream: true, EndHeaders: true})
			}},
		{name: "pings paid with ignored data", reason: "ping_flood",
			setup: func(rc *rawClient) error {
				// Stream 1 contradicts its content-length: the server resets it, and DATA
				// the client sends on it afterwards is dropped.
				if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1,
					BlockFragment: rc.headerBlock(hpack.HeaderField{Name: "content-length", Value: "1"}), EndHeaders: true}); err != nil {
					return err
				}
				return rc.fr.WriteData(1, false, []byte("xx"))
			},
			send: func(rc *rawClient, i int) error {
				// Dropped body bytes are no useful work: they must not pay for the PINGs.
				if err := rc.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
					return err
				}
				return rc.fr.WriteData(1, false, kib)
			}},
		{name: "refused streams", reason: "stream_error_flood", send: func(rc *rawClient, i int) error {
			// Malformed requests (no :path): each is reset with PROTOCOL_ERROR.
			rc.hbuf.Reset()
			rc.henc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
			rc.henc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
			return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1),
				BlockFragment: bytes.Clone(rc.hbuf.Bytes()), EndStream: true, EndHeaders: true})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var counted sync.Map
			srv := &Server{Handler: func(ex message.ServerExchange) {
				if b := ex.Request().Body; b != nil {
					io.Copy(io.Discard, b)
				}
				ex.WriteHeader(&message.Response{Status: 204})
				ex.Finish(nil)
			}, CountError: func(e string) { counted.Store(e, true) }}
			addr := serve(t, srv, false)
			rc := dialRaw(t, addr)
			w := watchGoAway(rc, nil)
			if tc.setup != nil {
				if err := tc.setup(rc); err != nil {
					t.Fatal(err)
				}
			}
			sent := 0
			for ; sent < maxFrames && !w.done(); sent++ {
				if err := tc.send(rc, sent); err != nil {
					break
				}
			}
			w.wait(t, http2.ErrCodeEnhanceYourCalm)
			if sent >= maxFrames {
				t.Errorf("server accepted %d flood frames", sent)
			}
			if _, ok := counted.Load("conn_ENHANCE_YOUR_CALM_" + tc.reason); !ok {
				var seen []string
				counted.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
				t.Errorf("CountError did not see conn_ENHANCE_YOUR_CALM_%s; saw %v", tc.reason, seen)
			}
			t.Logf("connection ended after %d frames", sent)
			// A normal client is still served.
			resp, err := h2Client(t, false).Get("http://" + addr + "/")
			if err != nil {
				t.Fatalf("normal client after the flood: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 204 {
				t.Errorf("normal client: status %d, want 204", resp.StatusCode)
			}
		})
	}
}

// TestAbuseFloodBudgetFitsNormalUse checks that a client that mixes requests with a
// moderate number of PINGs, SETTINGS and canceled streams is not cut off.
func TestAbuseFloodBudgetFitsNormalUse(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		if ex.Request().Header.Has("x-cancel") {
			// Canceled by the client before it answers: a handler that notices.
			select {
			case <-release:
			case <-ex.(interface{ Context() context.Context }).Context().Done():
			}
		}
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}, false)
	rc := dialRaw(t, addr)
	answered := make(chan uint32, 1)
	w := watchGoAway(rc, func(f http2.Frame) {
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamEnded() {
			answered <- h.StreamID
		}
	})
	for i := range 500 {
		id := uint32(4*i + 1)
		if err := rc.openStream(id, true); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		// A canceled request: opened, then reset before its answer.
		if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id + 2,
			BlockFragment: rc.headerBlock(hpack.HeaderField{Name: "x-cancel", Value: "1"}), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		rc.fr.WriteRSTStream(id+2, http2.ErrCodeCancel)
		rc.fr.WritePing(false, [8]byte{1})
		rc.fr.WriteSettings()
		select {
		case <-answered:
		case <-w.ended:
			t.Fatalf("connection cut after %d requests (GOAWAY %v)", i, http2.ErrCode(w.code.Load()))
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
		}
	}
}

// TestAbuseControlFramesUnread floods PINGs over a synchronous pipe without ever reading: the
// answers cannot leave, and the server must close the connection once its queue of answers
// reaches maxPendingControl instead of growing it (3.2 GB in 60 s before the fix).
func TestAbuseControlFramesUnread(t *testing.T) {
	for _, kind := range []string{"ping", "settings"} {
		t.Run(kind, func(t *testing.T) {
			// The flood score must not be what ends it here.
			srv := &Server{Handler: echoHandler, Logger: quietLogger(), floodLimit: 1 << 40}
			const limit = 1 << 20 // frames: far more than the queue may hold
			sent := floodUnread(t, srv, "control_frames_unread", limit, 1024, func(fr *http2.Framer, _ int) error {
				if kind == "ping" {
					return fr.WritePing(false, [8]byte{})
				}
				return fr.WriteSettings()
			})
			t.Logf("connection ended after %d unread %s frames", sent, kind)
		})
	}
}

// TestAbuseResponsesUnread sends requests whose responses are head-only and never reads:
// no flow control or write backpressure holds those heads back, so each request grew the
// write buffer until the write timeout. The connection ends with GOAWAY ENHANCE_YOUR_CALM
// once the unread answers pass maxPendingResponses, as for unread control frames.
func TestAbuseResponsesUnread(t *testing.T) {
	big := strings.Repeat("v", 1024)
	// The flood score and the stream limit must not be what ends it here.
	srv := &Server{Logger: quietLogger(), floodLimit: 1 << 40, MaxConcurrentStreams: 1 << 20,
		Handler: func(ex message.ServerExchange) {
			resp := &message.Response{Status: 200}
			resp.Header.Add("x-big", big)
			ex.WriteHeader(resp)
			ex.Finish(nil)
		}}
	var hbuf bytes.Buffer
	henc := hpack.NewEncoder(&hbuf)
	for _, f := range [...]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/"}, {Name: ":authority", Value: "a"},
	} {
		henc.WriteField(f)
	}
	block := hbuf.Bytes() // static-table fields only: the same bytes for every request
	const limit = 1 << 16 // requests: 64 MiB of response heads
	sent := floodUnread(t, srv, "responses_unread", limit, 256, func(fr *http2.Framer, i int) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1),
			BlockFragment: block, EndStream: true, EndHeaders: true})
	})
	t.Logf("connection ended after %d requests with unread responses", sent)
}

// floodUnread serves srv on a synchronous pipe and, reading nothing, calls send with frame
// numbers 0, 1, ... until it fails or, checked every `every` frames, srv counted the GOAWAY
// ENHANCE_YOUR_CALM with reason. It fails the test unless the server cut the connection before
// limit frames for that reason, and returns how many frames were sent. It sets srv.CountError.
func floodUnread(t *testing.T, srv *Server, reason string, limit, every int, send func(fr *http2.Framer, i int) error) int {
	t.Helper()
	var counted sync.Map
	srv.CountError = func(e string) { counted.Store(e, true) }
	want := "conn_ENHANCE_YOUR_CALM_" + reason
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeConn(t.Context(), server, nil)
	}()
	t.Cleanup(func() { client.Close(); <-done })
	fr := http2.NewFramer(client, client)
	client.SetWriteDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(client, http2.ClientPreface)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	sent := 0
	for ; sent < limit; sent++ {
		if err := send(fr, sent); err != nil {
			break
		}
		// After the cut the server drains what the client still sends for a while
		// (finishWrites), so a fast client may keep writing: the cut is what counts.
		if sent%every == 0 {
			if _, ok := counted.Load(want); ok {
				break
			}
		}
	}
	if sent == limit {
		t.Fatalf("server accepted %d frames without their answers being read", sent)
	}
	client.Close()
	<-done
	if _, ok := counted.Load(want); !ok {
		t.Errorf("CountError did not see %s", want)
	}
	return sent
}

// A client may allow frames of up to 16 MiB (SETTINGS_MAX_FRAME_SIZE), but one Write's DATA
// frame is at most maxPendingWrite: a 512 KiB Write once went into the write buffer as one
// frame, past the maxPendingControl bound, and the client's next PING or request (while the
// writer waited on the socket) ended its connection as not reading.
func TestDataFrameAtMostMaxPendingWrite(t *testing.T) {
	payload := make([]byte, 512<<10)
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: int64(len(payload))})
		ex.Write(payload)
		ex.Finish(nil)
	}}, false)
	rc := dialRaw(t, addr)
	rc.fr.SetMaxReadFrameSize(1 << 20)
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := rc.openStream(1, true); err != nil {
		t.Fatal(err)
	}
	got, largest := 0, 0
	err := rc.readUntil(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			got += len(d.Data())
			largest = max(largest, len(d.Data()))
			return d.StreamEnded()
		}
		return false
	})
	if err != nil || got != len(payload) {
		t.Fatalf("read %d of %d body bytes: %v", got, len(payload), err)
	}
	if largest > maxPendingWrite {
		t.Errorf("largest DATA frame %d bytes, want at most maxPendingWrite (%d)", largest, maxPendingWrite)
	}
}

// zeroWindowClient dials addr with SETTINGS_INITIAL_WINDOW_SIZE 0 and never grants window.
func zeroWindowClient(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawClient{t: t, conn: c, fr: http2.NewFramer(c, c), settings: map[http2.SettingID]uint32{}}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	io.WriteString(c, http2.ClientPreface)
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestAbuseZeroWindowStall opens streams with SETTINGS_INITIAL_WINDOW_SIZE 0 and never
// sends WINDOW_UPDATE (issues 11 and 12: each held its stream and its upstream connection for
// ever). Each stream is reset (RST_STREAM CANCEL) after SendTimeout, and the handler's
// blocked Write returns a downstream WriteTimeout fault.
func TestAbuseZeroWindowStall(t *testing.T) {
	const streams = 8
	werrs := make(chan error, streams)
	srv := &Server{SendTimeout: 200 * time.Millisecond, Handler: func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		_, err := ex.Write(make([]byte, 4096))
		werrs <- err
		if err != nil {
			ex.Abort(err)
			return
		}
		ex.Finish(nil)
	}}
	addr := serve(t, srv, false)
	rc := zeroWindowClient(t, addr)
	resets := make(chan *http2.RSTStreamFrame, streams)
	w := watchGoAway(rc, func(f http2.Frame) {
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			resets <- r
		}
	})
	for i := range streams {
		if err := rc.openStream(uint32(2*i+1), true); err != nil {
			t.Fatal(err)
		}
	}
	for range streams {
		select {
		case err := <-werrs:
			fe, ok := errors.AsType[*fault.Error](err)
			if !ok || fe.Source != fault.Downstream || fe.Kind != fault.WriteTimeout {
				t.Errorf("blocked Write returned %v, want a downstream write timeout fault", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a Write stayed blocked on a zero window")
		}
	}
	for range streams {
		select {
		case r := <-resets:
			if r.ErrCode != http2.ErrCodeCancel {
				t.Errorf("stream %d reset with %v, want CANCEL", r.StreamID, r.ErrCode)
			}
		case <-w.ended:
			t.Fatal("connection ended instead of the streams being reset")
		case <-time.After(15 * time.Second):
			t.Fatal("stalled stream not reset")
		}
	}
}

// TestAbuseConnWindowStall grants stream window but never connection window: once the
// connection's 65,535 bytes are spent, the connection is closed with GOAWAY
// ENHANCE_YOUR_CALM after SendTimeout and the blocked Write fails.
func TestAbuseConnWindowStall(t *testing.T) {
	werr := make(chan error, 1)
	srv := &Server{SendTimeout: 200 * time.Millisecond, Handler: func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		_, err := ex.Write(make([]byte, 256<<10))
		werr <- err
		ex.Abort(err)
	}}
	addr := serve(t, srv, false)
	rc := dialRaw(t, addr)
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	w := watchGoAway(rc, nil)
	if err := rc.openStream(1, true); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-werr:
		if fe, ok := errors.AsType[*fault.Error](err); !ok || fe.Kind != fault.WriteTimeout {
			t.Errorf("blocked Write returned %v, want a write timeout fault", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Write stayed blocked on a closed connection window")
	}
	w.wait(t, http2.ErrCodeEnhanceYourCalm)
}

// TestAbuseBodyReadStall sends a request body's first bytes and then nothing, without
// END_STREAM: the handler's Read that waits for more fails with a downstream ReadTimeout
// fault after BodyReadTimeout, and the stream is reset with CANCEL, so a proxy releases its
// upstream connection instead of holding it for as long as the client keeps the stream.
func TestAbuseBodyReadStall(t *testing.T) {
	rerr := make(chan error, 1)
	srv := &Server{BodyReadTimeout: 200 * time.Millisecond, Handler: func(ex message.ServerExchange) {
		b, err := io.ReadAll(ex.Request().Body)
		if err == nil {
			err = errors.New("body read to its end: " + string(b))
		}
		rerr <- err
		ex.Abort(err)
	}}
	addr := serve(t, srv, false)
	rc := dialRaw(t, addr)
	resets := make(chan *http2.RSTStreamFrame, 1)
	w := watchGoAway(rc, func(f http2.Frame) {
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			resets <- r
		}
	})
	if err := rc.openStream(1, false); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteData(1, false, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-rerr:
		fe, ok := errors.AsType[*fault.Error](err)
		if !ok || fe.Source != fault.Downstream || fe.Kind != fault.ReadTimeout {
			t.Errorf("stalled body Read returned %v, want a downstream read timeout fault", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a body Read stayed blocked on a client that sends nothing")
	}
	select {
	case r := <-resets:
		if r.StreamID != 1 || r.ErrCode != http2.ErrCodeCancel {
			t.Errorf("stream %d reset with %v, want stream 1 with CANCEL", r.StreamID, r.ErrCode)
		}
	case <-w.ended:
		t.Fatal("connection ended instead of the stream being reset")
	case <-time.After(15 * time.Second):
		t.Fatal("stalled stream not reset")
	}
}

// TestMaxBodySize: a content-length over the limit gets 413 without reaching the
// handler; a streamed body that grows past it fails the handler's read with a
// RequestTooLarge fault after exactly the limit.
func TestMaxBodySize(t *testing.T) {
	const limit = 64 << 10
	type result struct {
		n   int64
		err error
	}
	results := make(chan result, 4)
	srv := &Server{MaxBodySize: limit, Handler: func(ex message.ServerExchange) {
		n, err := io.Copy(io.Discard, ex.Request().Body)
		results <- result{n, err}
		status := 200
		if fe, ok := errors.AsType[*fault.Error](err); ok {
			status = fe.StatusCode()
		}
		ex.WriteHeader(&message.Response{Status: status})
		ex.Finish(nil)
	}}
	addr := serve(t, srv, false)
	c := h2Client(t, false)

	// Declared too large: 413 up front.
	resp, err := c.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(make([]byte, 2*limit)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("declared 2x limit: status %d, want 413", resp.StatusCode)
	}
	select {
	case r := <-results:
		t.Errorf("handler ran for a declared oversized body (read %d, %v)", r.n, r.err)
	default:
	}

	// Streamed without content-length: the handler reads exactly limit bytes, then the fault.
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 8<<10)
		for i := 0; i < 3*limit/len(chunk); i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err = c.Post("http://"+addr+"/", "application/octet-stream", pr)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("streamed 3x limit: status %d, want 413", resp.StatusCode)
		}
	}
	pr.CloseWithError(errors.New("done"))
	select {
	case r := <-results:
		if r.n != limit {
			t.Errorf("handler read %d bytes, want exactly %d", r.n, limit)
		}
		if fe, ok := errors.AsType[*fault.Error](r.err); !ok || fe.Kind != fault.RequestTooLarge {
			t.Errorf("body read error %v, want a RequestTooLarge fault", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not finish reading")
	}

	// At the limit: fine.
	resp, err = c.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(make([]byte, limit)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("body at the limit: status %d, want 200", resp.StatusCode)
	}
	<-results
}

// TestClientGoneMidBodyIs499 closes the connection while the handler reads the request body:
// the read fails with a downstream ConnectionClosed fault, which the access log shows as 499
// (as HTTP/1 does), not as a 500.
func TestClientGoneMidBodyIs499(t *testing.T) {
	rerr := make(chan error, 1)
	srv := &Server{Handler: func(ex message.ServerExchange) {
		_, err := io.Copy(io.Discard, ex.Request().Body)
		rerr <- err
		ex.Abort(err)
	}}
	addr := serve(t, srv, false)
	rc := dialRaw(t, addr)
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1,
		BlockFragment: rc.headerBlock(hpack.HeaderField{Name: "content-length", Value: "100000"}), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteData(1, false, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	rc.conn.Close()
	select {
	case err := <-rerr:
		if got := fault.Classify(fault.Downstream, err).StatusCode(); got != 499 {
			t.Errorf("body read error %v maps to %d, want 499", err, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("body read did not fail")
	}
}

// TestAbuseBDPPingsAreFree streams a response in bursts and sends a PING after each burst
// received, as gRPC's bandwidth-delay estimator does. A PING that follows response data is
// free: with a flood limit of 100, 500 of them must not end the connection, while the same
// PINGs without data in between would (TestAbuseFloods/ping).
func TestAbuseBDPPingsAreFree(t *testing.T) {
	const bursts = 500
	next := make(chan struct{}, 1)
	srv := &Server{floodLimit: 100, Handler: func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		chunk := make([]byte, 64)
		for range bursts {
			if _, err := ex.Write(chunk); err != nil {
				ex.Abort(err)
				return
			}
			select {
			case <-next: // the client saw the burst and its PING was answered
			case <-time.After(10 * time.Second):
				ex.Abort(errors.New("client stalled"))
				return
			}
		}
		ex.Finish(nil)
	}}
	addr := serve(t, srv, false)
	rc := dialRaw(t, addr)
	if err := rc.openStream(1, true); err != nil {
		t.Fatal(err)
	}
	pings, got := 0, 0
	err := rc.readUntil(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v after %d PINGs", f.ErrCode, pings)
		case *http2.PingFrame:
			if f.IsAck() {
				next <- struct{}{}
			}
		case *http2.DataFrame:
			got += len(f.Data())
			if len(f.Data()) > 0 {
				pings++
				rc.fr.WritePing(false, [8]byte{byte(pings)})
			}
			return f.StreamEnded()
		}
		return false
	})
	if err != nil {
		t.Fatalf("after %d bytes and %d PINGs: %v", got, pings, err)
	}
	if got != bursts*64 || pings != bursts {
		t.Errorf("got %d bytes and sent %d PINGs, want %d and %d", got, pings, bursts*64, bursts)
	}
}

// DATA the server drops counts against the connection's receive window like any other until
// the WINDOW_UPDATE that returns it. DATA on a closed stream once grew the server's window by
// every byte (its check against a client overrunning the window loosened, and after 2 GiB
// over a connection's life the int32 window wrapped negative and the next DATA frame ended the
// connection with FLOW_CONTROL_ERROR), and the frame that contradicted content-length was
// never returned (each such stream shrank the connection's window for good).
func TestDroppedDataKeepsConnWindow(t *testing.T) {
	srv := &Server{Handler: echoHandler}
	addr := serve(t, srv, false)
	rc := dialRaw(t, addr)
	synced := make(chan struct{})
	watchGoAway(rc, func(f http2.Frame) {
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && string(p.Data[:]) == "syncsync" {
			close(synced)
		}
	})
	// Stream 1 contradicts its content-length: the server resets it, and drops what follows.
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1,
		BlockFragment: rc.headerBlock(hpack.HeaderField{Name: "content-length", Value: "1"}), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteData(1, false, []byte("xx")); err != nil {
		t.Fatal(err)
	}
	// The server returns the window of dropped DATA at once, so the client stays within it.
	for range 3 * DefaultMaxUploadBufferPerConnection / len(kib) {
		if err := rc.fr.WriteData(1, false, kib); err != nil {
			t.Fatal(err)
		}
	}
	// The server handles frames in order: once it answered this PING it has seen the DATA.
	if err := rc.fr.WritePing(false, [8]byte{'s', 'y', 'n', 'c', 's', 'y', 'n', 'c'}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-synced:
	case <-time.After(15 * time.Second):
		t.Fatal("no PING acknowledgement")
	}
	st := srv.config()
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(st.conns))
	}
	for sc := range st.conns {
		sc.mu.Lock()
		if got := sc.recvWindow + sc.recvUnacked; got != st.connWindow {
			t.Errorf("receive window %d + unacknowledged %d = %d, want the connection window %d",
				sc.recvWindow, sc.recvUnacked, got, st.connWindow)
		}
		sc.mu.Unlock()
	}
}
