package h2

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// Exchange states.
const (
	exIdle     uint32 = iota // no final response head yet
	exHead                   // final head written, body may follow
	exFinished               // Finish called
	exAborted                // Abort called
)

var (
	errNoHead       = errors.New("h2: response body or finish before WriteHeader")
	errHeadWritten  = errors.New("h2: response head already written")
	errFinished     = errors.New("h2: exchange already finished")
	errAborted      = errors.New("h2: exchange aborted")
	errStatus       = errors.New("h2: invalid response status")
	errSwitchProtos = errors.New("h2: 101 Switching Protocols does not exist in HTTP/2")
	errBodyGone     = errors.New("h2: request body read after its exchange ended")
	errContentLen   = errors.New("h2: request body length differs from content-length")
	errStreamClosed = errors.New("h2: stream closed")
)

// errContentLength is what reads of a body whose DATA contradicted content-length return.
var errContentLength = &fault.Error{Source: fault.Downstream, Kind: fault.InvalidRequest, Cause: errContentLen}

// errBodyTooLarge is what reads of a body that grew past Server.MaxBodySize return.
var errBodyTooLarge = &fault.Error{Source: fault.Downstream, Kind: fault.RequestTooLarge,
	Cause: errors.New("h2: request body larger than the limit")}

// errConnGone is what writes and reads return once the connection is gone.
var errConnGone = &fault.Error{Source: fault.Downstream, Kind: fault.ConnectionClosed, Cause: errConnClosed}

// streamResetError is the error of a stream the client reset with code.
func streamResetError(code errCode) error {
	kind := fault.ConnectionClosed
	switch code {
	case codeNo, codeCancel:
		kind = fault.Canceled
	case codeProtocol, codeFlowControl, codeFrameSize:
		kind = fault.InvalidRequest
	}
	return &fault.Error{Source: fault.Downstream, Kind: kind,
		Cause: errors.New("h2: stream reset by client: " + code.String())}
}

var streamPool = sync.Pool{New: func() any { return new(stream) }}

// stream is one HTTP/2 stream and the message.ServerExchange presenting it. Streams are
// pooled: one is reused once its handler returned and the stream is closed.
type stream struct {
	c   *serverConn
	id  uint32
	gen atomic.Uint32 // incremented when the stream is recycled
	req message.Request

	// Guarded by c.mu.
	inMap       bool // in c.streams, counted in c.open
	closed      bool // both sides done, or reset
	reset       bool // reset by either side
	remoteDone  bool // END_STREAM received (or reset)
	localDone   bool // END_STREAM sent (or reset)
	handlerDone bool // the handler returned, or will never run
	gotTrailers bool
	expect100   bool
	sent100     bool
	err         error // why reads and writes fail after a reset
	recvWindow  int32
	recvUnacked int32
	sendWindow  int64
	declared    int64 // content-length, or -1
	bodyBytes   int64 // DATA payload received
	body        *[]byte
	bodyOff     int
	bodyEOF     bool
	trailerIn   message.Header // trailers received, moved to req.Trailer at EOF
	br          *bodyReader    // the request body's reader, if the request has a body
	ctx         context.Context
	cancel      context.CancelFunc
	lastData    int       // offset in c.wbuf of the stream's last DATA frame
	lastGen     uint64    // c.wgen when it was appended; 0 means none
	headPending bool      // the final head waits in hblock for the first body bytes or Finish
	stallSince  time.Time // when a Write started waiting for flow-control window; zero if none
	readSince   time.Time // when a body Read started waiting for DATA; zero if none
	bodyErr     error     // the body grew past Server.MaxBodySize: what reads return

	// Handler side.
	xstate atomic.Uint32
	hblock []byte // encoded head (and trailers) scratch
}

// newStreamLocked takes a stream from the pool for id.
func (sc *serverConn) newStream(id uint32) *stream {
	s := streamPool.Get().(*stream)
	s.c, s.id = sc, id
	s.recvWindow = sc.st.streamWindow
	s.declared = -1
	s.xstate.Store(exIdle)
	return s
}

