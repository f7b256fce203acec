package h3

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// rawH3 is an HTTP/3 client built directly on quic-go, writing frames by hand, for tests that
// misbehave on purpose.
type rawH3 struct {
	t    *testing.T
	conn *quic.Conn
}

func dialRawH3(t *testing.T, addr string) *rawH3 {
	t.Helper()
	_, pool := testCertificate(t)
	conn, err := quic.DialAddr(ctxTimeout(t, 5*time.Second), addr,
		&tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctrl, err := conn.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	// Control stream type 0x00, then an empty SETTINGS frame (type 0x04).
	if _, err := ctrl.Write([]byte{0x00, 0x04, 0x00}); err != nil {
		t.Fatal(err)
	}
	return &rawH3{t: t, conn: conn}
}

// headersFrame encodes a HEADERS frame for method and path, plus extra fields.
func headersFrame(method, path string, extra ...qpack.HeaderField) []byte {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for _, f := range append([]qpack.HeaderField{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "test"}, {Name: ":path", Value: path},
	}, extra...) {
		enc.WriteField(f)
	}
	b := quicvarint.Append(nil, 0x01)
	b = quicvarint.Append(b, uint64(block.Len()))
	return append(b, block.Bytes()...)
}

// dataFrame encodes a DATA frame.
func dataFrame(p []byte) []byte {
	b := quicvarint.Append(nil, 0x00)
	b = quicvarint.Append(b, uint64(len(p)))
	return append(b, p...)
}

// streamResetCode reads str to its end and returns the code of the reset that ended it.
func streamResetCode(t *testing.T, str *quic.Stream) (http3.ErrCode, bool) {
	t.Helper()
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, str)
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		return http3.ErrCode(se.ErrorCode), true
	}
	return 0, false
}

