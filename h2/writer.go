package h2

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// wbufLocked returns the write buffer, taking one from the pool when there is none: an idle
// connection holds no write buffer.
func (sc *serverConn) wbufLocked() []byte {
	if sc.wp == nil {
		sc.wp = wbufPool.Get().(*[]byte)
		sc.wbuf = (*sc.wp)[:0]
	}
	return sc.wbuf
}

// wakeLocked signals the writer that frames are pending, once per batch.
func (sc *serverConn) wakeLocked() {
	if !sc.woken {
		sc.woken = true
		select {
		case sc.wake <- struct{}{}:
		default:
		}
	}
}

// maxKeptWbuf is the largest write buffer returned to the pool.
const maxKeptWbuf = 256 << 10

// writeLoop sends pending frames: everything queued since the last write goes out in one
// write. It yields once before taking the buffer so that handlers that are ready to run
// add their frames to the same write.
func (sc *serverConn) writeLoop() {
	defer close(sc.writerDone)
	timeout := sc.st.writeTimeout
	for range sc.wake {
		runtime.Gosched()
		for {
			sc.mu.Lock()
			sc.woken = false
			if sc.dead {
				sc.mu.Unlock()
				return
			}
			wp, b := sc.wp, sc.wbuf
			if len(b) == 0 {
				closing := sc.closing
				sc.mu.Unlock()
				if closing {
					sc.finishWrites()
					return
				}
				break
			}
			sc.wp, sc.wbuf = nil, nil
			sc.wgen++
			sc.mu.Unlock()
			if timeout > 0 {
				sc.c.SetWriteDeadline(time.Now().Add(timeout))
			}
			_, err := sc.c.Write(b)
			if cap(b) <= maxKeptWbuf {
				*wp = b[:0]
				wbufPool.Put(wp)
			}
			sc.mu.Lock()
			sc.sendCond.Broadcast()
			if err != nil {
				sc.dead = true
				sc.mu.Unlock()
				sc.c.Close()
				return
			}
			sc.mu.Unlock()
		}
	}
}

// finishWrites ends a connection whose last frames (a GOAWAY) were written: the sending
// side is closed and the reader, which drains what the client still sends, gets a second.
func (sc *serverConn) finishWrites() {
	sc.mu.Lock()
	sc.dead = true
	sc.sendCond.Broadcast()
	sc.mu.Unlock()
	if cw, ok := sc.c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		sc.c.SetReadDeadline(time.Now().Add(time.Second))
		return
	}
	sc.c.Close()
}

// goAwayLocked sends GOAWAY with the last stream id the server will process. Only one
// GOAWAY NO_ERROR is sent; an error code may follow it.
func (sc *serverConn) goAwayLocked(code errCode) {
	if sc.goAway && code == codeNo || sc.dead {
		return
	}
	sc.goAway = true
	sc.wbuf = appendGoAway(sc.wbufLocked(), sc.maxClientID, code)
	sc.wakeLocked()
}

// startShutdownLocked starts a graceful close: GOAWAY, then close once the open streams
// ended.
func (sc *serverConn) startShutdownLocked() {
	sc.goAwayLocked(codeNo)
	if sc.open == 0 {
		sc.closing = true
		sc.wakeLocked()
	}
}

// The connection has one timer, run by onTimer, for every deadline it keeps: the idle
// timeout, the keep-alive PING and its answer, responses stalled on flow control
// (Server.SendTimeout), body reads waiting for DATA (Server.BodyReadTimeout) and the PING
// acknowledgement of a graceful shutdown (drain.go).

// armTimer starts the keep-alive and idle timer, if either is enabled.
func (sc *serverConn) armTimer() {
	st := sc.st
	d := st.idleTimeout
	if st.readIdle > 0 && (d <= 0 || st.readIdle < d) {
		d = st.readIdle
	}
	if d > 0 {
		sc.mu.Lock()
		now := time.Now()
		sc.armLocked(now, now.Add(d))
		sc.mu.Unlock()
	}
}