// recycleLocked returns s to the pool; its handler has returned and it is closed.
func (s *stream) recycleLocked() {
	if !s.readSince.IsZero() {
		// A body Read on another goroutine than the handler's still waits.
		s.c.unwaitBodyLocked(s)
	}
	s.gen.Add(1)
	s.req.Reset()
	s.trailerIn.Reset()
	s.releaseBodyLocked()
	if s.cancel != nil {
		s.cancel()
	}
	if cap(s.hblock) > 4<<10 {
		s.hblock = nil
	}
	s.hblock = s.hblock[:0]
	s.c, s.id = nil, 0
	s.inMap, s.closed, s.reset, s.remoteDone, s.localDone = false, false, false, false, false
	s.handlerDone, s.gotTrailers, s.expect100, s.sent100 = false, false, false, false
	s.err, s.ctx, s.cancel, s.br = nil, nil, nil, nil
	s.recvWindow, s.recvUnacked, s.sendWindow = 0, 0, 0
	s.declared, s.bodyBytes, s.bodyEOF = -1, 0, false
	s.lastData, s.lastGen, s.headPending = 0, 0, false
	s.stallSince, s.bodyErr = time.Time{}, nil
	streamPool.Put(s)
}

func (s *stream) releaseBodyLocked() {
	if s.body != nil {
		if cap(*s.body) == bodyBufSize {
			*s.body = (*s.body)[:0]
			bodyBufPool.Put(s.body)
		}
		s.body = nil
	}
	s.bodyOff = 0
}

const bodyBufSize = 16 << 10

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, bodyBufSize); return &b }}

// wakeBodyLocked wakes a read of the request body waiting for data.
func (s *stream) wakeBodyLocked() {
	if s.br != nil {
		s.br.cond.Broadcast()
	}
}

func (s *stream) pushBodyLocked(data []byte) {
	if s.body == nil {
		s.body = bodyBufPool.Get().(*[]byte)
	}
	*s.body = append(*s.body, data...)
	s.wakeBodyLocked()
}

// creditLocked returns n bytes of the stream's receive window, sending WINDOW_UPDATE once
// half the window is due.
func (s *stream) creditLocked(n int32) {
	s.recvUnacked += n
	if s.remoteDone || s.recvUnacked < s.c.st.streamWindow/2 {
		return
	}
	sc := s.c
	sc.wbuf = appendWindowUpdate(sc.wbufLocked(), s.id, uint32(s.recvUnacked))
	s.recvWindow += s.recvUnacked
	s.recvUnacked = 0
	sc.wakeLocked()
}

// handlerDoneLocked records that s's handler returned (or will never run).
func (s *stream) handlerDoneLocked() {
	s.handlerDone = true
	if s.closed {
		s.recycleLocked()
	}
}

// closeLocked ends s: both sides are done, or it is being reset (sentRST says we reset
// it). Late frames on it are answered from c.recent.
func (sc *serverConn) closeLocked(s *stream, sentRST bool) {
	if s.closed {
		return
	}
	s.closed, s.remoteDone, s.localDone = true, true, true
	if s.inMap {
		delete(sc.streams, s.id)
		s.inMap = false
		sc.open--
		if sc.open == 0 {
			sc.idleSince = time.Now()
			if sc.goAway {
				sc.closing = true
				sc.wakeLocked()
			}
		}
	}
	sc.rememberLocked(s.id, sentRST)
	if s.body != nil {
		// Bytes never read go back to the connection window.
		if unread := len(*s.body) - s.bodyOff; unread > 0 {
			sc.creditConnLocked(int32(unread))
		}
		s.releaseBodyLocked()
	}
	if s.handlerDone {
		s.recycleLocked()
	}
}

// maybeCloseLocked closes s once both sides are done.
func (sc *serverConn) maybeCloseLocked(s *stream) {
	if s.localDone && s.remoteDone {
		sc.closeLocked(s, false)
	}
}

