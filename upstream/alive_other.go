//go:build !unix

package upstream

import "net"

// initAlive does nothing where the non-blocking socket check is not available; a conn the
// origin closed while idle then fails its next request with Retry set, and the transport's
// transparent retry covers idempotent requests.
func (pc *pconn) initAlive(net.Conn) {}

// alive reports true: no cheap check exists on this platform.
func (pc *pconn) alive() bool { return true }