// armLocked makes sure the timer fires no later than at.
func (sc *serverConn) armLocked(now, at time.Time) {
	if sc.timer == nil || sc.timerAt.IsZero() || at.Before(sc.timerAt) {
		sc.resetTimerLocked(at.Sub(now), at)
	}
}

// stallLocked records that s's Write waits for flow-control window, and makes sure the
// timer fires when the wait reaches the SendTimeout.
func (sc *serverConn) stallLocked(s *stream) {
	d := sc.st.sendTimeout
	if d <= 0 {
		return
	}
	now := time.Now()
	s.stallSince = now
	sc.stalled++
	sc.armLocked(now, now.Add(d))
}

// unstallLocked records that s's Write no longer waits for window.
func (sc *serverConn) unstallLocked(s *stream) {
	s.stallSince = time.Time{}
	sc.stalled--
}

// waitBodyLocked records that a Read of s's request body waits for DATA, and makes sure the
// timer fires when the wait reaches the BodyReadTimeout.
func (sc *serverConn) waitBodyLocked(s *stream) {
	d := sc.st.bodyRead
	if d <= 0 {
		return
	}
	now := time.Now()
	s.readSince = now
	sc.bodyWaits++
	sc.armLocked(now, now.Add(d))
}

// unwaitBodyLocked records that the Read of s's request body no longer waits.
func (sc *serverConn) unwaitBodyLocked(s *stream) {
	s.readSince = time.Time{}
	sc.bodyWaits--
}

// resetTimerLocked (re)arms the connection's timer to fire in d, at at.
func (sc *serverConn) resetTimerLocked(d time.Duration, at time.Time) {
	sc.timerAt = at
	if sc.timer == nil {
		sc.timer = time.AfterFunc(d, sc.onTimer)
		return
	}
	sc.timer.Reset(d)
}

// errSendTimeout is what a Write blocked on flow control for longer than SendTimeout returns.
var errSendTimeout = &fault.Error{Source: fault.Downstream, Kind: fault.WriteTimeout,
	Cause: errors.New("h2: no flow-control window granted within the send timeout")}

// errBodyReadTimeout is what a body Read that waited for DATA for longer than BodyReadTimeout
// returns.
var errBodyReadTimeout = &fault.Error{Source: fault.Downstream, Kind: fault.ReadTimeout,
	Cause: errors.New("h2: no request body bytes received within the body read timeout")}

// onTimer checks the drain's PING acknowledgement, the idle timeout, the keep-alive PING,
// streams stalled on flow control and body reads waiting for DATA, and re-arms itself.
func (sc *serverConn) onTimer() {
	st := sc.st
	now := time.Now()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.timerAt = time.Time{}
	if sc.dead || sc.closing {
		return
	}
	const never = time.Duration(1<<63 - 1)
	next := never
	if sc.draining {
		d := sc.drainAt.Sub(now)
		if d <= 0 {
			sc.endDrainLocked()
			if sc.closing {
				return
			}
		} else {
			next = d
		}
	}
	if st.idleTimeout > 0 {
		if sc.open == 0 && sc.running == 0 {
			if d := now.Sub(sc.idleSince); d >= st.idleTimeout {
				sc.startShutdownLocked()
				return
			} else {
				next = min(next, st.idleTimeout-d)
			}
		} else {
			next = min(next, st.idleTimeout)
		}
	}
	if st.readIdle > 0 {
		switch {
		case !sc.pingAt.IsZero():
			if d := now.Sub(sc.pingAt); d >= st.pingTimeout {
				sc.dead = true
				sc.sendCond.Broadcast()
				go sc.c.Close()
				return
			} else {
				next = min(next, st.pingTimeout-d)
			}
		default:
			if d := now.Sub(time.Unix(0, sc.lastRead.Load())); d >= st.readIdle {
				sc.pingAt = now
				sc.wbuf = appendPing(sc.wbufLocked(), false, pingData[:])
				sc.wakeLocked()
				next = min(next, st.pingTimeout)
			} else {
				next = min(next, st.readIdle-d)
			}
		}
	}
	if sc.stalled > 0 || sc.bodyWaits > 0 {
		if d, stop := sc.expireWaitsLocked(now); stop {
			return
		} else {
			next = min(next, d)
		}
	}
	if next != never {
		sc.resetTimerLocked(next, now.Add(next))
	}
}