// resetLocked resets s: with RST_STREAM code when send is true (we reset it), without
// when the client did. err is what the handler's reads and writes return from now on.
func (sc *serverConn) resetLocked(s *stream, code errCode, send bool, err error) {
	if s.closed {
		return
	}
	if send && !sc.dead {
		sc.wbuf = appendRSTStream(sc.wbufLocked(), s.id, code)
		sc.wakeLocked()
	}
	s.reset = true
	if err == nil {
		err = &fault.Error{Source: fault.Downstream, Kind: fault.InvalidRequest,
			Cause: errors.New("h2: stream reset: " + code.String())}
	}
	s.err = err
	if s.cancel != nil {
		s.cancel()
	}
	s.wakeBodyLocked()
	sc.sendCond.Broadcast()
	sc.closeLocked(s, send)
}

// Request returns the downstream request.
func (s *stream) Request() *message.Request { return &s.req }

// Conn describes the connection.
func (s *stream) Conn() *message.ConnInfo { return s.c.info }

// Context returns the stream's context: canceled when the client resets the stream, the
// connection ends or the handler returns. It is made on first use.
func (s *stream) Context() context.Context {
	sc := s.c
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(sc.ctx)
		if s.reset {
			s.cancel()
		}
	}
	return s.ctx
}

// WriteHeader records the response head. A final head is sent with the first body bytes,
// on Flush or on Finish (as one HEADERS frame with END_STREAM when there is no body).
// Informational heads (1xx except 101) are sent at once, as WriteInterim sends them.
func (s *stream) WriteHeader(resp *message.Response) error {
	if err := s.headErr(); err != nil {
		return err
	}
	status := resp.Status
	if status < 100 || status > 999 {
		return errStatus
	}
	if status == 101 {
		return errSwitchProtos
	}
	if status < 200 {
		return s.WriteInterim(status, &resp.Header)
	}
	cl := resp.ContentLength
	if status == 204 {
		cl = -1
	}
	s.hblock = appendResponseHead(s.hblock[:0], status, &resp.Header, cl)
	s.c.mu.Lock()
	s.headPending = true
	s.xstate.Store(exHead)
	s.c.mu.Unlock()
	return nil
}

// headErr says why no response head can be written any more, if so.
func (s *stream) headErr() error {
	switch s.xstate.Load() {
	case exIdle:
		return nil
	case exAborted:
		return errAborted
	}
	return errHeadWritten
}

var (
	_ message.ServerExchange = (*stream)(nil)
	_ message.InterimWriter  = (*stream)(nil)
)

// WriteInterim sends an informational response head (100-199 except 101) with the fields of h
// at once, in a HEADERS frame without END_STREAM. It fails once the final head was written. A
// 100 Continue is sent at most once per stream (the body reader sends one on its own when the
// request asked for it); other interim heads are dropped while maxPendingWrite bytes wait for
// the client. It may run on another goroutine than the handler's while the handler
// waits for an upstream.
func (s *stream) WriteInterim(status int, h *message.Header) error {
	if status < 100 || status > 199 || status == 101 {
		return errStatus
	}
	if h == nil {
		h = &message.Header{}
	}
	// Encoded apart from s.hblock, which belongs to the final head.
	block := appendResponseHead(nil, status, h, -1)
	sc := s.c
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := s.headErr(); err != nil {
		return err
	}
	if err := s.writableLocked(); err != nil {
		return err
	}
	if status == 100 {
		if s.sent100 {
			return nil
		}
		s.sent100 = true
	} else if len(sc.wbuf) >= maxPendingWrite {
		// HEADERS have no flow control: a client that reads nothing would have every
		// stream's interim heads (from an origin, up to the header limit each) pile up in
		// the write buffer. They are only hints; with maxPendingWrite queued, drop them.
		return nil
	}
	sc.appendHeadersLocked(s, block, false)
	return nil
}

// writableLocked says why nothing can be sent on s, if so.
func (s *stream) writableLocked() error {
	if s.reset {
		return s.err
	}
	if s.c.dead {
		return errConnGone
	}
	if s.localDone {
		return errStreamClosed
	}
	return nil
}

