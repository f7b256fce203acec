package worker

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/verge-edge/verge/internal/workerabi"
)

// This file hands the rest of an invocation's request body to the host, for the calls with
// a streamed request body (workerabi.OpDOFetchBody, workerabi.OpContainerFetchBody): a
// worker that passes its incoming request on sends its body without copying it through
// guest memory, so a body of any size (within the listener's limits) passes in bounded
// memory and CPU.

// errLentClosed is what a read of a lent request body gets after the invocation that lent
// it ended.
var errLentClosed = errors.New("request body: the invocation that passed it on has ended")

// lentBody is the rest of an invocation's request body, passed on to a Durable Object's
// invocation or to a container's request. It is read once, by whoever it was passed to,
// while its owner waits and after, until the owner's invocation ends (Close): the reader
// under it (a client's request body) is not valid past that. A read in progress finishes
// before Close returns.
type lentBody struct {
	mu     sync.Mutex
	r      io.Reader // nil once read to its end or closed
	closed bool
}

func (b *lentBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errLentClosed
	}
	if b.r == nil {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.r = nil
	}
	return n, err
}

// Close cuts the body off from its reader: later reads fail.
func (b *lentBody) Close() error {
	b.mu.Lock()
	b.closed, b.r = true, nil
	b.mu.Unlock()
	return nil
}

// takeBody passes the rest of the invocation's request body on: the result reads it until
// the invocation ends. size is its length when known (the guest read none of it and its
// length was declared), -1 otherwise. The invocation's own reads return the end of the
// body afterwards.
func (inv *invocation) takeBody() (r io.Reader, size int64) {
	if inv.body == nil || (!inv.bodyRead && inv.bodySize == 0) {
		inv.body, inv.bodyRead = nil, true
		return noBody{}, 0
	}
	size = -1
	if !inv.bodyRead {
		size = inv.bodySize
	}
	lb := &lentBody{r: inv.body}
	inv.body, inv.bodyRead = nil, true
	if inv.lent != nil {
		inv.lent.Close()
	}
	inv.lent = lb
	return lb, size
}

// takeBodyWhole is takeBody read whole, for a callee the body cannot stream to (an object
// reached through the cluster's router): at most MaxFetchBody bytes (LIMIT beyond).
func (inv *invocation) takeBodyWhole() ([]byte, uint32, error) {
	r, _ := inv.takeBody()
	b, err := io.ReadAll(io.LimitReader(r, MaxFetchBody+1))
	if err != nil {
		return nil, workerabi.StatusInternal, fmt.Errorf("reading request body: %w", err)
	}
	if len(b) > MaxFetchBody {
		return nil, workerabi.StatusLimit, fmt.Errorf("request body exceeds %d bytes (a Durable Object reached through the cluster gets its request body whole)", MaxFetchBody)
	}
	return b, workerabi.StatusOK, nil
}
