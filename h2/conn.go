package h2

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/message"
)

// serverConn is one HTTP/2 connection. Its reader goroutine (serve) parses frames and runs
// the connection's state machine; handlers run on pooled workers and append their frames
// to the shared write buffer under mu; the writer goroutine sends everything pending in one
// write.
type serverConn struct {
	st     *serverState
	c      net.Conn
	info   *message.ConnInfo
	scheme string
	ctx    context.Context // canceled when the connection ends
	cancel context.CancelFunc

	// Owned by the reader goroutine.
	buf         []byte  // read buffer: small, or big while a large frame is read
	small       *[]byte // the connection's own read buffer
	big         *[]byte // a pooled large buffer in use, if any
	r, w        int     // unread bytes are buf[r:w]
	dec         *hpack.Decoder
	hb          headerBlock
	sawSettings bool
	kick        bool   // the reader appended frames: wake the writer before reading
	flood       int64  // flood score (see flood.go)
	floodAt     int64  // unix nanoseconds up to which the score has leaked
	floodReason string // what last added to the score

	mu       sync.Mutex
	sendCond sync.Cond // send window opened, write buffer drained, or a stream was reset
	wbuf     []byte    // frames not yet handed to the writer
	wp       *[]byte   // the pooled buffer behind wbuf
	wgen     uint64    // incremented each time the writer takes wbuf
	woken    bool      // the writer was signaled and has not taken wbuf yet
	wake     chan struct{}
	// closing: close once the write buffer is flushed; dead: the connection is unusable.
	closing, dead bool
	streams       map[uint32]*stream
	recent        [64]closedStream // recently closed streams, a ring
	nrecent       int
	maxClientID   uint32
	open          int       // streams counted against MAX_CONCURRENT_STREAMS
	running       int       // handlers running
	queue         []*stream // streams waiting for a handler slot
	goAway        bool      // GOAWAY sent: no new streams
	sentSincePing bool      // response frames were queued since the client's last PING
	draining      bool      // first GOAWAY of a graceful shutdown sent, PING ack awaited (drain.go)
	drainAt       time.Time // when the final GOAWAY goes out without the PING ack
	unackedSet    int       // our SETTINGS frames not yet acknowledged
	sendWindow    int64     // connection send window
	peerWindow    int32     // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame  int       // peer's SETTINGS_MAX_FRAME_SIZE
	tableUpdate   bool      // start the next header block with a table size update to 0
	recvWindow    int32     // connection receive window left
	recvUnacked   int32     // bytes consumed and not yet returned by WINDOW_UPDATE
	idleSince     time.Time // when the last stream closed
	pingAt        time.Time // when an unanswered keep-alive PING was sent; zero if none
	timer         *time.Timer
	timerAt       time.Time // when timer fires; zero when it is not armed
	stalled       int       // streams whose Write waits for flow-control window
	bodyWaits     int       // streams whose body Read waits for DATA (with a BodyReadTimeout)
	writerDone    chan struct{}

	lastRead atomic.Int64 // unix nanoseconds of the last read, for the keep-alive timer
}

// closedStream remembers a closed stream, so late frames get the right answer.
type closedStream struct {
	id      uint32
	resetUs bool // we reset it: frames the peer sent before it saw the reset are ignored
}

// connError is a connection error: GOAWAY with code, then close.
type connError struct {
	code   errCode
	reason string
}

func (e connError) Error() string { return "h2: connection error " + e.code.String() + ": " + e.reason }

var (
	errClientPreface = errors.New("h2: bad client preface")
	errConnClosed    = errors.New("h2: connection closed")
)

// bufPools hold read buffers for frames up to the default maximum frame size, and the
// connections' small read buffers.
var (
	smallBufSize = 4 << 10
	bigBufSize   = frameHeaderLen + DefaultMaxReadFrameSize
	smallBufPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	bigBufPool   = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}
	wbufPool     = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
)

