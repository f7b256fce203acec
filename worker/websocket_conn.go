package worker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/internal/wsproto"
)

// WebSocket limits (docs/workers.md, WebSockets; docs/security.md).
const (
	// MaxWebSocketMessage bounds a message a client sends (assembled from its fragments);
	// a larger one closes the socket with 1009. A worker's sends are bounded the same way.
	MaxWebSocketMessage = 1 << 20
	// WebSocketIdleTimeout closes a socket on which no message moved either way for this
	// long (close code 1001), like the proxy's tunnel idle timeout.
	WebSocketIdleTimeout = 5 * time.Minute
	// MaxWebSocketQueue bounds the bytes queued for one socket that its client has not
	// read yet: a send beyond it closes the socket with 1008 (a slow consumer).
	MaxWebSocketQueue = 4 << 20
	// MaxWebSocketQueueTotal bounds the bytes queued for all the clients of one worker's
	// sockets: a send beyond it closes its socket with 1008, as a slow consumer's.
	MaxWebSocketQueueTotal = 64 << 20
	// MaxWebSocketsPerObject caps the sockets one Durable Object holds.
	MaxWebSocketsPerObject = 32768
	// MaxWebSocketsPerWorker caps the sockets the host holds for one worker's Durable
	// Objects (those accepted by the worker itself are bounded by its instances).
	MaxWebSocketsPerWorker = 100000
	// MaxWebSocketAttachment bounds a socket's serialized attachment.
	MaxWebSocketAttachment = 2048
	// MaxWebSocketTags and MaxWebSocketTagLen bound the tags of a socket.
	MaxWebSocketTags   = 10
	MaxWebSocketTagLen = 256
	// wsWriteTimeout bounds one write to a client.
	wsWriteTimeout = 30 * time.Second
	// wsCloseTimeout is how long a socket that sent its close frame waits for the client's.
	wsCloseTimeout = 5 * time.Second
)

var (
	errWSClosed    = errors.New("websocket is closed")
	errWSQueueFull = fmt.Errorf("websocket send queue above %d bytes (slow client)", MaxWebSocketQueue)
)

// wsConn is one accepted WebSocket: the client connection after the 101, the frame reader,
// and a queue of frames for the client written by a goroutine started when frames are
// queued and ended when the queue is empty. An idle socket has no buffer and no writer; the
// reader (a goroutine for sockets held for Durable Objects, the worker's own invocation for
// the others) holds a 14-byte header array.
type wsConn struct {
	id    uint64
	stats *wsStats

	rd      wsproto.Reader
	started int64        // creation time, monotonic nanoseconds since clockBase
	active  atomic.Int64 // last message either way, nanoseconds since clockBase

	mu        sync.Mutex
	conn      io.ReadWriteCloser // nil until attached (a socket accepted before its 101)
	queue     [][]byte           // frames waiting to be written
	queued    int
	writing   bool
	closeSent bool // a close frame is queued or written: nothing more is sent
	closeRecv bool // the client's close frame arrived
	ended     bool // the connection is closed
	linger    bool // the client broke the protocol: drain its input before closing
}

// wsSeq numbers sockets; ids are unique in the process.
var wsSeq atomic.Uint64

func newWSConn(stats *wsStats) *wsConn {
	c := &wsConn{id: wsSeq.Add(1), stats: stats}
	c.rd.Max = MaxWebSocketMessage
	c.touch()
	stats.open.Add(1)
	return c
}

func (c *wsConn) touch() { c.active.Store(int64(time.Since(clockBase))) }

// attach gives the socket its connection (after the 101) and writes what was queued.
func (c *wsConn) attach(conn io.ReadWriteCloser) {
	c.mu.Lock()
	c.conn = conn
	c.rd.R = conn
	if c.ended {
		c.mu.Unlock()
		conn.Close()
		return
	}
	c.kickLocked()
	c.mu.Unlock()
}

