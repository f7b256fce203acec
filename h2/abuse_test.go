package h2

import (
	"bytes"
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

	"github.com/verge-edge/verge/message"
)

// rawClient speaks HTTP/2 frame by frame to a server, for tests that misbehave on purpose.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	// settings are the server's SETTINGS, read by handshake.
	settings map[http2.SettingID]uint32
}

// dialRaw connects to addr, sends the preface and an empty SETTINGS, reads the server's
// SETTINGS and acknowledges them.
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawClient{t: t, conn: c, fr: http2.NewFramer(c, c), settings: map[http2.SettingID]uint32{}}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.fr.MaxHeaderListSize = 1 << 20
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading server SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			sf.ForeachSetting(func(s http2.Setting) error {
				rc.settings[s.ID] = s.Val
				return nil
			})
			if err := rc.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return rc
		}
	}
}

// headerBlock encodes a GET request's header block, plus extra fields.
func (rc *rawClient) headerBlock(extra ...hpack.HeaderField) []byte {
	rc.hbuf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/"}, {Name: ":authority", Value: "test"},
	}, extra...) {
		rc.henc.WriteField(f)
	}
	return bytes.Clone(rc.hbuf.Bytes())
}

func (rc *rawClient) openStream(id uint32, endStream bool) error {
	return rc.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: rc.headerBlock(), EndStream: endStream, EndHeaders: true,
	})
}

// readUntil reads frames until fn returns true or the connection ends; it returns the
// read error, nil when fn stopped it.
func (rc *rawClient) readUntil(fn func(http2.Frame) bool) error {
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			return err
		}
		if fn(f) {
			return nil
		}
	}
}

func TestAbuseSettingsAdvertised(t *testing.T) {
	addr := serve(t, &Server{Handler: echoHandler}, false)
	rc := dialRaw(t, addr)
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: DefaultMaxConcurrentStreams,
		http2.SettingMaxHeaderListSize:    DefaultMaxHeaderListSize,
		http2.SettingMaxFrameSize:         DefaultMaxReadFrameSize,
		http2.SettingInitialWindowSize:    DefaultMaxUploadBufferPerStream,
	}
	for id, v := range want {
		if got := rc.settings[id]; got != v {
			t.Errorf("%v: got %d, want %d", id, got, v)
		}
	}
}

// TestAbuseRapidReset opens and resets thousands of streams (CVE-2023-44487) against
// handlers that do not return promptly: the handler count stays at MaxConcurrentStreams and
// the server ends the connection with GOAWAY ENHANCE_YOUR_CALM.
func TestAbuseRapidReset(t *testing.T) {
	const maxStreams = 16
	var running, peak, started atomic.Int32
	release := make(chan struct{})
	var counted sync.Map
	srv := &Server{
		MaxConcurrentStreams: maxStreams,
		CountError:           func(e string) { counted.Store(e, true) },
		Handler: func(ex message.ServerExchange) {
			started.Add(1)
			cur := running.Add(1)
			for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
			}
			select { // a slow handler that ignores the reset
			case <-release:
			case <-time.After(10 * time.Second):
			}
			running.Add(-1)
			ex.Abort(nil)
		},
	}
	addr := serve(t, srv, false)
	t.Cleanup(func() { close(release) })
	rc := dialRaw(t, addr)

	goAway := make(chan *http2.GoAwayFrame, 1)
	go func() {
		rc.readUntil(func(f http2.Frame) bool {
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				goAway <- ga
				return true
			}
			return false
		})
		close(goAway)
	}()
	const attempts = 5000
	sent := 0
	for id := uint32(1); sent < attempts; id += 2 {
		if rc.openStream(id, true) != nil || rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break // the server closed the connection
		}
		sent++
	}
	select {
	case ga, ok := <-goAway:
		if !ok {
			t.Fatal("connection closed without GOAWAY")
		}
		if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("GOAWAY code: got %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no GOAWAY after %d open+reset pairs", sent)
	}
	if got := peak.Load(); got > maxStreams {
		t.Errorf("peak concurrent handlers: got %d, want at most %d", got, maxStreams)
	}
	if got := started.Load(); got > maxStreams {
		t.Errorf("handlers started: got %d, want at most %d", got, maxStreams)
	}
	if _, ok := counted.Load("conn_ENHANCE_YOUR_CALM_too_many_early_resets"); !ok {
		t.Error(`CountError did not see "conn_ENHANCE_YOUR_CALM_too_many_early_resets"`)
	}
	t.Logf("sent %d open+reset pairs, peak handlers %d", sent, peak.Load())
}

// TestAbuseRapidResetFastHandlers resets streams whose handlers return at once: the
// connection keeps working and the handler count never exceeds MaxConcurrentStreams.
func TestAbuseRapidResetFastHandlers(t *testing.T) {
	const maxStreams = 8
	var running, peak atomic.Int32
	srv := &Server{
		MaxConcurrentStreams: maxStreams,
		Handler: func(ex message.ServerExchange) {
			cur := running.Add(1)
			for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
			}
			running.Add(-1)
			ex.WriteHeader(&message.Response{Status: 204})
			ex.Finish(nil)
		},
	}
	addr := serve(t, srv, false)
	rc := dialRaw(t, addr)
	go rc.readUntil(func(http2.Frame) bool { return false })
	for id := uint32(1); id < 2*2000; id += 2 {
		if err := rc.openStream(id, true); err != nil {
			break
		}
		if err := rc.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	if got := peak.Load(); got > maxStreams {
		t.Errorf("peak concurrent handlers: got %d, want at most %d", got, maxStreams)
	}
}