func newServerConn(st *serverState, ctx context.Context, c net.Conn, info *message.ConnInfo) *serverConn {
	sc := &serverConn{
		st: st, c: c, info: info, scheme: "http",
		wake:         make(chan struct{}, 1),
		streams:      make(map[uint32]*stream),
		sendWindow:   initialWindow,
		peerWindow:   initialWindow,
		peerMaxFrame: minMaxFrameSize,
		recvWindow:   st.connWindow,
		writerDone:   make(chan struct{}),
	}
	if info.TLS != nil {
		sc.scheme = "https"
	}
	sc.ctx, sc.cancel = context.WithCancel(ctx)
	sc.sendCond.L = &sc.mu
	sc.small = smallBufPool.Get().(*[]byte)
	sc.buf = *sc.small
	sc.dec = hpack.NewDecoder(headerTableSize, sc.onField)
	sc.dec.SetMaxStringLength(int(st.maxHeaderList))
	// The server's preface goes first, before anything Shutdown may add.
	b := sc.wbufLocked()
	b = appendFrameHeader(b, 4*6, frameSettings, 0, 0)
	b = appendSetting(b, settingMaxConcurrentStreams, st.maxStreams)
	b = appendSetting(b, settingInitialWindowSize, uint32(st.streamWindow))
	b = appendSetting(b, settingMaxFrameSize, st.maxFrame)
	b = appendSetting(b, settingMaxHeaderListSize, st.maxHeaderList)
	if inc := st.connWindow - initialWindow; inc > 0 {
		b = appendWindowUpdate(b, 0, uint32(inc))
	}
	sc.wbuf = b
	sc.unackedSet = 1
	return sc
}

// serve runs the connection until it ends and every write is done.
func (sc *serverConn) serve() {
	sc.mu.Lock()
	now := time.Now()
	sc.idleSince = now
	sc.lastRead.Store(now.UnixNano())
	sc.floodAt = now.UnixNano()
	sc.wakeLocked()
	sc.mu.Unlock()
	go sc.writeLoop()
	sc.armTimer()

	err := sc.readLoop()
	var ce connError
	if errors.As(err, &ce) {
		sc.countError("conn", ce.code, ce.reason)
		sc.mu.Lock()
		sc.goAwayLocked(ce.code)
		sc.closing = true
		sc.wakeLocked()
		sc.mu.Unlock()
		// Keep reading (and discarding) briefly, so that closing with unread input does
		// not reset the connection before the client has read the GOAWAY.
		sc.c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			if _, err := sc.c.Read(sc.buf); err != nil {
				break
			}
		}
	}
	sc.mu.Lock()
	sc.dead = true
	sc.wakeLocked()
	sc.mu.Unlock()
	sc.c.Close()
	<-sc.writerDone
	sc.teardown()
}

// teardown releases what the connection holds once reader and writer are gone.
func (sc *serverConn) teardown() {
	sc.cancel()
	sc.mu.Lock()
	if sc.timer != nil {
		// Under mu: Shutdown may arm it for the drain until the connection is dead.
		sc.timer.Stop()
	}
	// Handlers see the client gone: a downstream ConnectionClosed fault, logged as 499.
	for id, s := range sc.streams {
		sc.resetLocked(s, codeCancel, false, errConnGone)
		delete(sc.streams, id)
	}
	for _, s := range sc.queue {
		if s != nil {
			sc.resetLocked(s, codeCancel, false, errConnGone)
			s.handlerDoneLocked()
		}
	}
	sc.queue = nil
	if sc.wp != nil {
		// A buffer that grew large (a client that stopped reading) is left to the GC
		// rather than kept in the pool.
		if cap(sc.wbuf) <= maxKeptWbuf {
			*sc.wp = sc.wbuf[:0]
			wbufPool.Put(sc.wp)
		}
		sc.wp, sc.wbuf = nil, nil
	}
	sc.sendCond.Broadcast()
	sc.mu.Unlock()
	if sc.big != nil {
		bigBufPool.Put(sc.big)
		sc.big = nil
	}
	smallBufPool.Put(sc.small)
	sc.small, sc.buf = nil, nil
}

// countError reports a protocol error to Server.CountError as scope_CODE_reason.
func (sc *serverConn) countError(scope string, code errCode, reason string) {
	if f := sc.st.srv.CountError; f != nil {
		f(scope + "_" + code.String() + "_" + reason)
	}
}