// send queues a data frame (op wsproto.OpText or OpBinary).
func (c *wsConn) send(op byte, p []byte) error {
	if len(p) > MaxWebSocketMessage {
		return fmt.Errorf("websocket message of %d bytes exceeds %d", len(p), MaxWebSocketMessage)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent || c.ended {
		return errWSClosed
	}
	if c.queued+len(p) > MaxWebSocketQueue || c.stats.queued.Load()+int64(len(p)) > MaxWebSocketQueueTotal {
		c.closeLocked(wsproto.ClosePolicyViolation, "send queue full")
		return errWSQueueFull
	}
	c.stats.out.Add(1)
	c.touch()
	c.enqueueLocked(wsproto.AppendFrame(make([]byte, 0, len(p)+10), op, p))
	return nil
}

func (c *wsConn) enqueueLocked(frame []byte) {
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.stats.queued.Add(int64(len(frame)))
	c.kickLocked()
}

// kickLocked starts the writer when frames wait and none runs.
func (c *wsConn) kickLocked() {
	if !c.writing && c.conn != nil && len(c.queue) > 0 && !c.ended {
		c.writing = true
		go c.writeLoop()
	}
}

// writeLoop writes queued frames until the queue is empty; it closes the connection after
// the close frame when the client's close was received already (or on a write failure).
func (c *wsConn) writeLoop() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.ended {
			c.writing = false
			if c.closeSent && c.closeRecv {
				c.endLocked()
			}
			c.mu.Unlock()
			return
		}
		f := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.queued -= len(f)
		c.stats.queued.Add(-int64(len(f)))
		conn := c.conn
		c.mu.Unlock()
		if d, ok := conn.(interface{ SetWriteDeadline(time.Time) error }); ok {
			d.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		}
		if _, err := conn.Write(f); err != nil {
			c.mu.Lock()
			c.endLocked()
			c.mu.Unlock()
		}
	}
}

// close starts the closing handshake with code and reason: the close frame is queued, and
// the connection closes when the client answers (or after wsCloseTimeout).
func (c *wsConn) close(code int, reason string) {
	c.mu.Lock()
	c.closeLocked(code, reason)
	c.mu.Unlock()
}

func (c *wsConn) closeLocked(code int, reason string) {
	if c.closeSent || c.ended {
		return
	}
	c.closeSent = true
	c.enqueueLocked(wsproto.AppendFrame(nil, wsproto.OpClose, wsproto.ClosePayload(code, reason)))
	if c.conn == nil {
		return
	}
	if d, ok := c.conn.(interface{ SetReadDeadline(time.Time) error }); ok && !c.closeRecv {
		d.SetReadDeadline(time.Now().Add(wsCloseTimeout))
	}
}

// closeAndEnd sends a close frame and ends the connection once it is written, without
// waiting for the client's answer (a client that broke the protocol, an idle one, the end
// of the invocation that held the socket).
func (c *wsConn) closeAndEnd(code int, reason string) {
	c.mu.Lock()
	c.closeLocked(code, reason)
	c.closeRecv = true
	if !c.writing {
		c.endLocked()
	}
	c.mu.Unlock()
}

// terminate closes the connection at once.
func (c *wsConn) terminate() {
	c.mu.Lock()
	c.endLocked()
	c.mu.Unlock()
}

func (c *wsConn) endLocked() {
	if c.ended {
		return
	}
	c.ended = true
	c.stats.open.Add(-1)
	// What was never written is dropped.
	c.stats.queued.Add(-int64(c.queued))
	clear(c.queue)
	c.queue, c.queued = nil, 0
	if c.conn == nil {
		return
	}
	if c.linger {
		go lingerClose(c.conn)
		return
	}
	c.conn.Close()
}

// lingerClose closes a connection whose client may still be sending (it broke the protocol
// mid-message): the write side is shut first and what arrives is read and dropped for a
// moment, so that the close frame is not destroyed by a reset the unread bytes would cause.
func lingerClose(conn io.ReadWriteCloser) {
	defer conn.Close()
	cw, ok := conn.(interface{ CloseWrite() error })
	d, ok2 := conn.(interface{ SetReadDeadline(time.Time) error })
	if !ok || !ok2 || cw.CloseWrite() != nil {
		return
	}
	d.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, conn, lingerBytes)
}