// appendHeadersLocked appends a header block for s.
func (sc *serverConn) appendHeadersLocked(s *stream, block []byte, endStream bool) {
	b := sc.wbufLocked()
	if sc.tableUpdate {
		// The client shrank the HPACK table: say ours is empty (RFC 7541 section 4.2).
		sc.tableUpdate = false
		b = appendHeaderBlock(b, s.id, append([]byte{0x20}, block...), endStream, sc.peerMaxFrame)
	} else {
		b = appendHeaderBlock(b, s.id, block, endStream, sc.peerMaxFrame)
	}
	sc.wbuf = b
	sc.sentSincePing = true
	sc.wakeLocked()
}

func (s *stream) stateErr() error {
	switch s.xstate.Load() {
	case exIdle:
		return errNoHead
	case exFinished:
		return errFinished
	case exAborted:
		return errAborted
	}
	return nil
}

// maxPendingWrite is how much a stream may queue in the connection's write buffer before
// Write waits for the writer: the write side's backpressure.
const maxPendingWrite = 64 << 10

// Write sends body bytes as DATA frames, blocking while the stream's or the connection's
// flow-control window is closed or the write buffer is full. A wait for window longer than
// the Server's SendTimeout resets the stream and fails the Write (see Server.SendTimeout).
func (s *stream) Write(p []byte) (int, error) {
	if err := s.stateErr(); err != nil {
		return 0, err
	}
	sc := s.c
	sc.mu.Lock()
	n, err := s.writeLocked(p)
	if !s.stallSince.IsZero() {
		sc.unstallLocked(s)
	}
	sc.mu.Unlock()
	return n, err
}

func (s *stream) writeLocked(p []byte) (int, error) {
	sc := s.c
	total := 0
	for {
		if err := s.writableLocked(); err != nil {
			return total, err
		}
		if s.headPending {
			s.headPending = false
			sc.appendHeadersLocked(s, s.hblock, false)
		}
		if len(p) == 0 {
			return total, nil
		}
		// At most maxPendingWrite per frame, whatever frame size the client allows, so
		// DATA keeps within the write buffer's bound (maxPendingControl).
		n := int64(min(len(p), sc.peerMaxFrame, maxPendingWrite))
		n = min(n, s.sendWindow, sc.sendWindow)
		if n <= 0 {
			if s.stallSince.IsZero() {
				sc.stallLocked(s)
			}
			sc.sendCond.Wait()
			continue
		}
		if !s.stallSince.IsZero() {
			sc.unstallLocked(s)
		}
		if len(sc.wbuf) >= maxPendingWrite {
			sc.sendCond.Wait()
			continue
		}
		b := sc.wbufLocked()
		s.lastData, s.lastGen = len(b), sc.wgen+1
		b = appendFrameHeader(b, int(n), frameData, 0, s.id)
		sc.wbuf = append(b, p[:n]...)
		s.sendWindow -= n
		sc.sendWindow -= n
		sc.sentSincePing = true
		total += int(n)
		p = p[n:]
		sc.wakeLocked()
	}
}

// Flush sends the response head if it is still pending; body bytes are queued for the
// writer as Write is called.
func (s *stream) Flush() error {
	if err := s.stateErr(); err != nil {
		return err
	}
	_, err := s.Write(nil)
	return err
}

// Finish ends the response: END_STREAM on the last DATA frame when it has not left yet, on
// the HEADERS frame of a head-only response, or on a trailer block. Fields not allowed in
// trailers (RFC 9110 section 6.5.1) are dropped. When the client is still sending the
// request body, the stream is then reset with NO_ERROR (RFC 9113 section 8.1).
func (s *stream) Finish(trailer *message.Header) error {
	if err := s.stateErr(); err != nil {
		return err
	}
	s.xstate.Store(exFinished)
	sc := s.c
	hasHead := s.headPending
	start := 0
	if hasHead {
		start = len(s.hblock)
	} else {
		s.hblock = s.hblock[:0]
	}
	if trailer != nil && trailer.Len() > 0 {
		s.hblock = appendTrailers(s.hblock, trailer)
	}
	hasTrailers := len(s.hblock) > start
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	switch {
	case hasHead:
		s.headPending = false
		sc.appendHeadersLocked(s, s.hblock[:start], !hasTrailers)
		if hasTrailers {
			sc.appendHeadersLocked(s, s.hblock[start:], true)
		}
	case hasTrailers:
		sc.appendHeadersLocked(s, s.hblock, true)
	case s.lastGen == sc.wgen+1:
		// The last DATA frame is still in the buffer: it carries END_STREAM.
		sc.wbuf[s.lastData+4] |= flagEndStream
		sc.wakeLocked()
	default:
		sc.wbuf = appendFrameHeader(sc.wbufLocked(), 0, frameData, flagEndStream, s.id)
		sc.wakeLocked()
	}
	s.localDone = true
	if !s.remoteDone {
		sc.resetLocked(s, codeNo, true, errStreamClosed)
		return nil
	}
	sc.closeLocked(s, false)
	return nil
}