// fill makes at least n unread bytes available in buf, reading as needed.
func (sc *serverConn) fill(n int) error {
	if sc.w-sc.r >= n {
		return nil
	}
	if n > len(sc.buf) {
		var nb []byte
		if n <= bigBufSize {
			if sc.big == nil {
				sc.big = bigBufPool.Get().(*[]byte)
			}
			nb = *sc.big
		} else {
			nb = make([]byte, n)
		}
		if &nb[0] != &sc.buf[0] {
			sc.w = copy(nb, sc.buf[sc.r:sc.w])
			sc.r = 0
			sc.buf = nb
		}
	}
	if len(sc.buf)-sc.r < n {
		sc.w = copy(sc.buf, sc.buf[sc.r:sc.w])
		sc.r = 0
	}
	for sc.w-sc.r < n {
		if sc.kick {
			sc.kick = false
			sc.mu.Lock()
			sc.wakeLocked()
			sc.mu.Unlock()
		}
		m, err := sc.c.Read(sc.buf[sc.w:])
		sc.w += m
		if m > 0 {
			sc.lastRead.Store(time.Now().UnixNano())
		}
		if err != nil && sc.w-sc.r < n {
			return err
		}
	}
	return nil
}

// consumed marks n bytes read and returns to the small buffer once a big one is drained.
func (sc *serverConn) consumed(n int) {
	sc.r += n
	if sc.r == sc.w {
		sc.r, sc.w = 0, 0
		if sc.big != nil || len(sc.buf) != smallBufSize {
			if sc.big != nil && &sc.buf[0] == &(*sc.big)[0] {
				bigBufPool.Put(sc.big)
				sc.big = nil
			}
			sc.buf = *sc.small
		}
	}
}

// readLoop reads the preface and then frames until the connection ends.
func (sc *serverConn) readLoop() error {
	if err := sc.fill(len(clientPreface)); err != nil {
		return err
	}
	if string(sc.buf[sc.r:sc.r+len(clientPreface)]) != clientPreface {
		return errClientPreface
	}
	sc.consumed(len(clientPreface))
	for {
		if err := sc.fill(frameHeaderLen); err != nil {
			return err
		}
		h := sc.buf[sc.r : sc.r+frameHeaderLen]
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if length > int(sc.st.maxFrame) {
			return connError{codeFrameSize, "frame_too_large"}
		}
		if err := sc.fill(frameHeaderLen + length); err != nil {
			return err
		}
		h = sc.buf[sc.r : sc.r+frameHeaderLen]
		typ, flags := h[3], h[4]
		id := uint32(h[5]&0x7f)<<24 | uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])
		p := sc.buf[sc.r+frameHeaderLen : sc.r+frameHeaderLen+length]
		err := sc.processFrame(typ, flags, id, p)
		sc.consumed(frameHeaderLen + length)
		if err != nil {
			return err
		}
	}
}

// processFrame handles one frame; it returns a connError for connection errors, including
// floods (flood.go) and a client that stopped reading the frames sent in answer to its own.
func (sc *serverConn) processFrame(typ, flags byte, id uint32, p []byte) error {
	if err := sc.dispatchFrame(typ, flags, id, p); err != nil {
		return err
	}
	if sc.flood > sc.st.floodLimit {
		sc.dropBlock()
		return connError{codeEnhanceYourCalm, sc.floodReason}
	}
	if sc.kick {
		sc.mu.Lock()
		full := len(sc.wbuf) > maxPendingControl
		sc.mu.Unlock()
		if full {
			sc.dropBlock()
			return connError{codeEnhanceYourCalm, "control_frames_unread"}
		}
	}
	return nil
}

func (sc *serverConn) dispatchFrame(typ, flags byte, id uint32, p []byte) error {
	if sc.hb.open && (typ != frameContinuation || id != sc.hb.id) {
		return connError{codeProtocol, "header_block_interrupted"}
	}
	if !sc.sawSettings {
		if typ != frameSettings || flags&flagAck != 0 {
			return connError{codeProtocol, "first_frame_not_settings"}
		}
		sc.sawSettings = true
	}
	switch typ {
	case frameData:
		return sc.onData(flags, id, p)
	case frameHeaders:
		return sc.onHeaders(flags, id, p)
	case frameContinuation:
		sc.charge(costFrame, "continuation_flood")
		return sc.onContinuation(flags, id, p)
	case framePriority:
		sc.charge(costFrame, "priority_flood")
		return sc.onPriority(id, p)
	case frameRSTStream:
		return sc.onRSTStream(id, p)
	case frameSettings:
		sc.charge(costFrame+int64(len(p)/6), "settings_flood")
		return sc.onSettings(flags, id, p)
	case framePushPromise:
		return connError{codeProtocol, "push_promise_from_client"}
	case framePing:
		return sc.onPing(flags, id, p)
	case frameGoAway:
		sc.charge(costFrame, "goaway_flood")
		return sc.onGoAway(id, p)
	case frameWindowUpdate:
		return sc.onWindowUpdate(id, p)
	}
	sc.charge(costFrame, "unknown_frame_flood")
	return nil // unknown frame types are ignored (RFC 9113 section 5.5)
}