// lingerTimeout and lingerBytes bound lingerClose.
const (
	lingerTimeout = time.Second
	lingerBytes   = 2 * MaxWebSocketMessage
)

// wsEvent is what a socket's reader found: a message, or the end of the socket.
type wsEvent struct {
	kind   uint32 // workerabi.KindWSMessage, KindWSClose or KindWSError
	op     byte   // message: wsproto.OpText or OpBinary
	data   []byte // message payload
	code   int    // close: the client's code; error: the code sent to the client
	reason string // close reason, or the error's text
	clean  bool   // close: the client sent a close frame
}

// next reads until a message or the socket's end, answering pings and the closing
// handshake itself. After an event of kind KindWSClose or KindWSError the socket is done.
func (c *wsConn) next() wsEvent {
	for {
		c.setIdleDeadline()
		op, p, err := c.rd.Next()
		if err != nil {
			return c.readFailed(err)
		}
		c.touch()
		switch op {
		case wsproto.OpText, wsproto.OpBinary:
			c.stats.in.Add(1)
			return wsEvent{kind: kindWSMessage, op: op, data: p}
		case wsproto.OpPing:
			c.mu.Lock()
			if !c.closeSent && !c.ended {
				c.enqueueLocked(wsproto.AppendFrame(nil, wsproto.OpPong, p))
			}
			c.mu.Unlock()
		case wsproto.OpClose:
			code, reason := wsproto.ParseClose(p)
			c.mu.Lock()
			c.closeRecv = true
			if c.closeSent {
				// Our close was answered: done once our frames are written.
				if !c.writing {
					c.endLocked()
				}
			} else {
				// Echo the code (RFC 6455 section 5.5.1); the writer closes afterwards.
				c.closeSent = true
				echo := code
				if echo == wsproto.CloseNoStatus {
					echo = wsproto.CloseNormal
				}
				c.enqueueLocked(wsproto.AppendFrame(nil, wsproto.OpClose, wsproto.ClosePayload(echo, "")))
				if !c.writing {
					c.endLocked()
				}
			}
			c.mu.Unlock()
			return wsEvent{kind: kindWSClose, code: code, reason: reason, clean: true}
		}
	}
}

// setIdleDeadline arms the read deadline at the idle timeout from the last activity.
func (c *wsConn) setIdleDeadline() {
	c.mu.Lock()
	conn, closing := c.conn, c.closeSent
	c.mu.Unlock()
	if closing {
		return // closeLocked set the close timeout
	}
	if d, ok := conn.(interface{ SetReadDeadline(time.Time) error }); ok {
		last := clockBase.Add(time.Duration(c.active.Load()))
		d.SetReadDeadline(last.Add(WebSocketIdleTimeout))
	}
}

// readFailed turns a read error into the socket's last event, sending the close frame a
// protocol violation calls for.
func (c *wsConn) readFailed(err error) wsEvent {
	var pe *wsproto.Error
	if errors.As(err, &pe) {
		c.stats.protocolErrors.Add(1)
		c.mu.Lock()
		c.linger = true
		c.mu.Unlock()
		c.closeAndEnd(pe.Code, pe.Reason)
		return wsEvent{kind: kindWSError, code: pe.Code, reason: pe.Error()}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.mu.Lock()
		closing := c.closeSent
		c.mu.Unlock()
		if !closing {
			idle := time.Since(clockBase.Add(time.Duration(c.active.Load())))
			if idle < WebSocketIdleTimeout {
				// A send kept the socket alive: read on.
				return c.next()
			}
			c.closeAndEnd(wsproto.CloseGoingAway, "idle timeout")
			return wsEvent{kind: kindWSClose, code: wsproto.CloseAbnormal, reason: "idle timeout", clean: false}
		}
	}
	c.terminate()
	return wsEvent{kind: kindWSClose, code: wsproto.CloseAbnormal, clean: false}
}

// wsStats count a worker's WebSockets (Stats).
type wsStats struct {
	open           atomic.Int64
	in             atomic.Uint64
	out            atomic.Uint64
	protocolErrors atomic.Uint64
	queued         atomic.Int64 // bytes queued for clients (MaxWebSocketQueueTotal)
}
