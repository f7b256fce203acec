package router

import (
	"context"
	"io"
	"sync"

	"github.com/verge-edge/verge/message"
)

// detached presents an HTTP/1.1 exchange with a context that a graceful shutdown does not
// cancel. The http1 adapter hands exchanges the server's shutdown context, which
// server.Server cancels to start a graceful stop; an exchange in flight would then see its
// upstream request canceled instead of finishing. HTTP/1 connections have no per-request
// cancellation signal besides that one (a vanished client shows up as a failed read or
// write), so nothing else is lost. HTTP/2 exchanges carry per-stream contexts and are passed
// through unchanged.
type detached struct {
	message.ServerExchange
	up message.Upgrader
}

var detachedPool = sync.Pool{New: func() any { return new(detached) }}

// Context is never canceled.
func (d *detached) Context() context.Context { return context.Background() }

// Upgrade forwards to the HTTP/1.1 exchange (WebSocket and other upgrades).
func (d *detached) Upgrade(resp *message.Response) (io.ReadWriteCloser, error) {
	return d.up.Upgrade(resp)
}

// detach wraps ex when it is an HTTP/1 exchange; release must be called with the result
// after the exchange is served.
func detach(ex message.ServerExchange) message.ServerExchange {
	up, ok := ex.(message.Upgrader)
	if !ok || ex.Conn().Proto != message.HTTP11 {
		return ex
	}
	d := detachedPool.Get().(*detached)
	d.ServerExchange, d.up = ex, up
	return d
}

func release(ex message.ServerExchange) {
	if d, ok := ex.(*detached); ok {
		d.ServerExchange, d.up = nil, nil
		detachedPool.Put(d)
	}
}