// streamError resets stream id with code (RFC 9113 section 5.4.2).
func (sc *serverConn) streamError(id uint32, code errCode, reason string) {
	sc.countError("stream", code, reason)
	sc.charge(costReject, "stream_error_flood")
	sc.mu.Lock()
	if s := sc.streams[id]; s != nil {
		sc.resetLocked(s, code, true, nil)
	} else {
		sc.wbuf = appendRSTStream(sc.wbufLocked(), id, code)
		sc.rememberLocked(id, true)
	}
	sc.mu.Unlock()
	sc.kick = true
}

// closedState says what is known of a stream id not in the streams map.
func (sc *serverConn) closedStateLocked(id uint32) (idle, resetUs bool) {
	if id > sc.maxClientID || id%2 == 0 {
		return true, false
	}
	for i := range min(sc.nrecent, len(sc.recent)) {
		if sc.recent[i].id == id {
			return false, sc.recent[i].resetUs
		}
	}
	return false, false
}

func (sc *serverConn) rememberLocked(id uint32, resetUs bool) {
	sc.recent[sc.nrecent%len(sc.recent)] = closedStream{id, resetUs}
	sc.nrecent++
}

func padded(flags byte, p []byte) ([]byte, bool) {
	if flags&flagPadded == 0 {
		return p, true
	}
	if len(p) < 1 || int(p[0]) >= len(p) {
		return nil, false
	}
	return p[1 : len(p)-int(p[0])], true
}

func (sc *serverConn) onData(flags byte, id uint32, p []byte) error {
	if id == 0 {
		return connError{codeProtocol, "data_stream_zero"}
	}
	data, ok := padded(flags, p)
	if !ok {
		return connError{codeProtocol, "data_pad"}
	}
	n := int32(len(p))
	end := flags&flagEndStream != 0
	if len(data) == 0 && !end {
		sc.charge(costFrame, "empty_data_flood")
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if n > sc.recvWindow {
		return connError{codeFlowControl, "data_over_conn_window"}
	}
	// The frame counts against the connection window; what is dropped below is returned at
	// once with creditConnLocked.
	sc.recvWindow -= n
	s := sc.streams[id]
	if s == nil || s.remoteDone {
		if s == nil {
			idle, resetUs := sc.closedStateLocked(id)
			if idle {
				return connError{codeProtocol, "data_on_idle"}
			}
			sc.creditConnLocked(n)
			if resetUs {
				return nil
			}
			return connError{codeStreamClosed, "data_on_closed"}
		}
		sc.creditConnLocked(n)
		sc.countError("stream", codeStreamClosed, "data_half_closed")
		sc.charge(costReject, "stream_error_flood")
		sc.resetLocked(s, codeStreamClosed, true, nil)
		sc.kick = true
		return nil
	}
	if n > s.recvWindow {
		sc.creditConnLocked(n)
		sc.countError("stream", codeFlowControl, "data_over_stream_window")
		sc.charge(costReject, "stream_error_flood")
		sc.resetLocked(s, codeFlowControl, true, nil)
		sc.kick = true
		return nil
	}
	s.recvWindow -= n
	if pad := n - int32(len(data)); pad > 0 {
		// Padding counts against flow control but is never read: return it at once.
		sc.creditConnLocked(pad)
		s.creditLocked(pad)
	}
	s.bodyBytes += int64(len(data))
	if s.declared >= 0 && (s.bodyBytes > s.declared || end && s.bodyBytes != s.declared) {
		sc.creditConnLocked(int32(len(data)))
		sc.countError("stream", codeProtocol, "content_length_mismatch")
		sc.charge(costReject, "stream_error_flood")
		sc.resetLocked(s, codeProtocol, true, errContentLength)
		sc.kick = true
		return nil
	}
	if s.bodyErr != nil {
		// Past the body limit: the handler reads no more, the bytes are dropped.
		sc.creditConnLocked(int32(len(data)))
		data = nil
	} else if lim := sc.st.maxBody; lim > 0 && s.bodyBytes > lim {
		keep := len(data) - int(s.bodyBytes-lim)
		sc.creditConnLocked(int32(len(data) - keep))
		data = data[:keep]
		sc.countError("stream", codeNo, "body_too_large")
		sc.charge(costReject, "stream_error_flood")
		s.bodyErr = errBodyTooLarge
		s.wakeBodyLocked()
	}
	if len(data) > 0 {
		// Body bytes for a handler are useful work; dropped ones (closed streams, past
		// the body limit) pay nothing back.
		sc.credit(int64(len(data)) >> 10)
		s.pushBodyLocked(data)
	}
	if end {
		s.remoteDone = true
		s.bodyEOF = true
		s.wakeBodyLocked()
		sc.maybeCloseLocked(s)
	}
	return nil
}

func (sc *serverConn) onPriority(id uint32, p []byte) error {
	if id == 0 {
		return connError{codeProtocol, "priority_stream_zero"}
	}
	if len(p) != 5 {
		sc.streamError(id, codeFrameSize, "priority_frame_size")
		return nil
	}
	if dep := uint32(p[0]&0x7f)<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]); dep == id {
		sc.streamError(id, codeProtocol, "priority_self_dependency")
	}
	return nil
}