// TestContentLengthMismatchIsMessageError sends request bodies shorter and longer than their
// content-length: RFC 9114 section 4.1.2 makes both malformed, a stream error of type
// H3_MESSAGE_ERROR (the short one was reset with H3_INTERNAL_ERROR).
func TestContentLengthMismatchIsMessageError(t *testing.T) {
	_, addr := startServer(t, func(ex message.ServerExchange) {
		// As the proxy does: read the body, answer the error if it can.
		_, err := io.Copy(io.Discard, ex.Request().Body)
		if err != nil {
			status := fault.Classify(fault.Downstream, err).StatusCode()
			respond(ex, status, nil, []byte("bad body\n"))
			return
		}
		respond(ex, 200, nil, []byte("ok"))
	}, nil)
	rc := dialRawH3(t, addr)
	for _, tc := range []struct {
		name string
		cl   string
		body int
	}{
		{"shorter", "100", 10},
		{"longer", "10", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			str, err := rc.conn.OpenStreamSync(ctxTimeout(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			msg := headersFrame("POST", "/", qpack.HeaderField{Name: "content-length", Value: tc.cl})
			msg = append(msg, dataFrame(make([]byte, tc.body))...)
			if _, err := str.Write(msg); err != nil {
				t.Fatal(err)
			}
			str.Close()
			code, ok := streamResetCode(t, str)
			if !ok || code != http3.ErrCodeMessageError {
				t.Errorf("stream ended with code %v (reset %v), want H3_MESSAGE_ERROR", code, ok)
			}
		})
	}
}

// TestMaxBodySizeH3: a content-length over MaxBodySize gets 413 without reaching the
// handler; a streamed body past it fails the handler's read with RequestTooLarge after
// exactly the limit.
func TestMaxBodySizeH3(t *testing.T) {
	const limit = 64 << 10
	type result struct {
		n   int64
		err error
	}
	results := make(chan result, 4)
	_, addr := startServer(t, func(ex message.ServerExchange) {
		n, err := io.Copy(io.Discard, ex.Request().Body)
		results <- result{n, err}
		status := 200
		if err != nil {
			status = fault.Classify(fault.Downstream, err).StatusCode()
		}
		respond(ex, status, nil, nil)
	}, func(s *Server) { s.MaxBodySize = limit })
	c, _ := newClient(t)

	res, err := c.Post("https://"+addr+"/", "application/octet-stream", bytes.NewReader(make([]byte, 2*limit)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Errorf("declared 2x limit: status %d, want 413", res.StatusCode)
	}
	select {
	case r := <-results:
		t.Errorf("handler ran for a declared oversized body (%d, %v)", r.n, r.err)
	default:
	}

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
	req, _ := http.NewRequest("POST", "https://"+addr+"/", pr)
	res, err = c.Do(req)
	if err == nil {
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Errorf("streamed 3x limit: status %d, want 413", res.StatusCode)
		}
	}
	pr.CloseWithError(errors.New("done"))
	select {
	case r := <-results:
		if r.n != limit {
			t.Errorf("handler read %d bytes, want exactly %d", r.n, limit)
		}
		if fe, ok := errors.AsType[*fault.Error](r.err); !ok || fe.Kind != fault.RequestTooLarge {
			t.Errorf("body read error %v, want RequestTooLarge", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not finish")
	}
}

// TestRapidResetH3 opens request streams and cancels each once its handler runs (Rapid
// Reset, CVE-2023-44487). QUIC's stream limit keeps the handlers at MaxStreams; the
// connection is closed with H3_EXCESSIVE_LOAD once the canceled streams exceed the budget.
func TestRapidResetH3(t *testing.T) {
	const maxStreams = 32
	var running, peak atomic.Int32
	started := make(chan struct{}, 1024)
	_, addr := startServer(t, func(ex message.ServerExchange) {
		cur := running.Add(1)
		for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
		}
		defer running.Add(-1)
		started <- struct{}{}
		// A handler that stops when the client cancels, as the proxy does.
		<-ex.(interface{ Context() context.Context }).Context().Done()
		ex.Abort(errors.New("client canceled"))
	}, func(s *Server) { s.MaxStreams = maxStreams })
	rc := dialRawH3(t, addr)
	head := headersFrame("GET", "/")
	canceled := 0
	var closeErr error
	for batch := 0; batch < 500 && closeErr == nil; batch++ {
		var strs []*quic.Stream
		for range maxStreams {
			str, err := rc.conn.OpenStreamSync(ctxTimeout(t, 5*time.Second))
			if err != nil {
				closeErr = err
				break
			}
			if _, err := str.Write(head); err != nil {
				closeErr = err
				break
			}
			str.Close()
			strs = append(strs, str)
		}
		for range strs {
			select {
			case <-started:
			case <-rc.conn.Context().Done():
				closeErr = context.Cause(rc.conn.Context())
			case <-time.After(10 * time.Second):
				t.Fatal("handler not started")
			}
			if closeErr != nil {
				break
			}
		}
		for _, str := range strs {
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
			str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
			canceled++
		}
	}
	if closeErr == nil {
		select {
		case <-rc.conn.Context().Done():
			closeErr = context.Cause(rc.conn.Context())
		case <-time.After(10 * time.Second):
		}
	}
	ae, ok := errors.AsType[*quic.ApplicationError](closeErr)
	if !ok || !ae.Remote || http3.ErrCode(ae.ErrorCode) != http3.ErrCodeExcessiveLoad {
		t.Fatalf("after %d canceled streams: connection error %v, want H3_EXCESSIVE_LOAD from the server", canceled, closeErr)
	}
	if got := peak.Load(); got > maxStreams {
		t.Errorf("peak concurrent handlers: got %d, want at most %d", got, maxStreams)
	}
	t.Logf("connection closed after %d canceled streams; peak handlers %d", canceled, peak.Load())
}

// TestZeroCreditStallH3 reads nothing of a large response: once the stream's flow-control
// credit is spent, the handler's blocked Write fails with a downstream WriteTimeout after
// SendTimeout instead of holding the stream (and a proxy's upstream connection) for ever.
func TestZeroCreditStallH3(t *testing.T) {
	werr := make(chan error, 1)
	_, addr := startServer(t, func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		chunk := make([]byte, 64<<10)
		var err error
		for i := 0; i < 1024 && err == nil; i++ { // 64 MiB: far past any window
			_, err = ex.Write(chunk)
		}
		werr <- err
		ex.Abort(err)
	}, func(s *Server) { s.SendTimeout = 200 * time.Millisecond })
	rc := dialRawH3(t, addr)
	str, err := rc.conn.OpenStreamSync(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(headersFrame("GET", "/big")); err != nil {
		t.Fatal(err)
	}
	str.Close()
	select {
	case err := <-werr:
		if fe, ok := errors.AsType[*fault.Error](err); !ok || fe.Kind != fault.WriteTimeout || fe.Source != fault.Downstream {
			t.Errorf("blocked Write returned %v, want a downstream WriteTimeout fault", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Write stayed blocked on a stream the client does not read")
	}
}

// TestConnectionBurst opens many QUIC connections at once, one request each: none may be
// refused after its handshake because the accept queue was full (0.8% were, with 100
// clients; with one accepting goroutine, 7 to 161 of these 300 are). Other failures (handshake timeouts on an overloaded machine) are logged, not
// counted: the refusal is what this test is about.
func TestConnectionBurst(t *testing.T) {
	_, addr := startServer(t, echo, nil)
	_, pool := testCertificate(t)
	const clients = 300
	var wg sync.WaitGroup
	var refused, other atomic.Int32
	var firstErr atomic.Value
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http3.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool},
				QUICConfig:      &quic.Config{HandshakeIdleTimeout: 30 * time.Second, MaxIdleTimeout: 30 * time.Second},
			}
			defer tr.Close()
			c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
			res, err := c.Get("https://" + addr + "/")
			if err != nil {
				if strings.Contains(err.Error(), "CONNECTION_REFUSED") {
					refused.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					other.Add(1)
					t.Logf("connection failed (not refused): %v", err)
				}
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}()
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Errorf("%d of %d connections refused, first: %v", n, clients, firstErr.Load())
	}
	if n := other.Load(); n == clients {
		t.Fatal("no connection succeeded")
	}
}

// TestClientGoneMidBodyIs499H3 closes the QUIC connection while the handler reads the
// request body: the read fails with a downstream fault that the access log shows as 499, as
// for HTTP/1 and HTTP/2.
func TestClientGoneMidBodyIs499H3(t *testing.T) {
	rerr := make(chan error, 1)
	started := make(chan struct{})
	_, addr := startServer(t, func(ex message.ServerExchange) {
		buf := make([]byte, 1000)
		_, err := io.ReadFull(ex.Request().Body, buf)
		if err == nil {
			close(started)
			_, err = io.Copy(io.Discard, ex.Request().Body)
		}
		rerr <- err
		ex.Abort(err)
	}, nil)
	rc := dialRawH3(t, addr)
	str, err := rc.conn.OpenStreamSync(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg := headersFrame("POST", "/", qpack.HeaderField{Name: "content-length", Value: "100000"})
	if _, err := str.Write(append(msg, dataFrame(make([]byte, 1000))...)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case err := <-rerr:
		t.Fatalf("body read failed early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not read the first bytes")
	}
	rc.conn.CloseWithError(0, "gone")
	select {
	case err := <-rerr:
		if got := fault.Classify(fault.Downstream, err).StatusCode(); got != 499 {
			t.Errorf("body read error %v maps to %d, want 499", err, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("body read did not fail")
	}
}

// TestQPACKBombH3 sends a HEADERS frame of 3,000 one-byte references to the static table
// entry "accept: */*": 3 KB on the wire, 123 KB decoded, over the 64 KiB limit. quic-go
// stops decoding at the limit and answers 431 without running the handler.
func TestQPACKBombH3(t *testing.T) {
	var handled atomic.Int32
	_, addr := startServer(t, func(ex message.ServerExchange) {
		handled.Add(1)
		respond(ex, 200, nil, nil)
	}, nil)
	rc := dialRawH3(t, addr)
	str, err := rc.conn.OpenStreamSync(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for _, f := range []qpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "test"}, {Name: ":path", Value: "/"}} {
		enc.WriteField(f)
	}
	for range 3000 {
		block.WriteByte(0xc0 | 29) // indexed field line, static table 29: "accept: */*"
	}
	frame := quicvarint.Append(nil, 0x01)
	frame = quicvarint.Append(frame, uint64(block.Len()))
	if _, err := str.Write(append(frame, block.Bytes()...)); err != nil {
		t.Fatal(err)
	}
	str.Close()
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, err := quicvarint.Read(quicvarint.NewReader(str))
	if err != nil || typ != 0x01 {
		t.Fatalf("first response frame: type %d, err %v; want HEADERS", typ, err)
	}
	r := quicvarint.NewReader(str)
	n, err := quicvarint.Read(r)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(str, payload); err != nil {
		t.Fatal(err)
	}
	status := ""
	decode := qpack.NewDecoder().Decode(payload)
	for {
		f, err := decode()
		if err != nil {
			break
		}
		if f.Name == ":status" {
			status = f.Value
		}
	}
	if status != "431" {
		t.Errorf("status %q, want 431", status)
	}
	if handled.Load() != 0 {
		t.Error("handler ran for a header section over the limit")
	}
}

// TestInterimToStalledClient: a client that grants no flow-control credit on its request
// stream cannot block WriteInterim (which runs on a shared upstream connection's reader when
// relaying): the write gives up after the send timeout and the stream is aborted.
func TestInterimToStalledClient(t *testing.T) {
	done := make(chan error, 1)
	_, addr := startServer(t, func(ex message.ServerExchange) {
		iw := ex.(message.InterimWriter)
		var h message.Header
		h.Add("Link", "</"+strings.Repeat("a", 4<<10)+">; rel=preload")
		var err error
		for i := 0; i < 64 && err == nil; i++ { // 256 KiB: beyond the client's window
			err = iw.WriteInterim(103, &h)
		}
		done <- err
		ex.Finish(nil)
	}, func(s *Server) { s.SendTimeout = 100 * time.Millisecond })
	_, pool := testCertificate(t)
	conn, err := quic.DialAddr(ctxTimeout(t, 5*time.Second), addr,
		&tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{MaxIdleTimeout: 30 * time.Second, InitialStreamReceiveWindow: 16 << 10, MaxStreamReceiveWindow: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctrl, err := conn.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write([]byte{0x00, 0x04, 0x00})
	str, err := conn.OpenStreamSync(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	str.Write(headersFrame("GET", "/"))
	str.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("256 KiB of interim heads went to a client that granted 16 KiB")
		}
	case <-time.After(20 * time.Second): // a guard, not a measurement
		t.Fatal("WriteInterim blocked on a client that grants no flow-control credit")
	}
}

// TestBodyReadStallH3 sends the first bytes of a request body and then nothing: the handler's
// read fails with a downstream ReadTimeout fault after BodyReadTimeout and the client is told
// to stop sending (STOP_SENDING H3_REQUEST_CANCELLED). A handler that then answers sends 408;
// one that gives up (Abort) gets its stream reset with H3_REQUEST_CANCELLED.
func TestBodyReadStallH3(t *testing.T) {
	errs := make(chan error, 2)
	_, addr := startServer(t, func(ex message.ServerExchange) {
		b, err := io.ReadAll(ex.Request().Body)
		if err == nil {
			err = errors.New("body read to its end: " + string(b))
		}
		errs <- err
		if ex.Request().Target == "/abort" {
			ex.Abort(err)
			return
		}
		respond(ex, fault.Classify(fault.Downstream, err).StatusCode(), nil, []byte("timeout\n"))
	}, func(s *Server) { s.BodyReadTimeout = 200 * time.Millisecond })
	wantTimeout := func() {
		t.Helper()
		select {
		case err := <-errs:
			if fe, ok := errors.AsType[*fault.Error](err); !ok || fe.Source != fault.Downstream || fe.Kind != fault.ReadTimeout {
				t.Errorf("stalled body read returned %v, want a downstream read timeout fault", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a body read stayed blocked on a client that sends nothing")
		}
	}

	// The handler answers: 408.
	c, _ := newClient(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("abc"))
	req, _ := http.NewRequestWithContext(ctxTimeout(t, 15*time.Second), "POST", "https://"+addr+"/", pr)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 408 {
		t.Errorf("status %d, want 408", res.StatusCode)
	}
	wantTimeout()

	// The handler gives up: the stream is reset with H3_REQUEST_CANCELLED both ways.
	rc := dialRawH3(t, addr)
	str, err := rc.conn.OpenStreamSync(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write(append(headersFrame("POST", "/abort"), dataFrame([]byte("abc"))...)); err != nil {
		t.Fatal(err)
	}
	wantTimeout()
	if code, ok := streamResetCode(t, str); !ok || code != http3.ErrCodeRequestCanceled {
		t.Errorf("stream ended with code %v (reset %v), want H3_REQUEST_CANCELLED", code, ok)
	}
	// STOP_SENDING: more body bytes are refused (the window fills, then the write fails).
	str.SetWriteDeadline(time.Now().Add(10 * time.Second))
	chunk := dataFrame(make([]byte, 16<<10))
	var werr error
	for i := 0; i < 1000 && werr == nil; i++ {
		_, werr = str.Write(chunk)
	}
	if se, ok := errors.AsType[*quic.StreamError](werr); !ok || http3.ErrCode(se.ErrorCode) != http3.ErrCodeRequestCanceled {
		t.Errorf("writing more body: %v, want STOP_SENDING H3_REQUEST_CANCELLED", werr)
	}
}