// Abort resets the stream with RST_STREAM INTERNAL_ERROR. It may be called from any
// goroutine; later calls on the exchange fail.
func (s *stream) Abort(err error) {
	if s.xstate.Swap(exAborted) == exAborted {
		return
	}
	sc := s.c
	sc.mu.Lock()
	sc.resetLocked(s, codeInternal, true, errAborted)
	sc.mu.Unlock()
	if l := sc.st.logger; l.Enabled(context.Background(), -4) {
		l.Debug("h2: stream aborted", "remote", sc.info.RemoteAddr, "path", s.req.Target, "err", err)
	}
}

// bodyReader streams a request body. It is allocated per request with a body, so a read
// after the exchange ended (and the stream was reused) fails instead of reading another
// request's body.
type bodyReader struct {
	s    *stream
	c    *serverConn
	gen  uint32
	cond sync.Cond // on c.mu: data, end of stream or reset
}

// Read returns request body bytes, waiting for DATA when none are buffered. A wait longer
// than the Server's BodyReadTimeout resets the stream and fails the Read (see
// Server.BodyReadTimeout).
func (b *bodyReader) Read(p []byte) (int, error) {
	sc := b.c
	sc.mu.Lock()
	n, err := b.readLocked(p)
	// The generation first: once the exchange ended the stream may serve another
	// connection's request, whose fields are not ours to read.
	if s := b.s; s.gen.Load() == b.gen && !s.readSince.IsZero() {
		sc.unwaitBodyLocked(s)
	}
	sc.mu.Unlock()
	return n, err
}

func (b *bodyReader) readLocked(p []byte) (int, error) {
	sc := b.c
	s := b.s
	if s.gen.Load() != b.gen {
		return 0, errBodyGone
	}
	if s.expect100 && !s.sent100 {
		s.sent100 = true
		// Only while no final head went out (a pending one may still follow the 100).
		if (s.xstate.Load() == exIdle || s.headPending) && s.writableLocked() == nil {
			sc.appendHeadersLocked(s, continue100Block, false)
		}
	}
	for {
		if s.gen.Load() != b.gen {
			return 0, errBodyGone
		}
		if s.reset {
			return 0, s.err
		}
		if s.body != nil && s.bodyOff < len(*s.body) {
			n := copy(p, (*s.body)[s.bodyOff:])
			s.bodyOff += n
			if s.bodyOff == len(*s.body) {
				*s.body = (*s.body)[:0]
				s.bodyOff = 0
			}
			s.creditLocked(int32(n))
			sc.creditConnLocked(int32(n))
			return n, nil
		}
		if s.bodyErr != nil {
			return 0, s.bodyErr
		}
		if s.bodyEOF {
			if s.gotTrailers && s.trailerIn.Len() > 0 {
				s.req.Trailer, s.trailerIn = s.trailerIn, s.req.Trailer
			}
			return 0, io.EOF
		}
		if sc.dead {
			return 0, errConnGone
		}
		if len(p) == 0 {
			return 0, nil
		}
		if s.readSince.IsZero() {
			sc.waitBodyLocked(s)
		}
		b.cond.Wait()
	}
}

// continue100Block is the header block of a 100 Continue response.
var continue100Block = []byte{0x08, 0x03, '1', '0', '0'}