// expireWaitsLocked resets the streams whose Write waited for window for SendTimeout, or
// whose body Read waited for DATA for BodyReadTimeout (RST_STREAM CANCEL both). When the
// connection's own window is the one that stayed closed, the whole connection goes: GOAWAY
// ENHANCE_YOUR_CALM (stop is true then). Otherwise it returns when the next wait expires.
func (sc *serverConn) expireWaitsLocked(now time.Time) (next time.Duration, stop bool) {
	sendLimit, readLimit := sc.st.sendTimeout, sc.st.bodyRead
	next = max(sendLimit, readLimit)
	for _, s := range sc.streams {
		if !s.stallSince.IsZero() {
			if waited := now.Sub(s.stallSince); waited < sendLimit {
				next = min(next, sendLimit-waited)
			} else if sc.sendWindow <= 0 {
				sc.countError("conn", codeEnhanceYourCalm, "send_window_stalled")
				sc.goAwayLocked(codeEnhanceYourCalm)
				sc.closing = true
				for _, s := range sc.streams {
					sc.resetLocked(s, codeCancel, false, errSendTimeout)
				}
				sc.wakeLocked()
				return 0, true
			} else {
				sc.countError("stream", codeCancel, "send_window_stalled")
				sc.resetLocked(s, codeCancel, true, errSendTimeout)
				continue
			}
		}
		if !s.readSince.IsZero() {
			if waited := now.Sub(s.readSince); waited < readLimit {
				next = min(next, readLimit-waited)
			} else {
				sc.countError("stream", codeCancel, "body_read_timeout")
				sc.resetLocked(s, codeCancel, true, errBodyReadTimeout)
			}
		}
	}
	return next, false
}

var pingData = [8]byte{'v', 'e', 'r', 'g', 'e', 'k', 'a', '!'}

// runHandlers runs s's handler, then those of streams that waited for a handler slot.
func (sc *serverConn) runHandlers(s *stream) *stream {
	for s != nil {
		sc.runHandler(s)
		sc.mu.Lock()
		sc.running--
		if s.cancel != nil {
			s.cancel()
		}
		s.handlerDoneLocked()
		s = nil
		for len(sc.queue) > 0 {
			n := sc.queue[0]
			sc.queue[0] = nil
			sc.queue = sc.queue[1:]
			if n.reset || sc.dead {
				n.handlerDoneLocked()
				continue
			}
			s = n
			sc.running++
			break
		}
		if len(sc.queue) == 0 {
			sc.queue = sc.queue[:0:0]
		}
		if sc.open == 0 && sc.running == 0 {
			sc.idleSince = time.Now()
		}
		sc.mu.Unlock()
	}
	return nil
}

// runHandler calls the Server's Handler for s and resets the stream when the handler
// panicked or returned without Finish or Abort.
func (sc *serverConn) runHandler(s *stream) {
	fn := sc.st.srv.Handler
	logger := sc.st.logger
	defer func() {
		if p := recover(); p != nil {
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			logger.Error("h2: handler panic", "remote", sc.info.RemoteAddr,
				"path", s.req.Target, "panic", p, "stack", string(buf))
			sc.resetHandler(s)
		}
	}()
	if fn == nil {
		fn = notFound
	}
	fn(s)
	switch s.xstate.Load() {
	case exFinished, exAborted:
		return
	}
	if logger.Enabled(context.Background(), -4) {
		logger.Debug("h2: handler returned without Finish; resetting stream",
			"remote", sc.info.RemoteAddr, "path", s.req.Target)
	}
	sc.resetHandler(s)
}

func (sc *serverConn) resetHandler(s *stream) {
	s.xstate.Store(exAborted)
	sc.mu.Lock()
	sc.resetLocked(s, codeInternal, true, errAborted)
	sc.mu.Unlock()
}

// notFound answers when the Server has no Handler.
func notFound(ex message.ServerExchange) {
	ex.WriteHeader(&message.Response{Status: 404})
	ex.Finish(nil)
}
