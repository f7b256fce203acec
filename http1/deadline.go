package http1

import (
	"net"
	"time"
)

// epoch anchors mono.
var epoch = time.Now()

// mono returns monotonic nanoseconds since epoch: one clock read, where time.Now takes two
// (wall and monotonic).
func mono() int64 { return int64(time.Since(epoch)) }

// lazyDeadline sets a per-operation deadline (each read, each write) on a connection without
// paying for it on every operation: a deadline of the same length set less than an eighth of
// that length ago is left in force. Every operation still gets at least 7/8 of its timeout,
// and a busy connection re-arms its timer a few times a minute instead of twice per request.
// Whoever else sets the same deadline on the connection must call forget.
type lazyDeadline struct {
	at    int64         // mono() when the deadline in force was set
	d     time.Duration // its length; zero means no deadline
	valid bool          // at and d describe the deadline in force
}

// arm makes sure a deadline of d from about now is in force on c's read side (write false)
// or write side; d zero clears the deadline.
func (ld *lazyDeadline) arm(c net.Conn, write bool, d time.Duration) {
	now := mono()
	if ld.valid && ld.d == d && (d == 0 || now-ld.at < int64(d/8)) {
		return
	}
	var t time.Time
	if d > 0 {
		t = epoch.Add(time.Duration(now) + d)
	}
	if write {
		c.SetWriteDeadline(t)
	} else {
		c.SetReadDeadline(t)
	}
	ld.at, ld.d, ld.valid = now, d, true
}

// forget records that the deadline was set by other means.
func (ld *lazyDeadline) forget() { ld.valid = false }