// TestAbuseContinuationFlood sends a header block that never ends (CVE-2024-27316 class):
// the server stops decoding past MaxHeaderListSize and closes the connection.
func TestAbuseContinuationFlood(t *testing.T) {
	var handled atomic.Int32
	addr := serve(t, &Server{Handler: func(ex message.ServerExchange) {
		handled.Add(1)
		ex.Abort(nil)
	}}, false)
	rc := dialRaw(t, addr)

	ended := make(chan error, 1)
	go func() {
		ended <- rc.readUntil(func(f http2.Frame) bool {
			_, ok := f.(*http2.GoAwayFrame)
			return ok
		})
	}()
	value := strings.Repeat("v", 1000)
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock()}); err != nil {
		t.Fatal(err)
	}
	var written int
	const limit = 64 << 20 // far beyond any buffer: the flood must be cut off well before
	var writeErr error
	for written < limit {
		rc.hbuf.Reset()
		rc.henc.WriteField(hpack.HeaderField{Name: "x-flood", Value: value, Sensitive: true})
		if writeErr = rc.fr.WriteContinuation(1, false, rc.hbuf.Bytes()); writeErr != nil {
			break
		}
		written += rc.hbuf.Len() + 9
		select {
		case err := <-ended:
			ended <- err
			writeErr = errors.New("server ended the connection")
		default:
		}
		if writeErr != nil {
			break
		}
	}
	if writeErr == nil {
		t.Fatalf("server accepted %d bytes of CONTINUATION frames", written)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("connection not ended")
	}
	if written > 8<<20 {
		t.Errorf("flood cut off after %d bytes, want under 8 MiB", written)
	}
	if handled.Load() != 0 {
		t.Error("handler ran for a flooded header block")
	}
	t.Logf("connection ended after %d bytes of CONTINUATION", written)
}

// TestAbuseMaxConcurrentStreams opens one stream more than advertised: it is refused.
func TestAbuseMaxConcurrentStreams(t *testing.T) {
	const maxStreams = 4
	release := make(chan struct{})
	srv := &Server{MaxConcurrentStreams: maxStreams, Handler: func(ex message.ServerExchange) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}
	addr := serve(t, srv, false)
	t.Cleanup(func() { close(release) })
	rc := dialRaw(t, addr)
	if got := rc.settings[http2.SettingMaxConcurrentStreams]; got != maxStreams {
		t.Fatalf("advertised max streams: got %d, want %d", got, maxStreams)
	}
	for id := uint32(1); id <= 2*maxStreams+1; id += 2 {
		if err := rc.openStream(id, true); err != nil {
			t.Fatal(err)
		}
	}
	extra := uint32(2*maxStreams + 1)
	var rst *http2.RSTStreamFrame
	err := rc.readUntil(func(f http2.Frame) bool {
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			rst = r
			return true
		}
		return false
	})
	if rst == nil {
		t.Fatalf("no RST_STREAM for stream %d: %v", extra, err)
	}
	if rst.StreamID != extra {
		t.Errorf("reset stream: got %d, want %d", rst.StreamID, extra)
	}
	if rst.ErrCode != http2.ErrCodeRefusedStream && rst.ErrCode != http2.ErrCodeProtocol {
		t.Errorf("reset code: got %v, want REFUSED_STREAM or PROTOCOL_ERROR", rst.ErrCode)
	}
}

// TestAbuseHeaderListTooLarge sends a header list over MaxHeaderListSize: 431.
func TestAbuseHeaderListTooLarge(t *testing.T) {
	var handled atomic.Int32
	addr := serve(t, &Server{MaxHeaderListSize: 8 << 10, Handler: func(ex message.ServerExchange) {
		handled.Add(1)
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}}, false)
	rc := dialRaw(t, addr)
	if got := rc.settings[http2.SettingMaxHeaderListSize]; got != 8<<10 {
		t.Errorf("advertised max header list: got %d, want %d", got, 8<<10)
	}
	// Six 2 KiB fields: each is fine alone, together they exceed the 8 KiB list limit.
	var big []hpack.HeaderField
	for i := range 6 {
		big = append(big, hpack.HeaderField{Name: "x-big-" + itoa(int64(i)), Value: strings.Repeat("b", 2<<10), Sensitive: true})
	}
	block := rc.headerBlock(big...)
	// Split the block into a HEADERS and a CONTINUATION frame.
	first, rest := block[:len(block)/2], block[len(block)/2:]
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteContinuation(1, true, rest); err != nil {
		t.Fatal(err)
	}
	var status string
	err := rc.readUntil(func(f http2.Frame) bool {
		if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamID == 1 {
			status = mh.PseudoValue("status")
			return true
		}
		return false
	})
	if status != "431" {
		t.Errorf("status: got %q (err %v), want 431", status, err)
	}
	if handled.Load() != 0 {
		t.Error("handler ran for an oversized header list")
	}
}