func (sc *serverConn) onRSTStream(id uint32, p []byte) error {
	if id == 0 {
		return connError{codeProtocol, "rst_stream_zero"}
	}
	if len(p) != 4 {
		return connError{codeFrameSize, "rst_stream_frame_size"}
	}
	code := errCode(uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]))
	sc.mu.Lock()
	defer sc.mu.Unlock()
	s := sc.streams[id]
	if s == nil {
		sc.charge(costFrame, "rst_stream_flood")
		if idle, _ := sc.closedStateLocked(id); idle {
			return connError{codeProtocol, "rst_stream_idle"}
		}
		return nil
	}
	sc.charge(costEarlyReset, "rapid_reset")
	sc.resetLocked(s, code, false, streamResetError(code))
	return nil
}

func (sc *serverConn) onSettings(flags byte, id uint32, p []byte) error {
	if id != 0 {
		return connError{codeProtocol, "settings_stream_nonzero"}
	}
	if flags&flagAck != 0 {
		if len(p) != 0 {
			return connError{codeFrameSize, "settings_ack_with_payload"}
		}
		sc.mu.Lock()
		if sc.unackedSet > 0 {
			sc.unackedSet--
		}
		sc.mu.Unlock()
		return nil
	}
	if len(p)%6 != 0 {
		return connError{codeFrameSize, "settings_frame_size"}
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	// Values are processed in the order they appear (RFC 9113 section 6.5.3).
	for ; len(p) > 0; p = p[6:] {
		sid := uint16(p[0])<<8 | uint16(p[1])
		v := uint32(p[2])<<24 | uint32(p[3])<<16 | uint32(p[4])<<8 | uint32(p[5])
		switch sid {
		case settingHeaderTableSize:
			if v < headerTableSize {
				sc.tableUpdate = true
			}
		case settingEnablePush:
			if v > 1 {
				return connError{codeProtocol, "settings_enable_push"}
			}
		case settingInitialWindowSize:
			if v > maxWindow {
				return connError{codeFlowControl, "settings_initial_window"}
			}
			delta := int64(v) - int64(sc.peerWindow)
			sc.peerWindow = int32(v)
			for _, s := range sc.streams {
				s.sendWindow += delta
				if s.sendWindow > maxWindow {
					return connError{codeFlowControl, "settings_window_overflow"}
				}
			}
			sc.sendCond.Broadcast()
		case settingMaxFrameSize:
			if v < minMaxFrameSize || v > maxMaxFrameSize {
				return connError{codeProtocol, "settings_max_frame_size"}
			}
			sc.peerMaxFrame = int(v)
		}
	}
	sc.wbuf = appendFrameHeader(sc.wbufLocked(), 0, frameSettings, flagAck, 0)
	sc.kick = true
	return nil
}

func (sc *serverConn) onPing(flags byte, id uint32, p []byte) error {
	if id != 0 {
		return connError{codeProtocol, "ping_stream_nonzero"}
	}
	if len(p) != 8 {
		return connError{codeFrameSize, "ping_frame_size"}
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.sentSincePing {
		// A PING after response data is how clients measure bandwidth-delay (gRPC's BDP
		// estimator sends one per burst received): free, once per burst.
		sc.sentSincePing = false
	} else {
		sc.charge(costFrame, "ping_flood")
	}
	if flags&flagAck != 0 && sc.drainAckLocked(p) {
		return nil
	}
	if flags&flagAck != 0 {
		sc.pingAt = time.Time{}
		return nil
	}
	sc.wbuf = appendPing(sc.wbufLocked(), true, p)
	sc.kick = true
	return nil
}

func (sc *serverConn) onGoAway(id uint32, p []byte) error {
	if id != 0 {
		return connError{codeProtocol, "goaway_stream_nonzero"}
	}
	if len(p) < 8 {
		return connError{codeFrameSize, "goaway_frame_size"}
	}
	sc.mu.Lock()
	sc.startShutdownLocked()
	sc.mu.Unlock()
	return nil
}

func (sc *serverConn) onWindowUpdate(id uint32, p []byte) error {
	if len(p) != 4 {
		return connError{codeFrameSize, "window_update_frame_size"}
	}
	inc := int64(uint32(p[0]&0x7f)<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]))
	if inc < minFreeWindowUpdate {
		// Each update wakes every Write waiting for window: tiny ones are not free.
		sc.charge(costFrame, "window_update_flood")
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if id == 0 {
		if inc == 0 {
			return connError{codeProtocol, "window_update_zero"}
		}
		sc.sendWindow += inc
		if sc.sendWindow > maxWindow {
			return connError{codeFlowControl, "window_update_overflow"}
		}
		sc.sendCond.Broadcast()
		return nil
	}
	s := sc.streams[id]
	if s == nil {
		if idle, _ := sc.closedStateLocked(id); idle {
			return connError{codeProtocol, "window_update_idle"}
		}
		return nil
	}
	if inc == 0 {
		sc.countError("stream", codeProtocol, "window_update_zero")
		sc.charge(costReject, "stream_error_flood")
		sc.resetLocked(s, codeProtocol, true, nil)
		sc.kick = true
		return nil
	}
	s.sendWindow += inc
	if s.sendWindow > maxWindow {
		sc.countError("stream", codeFlowControl, "window_update_overflow")
		sc.charge(costReject, "stream_error_flood")
		sc.resetLocked(s, codeFlowControl, true, nil)
		sc.kick = true
		return nil
	}
	sc.sendCond.Broadcast()
	return nil
}

// minFreeWindowUpdate is the smallest WINDOW_UPDATE increment that does not count as a
// frame without progress in the flood score; clients return window in far larger steps.
const minFreeWindowUpdate = 1024

// maxPendingControl bounds the write buffer while the reader queues frames in answer to the
// client (SETTINGS and PING acknowledgements, RST_STREAM, WINDOW_UPDATE, 431 and 413
// answers): a client that sends such frames and does not read the answers has its
// connection closed with GOAWAY ENHANCE_YOUR_CALM once this much is pending. Handlers' DATA
// stays far below it (maxPendingWrite).
const maxPendingControl = 256 << 10

// maxPendingResponses bounds the write buffer when the reader admits a request. Response
// heads wait for no flow-control window and no write backpressure, so a client that sends
// requests and reads nothing would grow the buffer by one head per request; past this much
// pending, its connection is closed with GOAWAY ENHANCE_YOUR_CALM. It is well above what a
// slow reader queues with MaxConcurrentStreams responses in flight (heads of a few KiB each,
// handlers' DATA under 128 KiB).
const maxPendingResponses = 1 << 20

// creditConnLocked returns n bytes of connection receive window, sending WINDOW_UPDATE once
// half the window is due.
func (sc *serverConn) creditConnLocked(n int32) {
	sc.recvUnacked += n
	if sc.recvUnacked >= sc.st.connWindow/2 {
		sc.wbuf = appendWindowUpdate(sc.wbufLocked(), 0, uint32(sc.recvUnacked))
		sc.recvWindow += sc.recvUnacked
		sc.recvUnacked = 0
		sc.wakeLocked()
	}
}
