package h2

import "time"

// Graceful shutdown in two steps (RFC 9113 section 6.8). A single GOAWAY naming the last
// stream seen refuses the streams the client sent while the GOAWAY was on its way; the
// client cannot tell whether they were processed unless it retries them itself. So the
// server first sends a GOAWAY with the largest stream id, which tells the client to open no
// more streams but refuses none, followed by a PING. The client acknowledges the PING after
// it saw the GOAWAY, so every stream it opened before arrives before the acknowledgement.
// Then the final GOAWAY names the last stream the server processes, and the connection
// closes once its streams are done.
const (
	// maxStreamID is the largest stream identifier, sent in the first GOAWAY.
	maxStreamID = 1<<31 - 1
	// drainPingTimeout bounds the wait for the PING acknowledgement: after it, the final
	// GOAWAY goes out anyway (Server.Shutdown's context bounds the whole drain).
	drainPingTimeout = time.Second
)

// drainPingData marks the PING sent with the first GOAWAY.
var drainPingData = [8]byte{'v', 'e', 'r', 'g', 'e', 'g', 'o', 'a'}

// startDrainLocked begins a graceful shutdown: the first GOAWAY and its PING, or the final
// GOAWAY at once when a GOAWAY was already sent.
func (sc *serverConn) startDrainLocked() {
	switch {
	case sc.draining:
		return
	case sc.goAway || sc.dead:
		sc.startShutdownLocked()
		return
	}
	sc.draining = true
	b := appendGoAway(sc.wbufLocked(), maxStreamID, codeNo)
	sc.wbuf = appendPing(b, false, drainPingData[:])
	sc.wakeLocked()
	// The connection's timer (onTimer) sends the final GOAWAY if the ack does not come.
	now := time.Now()
	sc.drainAt = now.Add(drainPingTimeout)
	sc.armLocked(now, sc.drainAt)
}

// endDrainLocked sends the final GOAWAY: the PING was acknowledged, or not in time.
func (sc *serverConn) endDrainLocked() {
	if !sc.draining {
		return
	}
	sc.draining = false
	sc.startShutdownLocked()
}

// drainAckLocked takes a PING acknowledgement and reports whether it answered the drain's
// PING, which sends the final GOAWAY.
func (sc *serverConn) drainAckLocked(p []byte) bool {
	if !sc.draining || string(p) != string(drainPingData[:]) {
		return false
	}
	sc.endDrainLocked()
	return true
}
