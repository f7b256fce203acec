package h2

import "time"

// Flood accounting. Some frames cost the server work but carry no request progress: PING
// (except the first after response frames were sent, as bandwidth probes do), SETTINGS,
// PRIORITY, RST_STREAM, empty DATA, CONTINUATION, WINDOW_UPDATE of less than 1 KiB, unknown
// frame types, and header blocks or streams the server has to reject. Each adds to a
// per-connection score; the score leaks away with time (floodLeakPerSecond) and useful work
// (a request that reaches its handler, request body bytes that reach it) pays it back. A connection whose
// score passes floodLimit is closed with GOAWAY ENHANCE_YOUR_CALM. The accounting is a few
// integer operations per frame on the reader goroutine only; the time it leaks by is that of
// the last read (lastRead), not a clock read per frame.
const (
	// floodLimit is the score at which the connection is closed: ten thousand cheap frames
	// in a burst, or a hundred rejected header blocks.
	floodLimit = 10_000
	// floodLeakPerSecond is how fast the score drains: a client may send a thousand cheap
	// frames (or ten rejected blocks) per second for ever.
	floodLeakPerSecond = 1_000
	// costFrame is the cost of a frame that carries no progress.
	costFrame = 1
	// costEarlyReset is the cost of a RST_STREAM for a stream whose response is not finished
	// (CVE-2023-44487, Rapid Reset); the request it opened pays one back.
	costEarlyReset = 5
	// costReject is the cost of a stream the server rejects for the client's fault: a header
	// block over the list limit (an HPACK bomb costs a millisecond to decode), a refused or
	// malformed stream, a body over its limit.
	costReject = 100
)

// floodLeakEvery is the time one unit of score takes to leak away.
const floodLeakEvery = int64(time.Second / floodLeakPerSecond)

// charge adds cost to the flood score; processFrame closes the connection once the score
// passes floodLimit. reason names the flood in the GOAWAY's CountError.
func (sc *serverConn) charge(cost int64, reason string) {
	now := sc.lastRead.Load()
	if d := now - sc.floodAt; d >= floodLeakEvery {
		sc.flood = max(sc.flood-d/floodLeakEvery, 0)
		sc.floodAt = now - d%floodLeakEvery
	}
	sc.flood += cost
	sc.floodReason = reason
}

// credit pays back n units of flood score for useful work.
func (sc *serverConn) credit(n int64) {
	if sc.flood > 0 {
		sc.flood = max(sc.flood-n, 0)
	}
}
