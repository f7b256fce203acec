package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/message"
)

// Bounds of a Durable Object response streamed to its caller on this node.
const (
	// objReleaseAt is how many held bytes make the object release them (after its pending
	// writes are durable) without waiting for a flush.
	objReleaseAt = 64 << 10
	// objMaxUnread is how many released bytes may wait for the caller: beyond it the
	// object's next release blocks until the caller reads (backpressure).
	objMaxUnread = 256 << 10
)

// errStreamClosed is what the caller's read gets once it closed the body.
var errStreamClosed = errors.New("response body closed")

// objStream carries a Durable Object's response to a caller on this node while the object
// writes it. It is the object invocation's ResponseWriter on one side and a body handle
// (bodySource) of the caller on the other. Bytes the object writes are held until they are
// released: on the object's flush, every objReleaseAt bytes, and at the end of its turn. A
// release first makes the object's pending storage writes durable (durable.Turn.Sync), so
// the output gate holds for each part of the response; inside an explicit transaction the
// bytes stay held (up to MaxFetchBody) until the turn ends. Once the caller closed the body
// (or its invocation ended), what the object writes is dropped: the object finishes its turn
// as it would for a client that went away, and its writes are kept.
type objStream struct {
	ctx  context.Context // the caller's I/O context, for its waits
	wctx context.Context // the object's: the caller's without its cancellation
	turn *durable.Turn   // the object's turn, set by runObjectTo
	// caller and callee are the instances running the calling invocation and the object's
	// (callee set by runObjectTo). When they are one instance, the object runs nested in
	// its caller's wait (interleave.go), and the caller cannot read before the object's
	// invocation returns: its response is then held whole (up to MaxFetchBody), not
	// released against backpressure.
	caller, callee *instance

	mu       sync.Mutex
	status   int
	header   message.Header
	held     []byte // written, not released
	ready    []byte // released; the caller has read ready[:off]
	off      int
	released bool // the head and ready bytes may reach the caller
	done     bool // the object's turn ended; err is its failure
	closed   bool // the caller closed the body
	err      error
	wakeR    chan struct{}
	wakeW    chan struct{}
}

func newObjStream(ctx, wctx context.Context) *objStream {
	return &objStream{ctx: ctx, wctx: wctx, wakeR: make(chan struct{}, 1), wakeW: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *objStream) setTurn(t *durable.Turn) { s.turn = t }

func (s *objStream) setCallee(in *instance) {
	s.mu.Lock()
	s.callee = in
	s.mu.Unlock()
}

// WriteHeader records the head; it leaves with the first release.
func (s *objStream) WriteHeader(resp *message.Response) error {
	s.mu.Lock()
	s.status, s.header = resp.Status, resp.Header.Clone()
	s.mu.Unlock()
	return nil
}

// Write holds p until the next release.
func (s *objStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return len(p), nil
	}
	s.held = append(s.held, p...)
	n := len(s.held)
	s.mu.Unlock()
	if n >= objReleaseAt {
		if err := s.release(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush releases what the object wrote so far (workerabi.OpRespFlush).
func (s *objStream) Flush() error { return s.release() }

// Finish does nothing: the rest is released when the turn's writes are committed.
func (s *objStream) Finish(*message.Header) error { return nil }

// release makes the object's writes durable and hands the held bytes to the caller,
// waiting while objMaxUnread bytes are unread.
func (s *objStream) release() error {
	if s.turn != nil {
		if err := s.turn.Sync(s.wctx); err != nil {
			if !errors.Is(err, durable.ErrSyncInTransaction) {
				return err
			}
			s.mu.Lock()
			n := len(s.held)
			s.mu.Unlock()
			if n > MaxFetchBody {
				return fmt.Errorf("response: more than %d bytes held inside a storage transaction", MaxFetchBody)
			}
			return nil
		}
	}
	s.mu.Lock()
	if s.callee != nil && s.callee == s.caller {
		if len(s.ready)-s.off+len(s.held) > MaxFetchBody {
			s.mu.Unlock()
			return fmt.Errorf("response: more than %d bytes for a caller on the same instance, which reads only once this request returns", MaxFetchBody)
		}
	} else {
		for len(s.ready)-s.off >= objMaxUnread && !s.closed {
			s.mu.Unlock()
			var stop <-chan struct{}
			if s.callee != nil {
				stop = s.callee.stop
			}
			select {
			case <-s.wakeW: // the caller reads or closes (at the latest when its invocation ends)
			case <-stop:
				// The object's invocation was stopped (its wall time limit).
				return errors.New("response: the caller did not read before the object's limits ended its request")
			}
			s.mu.Lock()
		}
	}
	if s.closed {
		s.held = s.held[:0]
		s.mu.Unlock()
		return nil
	}
	s.take()
	s.released = true
	s.mu.Unlock()
	signal(s.wakeR)
	return nil
}

// compact drops the bytes the caller has read; s.mu is held.
func (s *objStream) compact() {
	if s.off > 0 {
		s.ready = s.ready[:copy(s.ready, s.ready[s.off:])]
		s.off = 0
	}
}

// take moves the held bytes to the ready ones (swapping the buffers when nothing is
// unread, which saves a copy); s.mu is held.
func (s *objStream) take() {
	s.compact()
	if len(s.ready) == 0 {
		s.ready, s.held = s.held, s.ready[:0]
		return
	}
	s.ready = append(s.ready, s.held...)
	s.held = s.held[:0]
}

// end records the end of the object's turn: after its writes were committed (err nil) the
// rest of the response is released; a failure reaches the caller instead.
func (s *objStream) end(err error) {
	s.mu.Lock()
	s.done = true
	if err == nil {
		s.take()
	} else {
		s.err = err
	}
	s.held = nil
	s.mu.Unlock()
	signal(s.wakeR)
}

// waitHead waits until the head is released or the object's turn ended.
func (s *objStream) waitHead(ctx context.Context) error {
	s.mu.Lock()
	for !s.released && !s.done {
		s.mu.Unlock()
		select {
		case <-s.wakeR:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	signal(s.wakeR) // the reader's next wait must not miss what woke this one
	return nil
}

// Read returns released bytes, waiting for them at most BodyIdleTimeout.
func (s *objStream) Read(p []byte) (int, error) {
	var idle *time.Timer
	s.mu.Lock()
	for len(s.ready) == s.off && !s.done && !s.closed {
		s.mu.Unlock()
		if idle == nil {
			idle = time.NewTimer(BodyIdleTimeout)
			defer idle.Stop()
		}
		select {
		case <-s.wakeR:
		case <-s.ctx.Done():
			return 0, s.ctx.Err()
		case <-idle.C:
			return 0, errBodyIdle
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return 0, errStreamClosed
	case len(s.ready) > s.off:
		n := copy(p, s.ready[s.off:])
		s.off += n
		s.compact()
		signal(s.wakeW)
		return n, nil
	case s.err != nil:
		return 0, s.err
	}
	return 0, io.EOF
}

// Close tells the object that nobody reads any more: what it writes next is dropped.
func (s *objStream) Close() error {
	s.mu.Lock()
	s.closed = true
	s.held, s.ready, s.off = nil, nil, 0
	s.mu.Unlock()
	signal(s.wakeW)
	return nil
}

// objectStream serves workerabi.OpDOFetchStream: the object's response head once it is
// released, and a body handle to read the rest as the object writes it. The object runs on
// its own goroutine meanwhile (streamObject). With a cluster (Services.Router) the response
// arrives whole, as for workerabi.OpDOFetch. With lend (workerabi.OpDOFetchBody) the
// request body is the rest of the invocation's own, which the object reads as it streams in
// (read whole first with a cluster).
func (inv *invocation) objectStream(binding string, b *doBinding, id durable.ID, head, body []byte, lend bool) (uint32, []byte) {
	w := inv.inst.v.w
	e := &inv.e
	if w.reg.svc.Router != nil {
		if lend {
			var st uint32
			var err error
			if body, st, err = inv.takeBodyWhole(); err != nil {
				return fail(st, err)
			}
		}
		e.U32(0)
		out, err := w.callObject(inv.withUpgrade(inv.io()), binding, b, id, head, body, e.B)
		if err != nil {
			return fail(objectErrorStatus(err), err)
		}
		e.B = out
		return workerabi.StatusOK, e.B
	}
	if inv.streams.full() {
		return fail(workerabi.StatusLimit, fmt.Errorf("too many open response bodies (limit %d): read them to the end or close them", MaxOpenBodies))
	}
	// The object's turn is bounded by its own limits, not by the caller's context: a caller
	// that stops reading early does not cut the object's turn short. A wait of the object
	// for its caller ends when the caller's invocation does (it closes the body).
	ctx := inv.withUpgrade(inv.io()) // a WebSocket handshake the object may accept
	s := newObjStream(ctx, context.WithoutCancel(ctx))
	s.caller = inv.inst
	var r io.Reader = bytes.NewReader(body)
	size := int64(len(body))
	if lend {
		r, size = inv.takeBody()
	}
	go w.streamObject(s, binding, b, id, head, r, size)
	if inv.unpin() {
		defer runtime.LockOSThread()
	}
	inv.callStart() // the object may live on this instance (objects.go, moveAfter)
	err := s.waitHead(ctx)
	inv.callEnd()
	if err != nil {
		s.Close()
		return fail(workerabi.StatusInternal, fmt.Errorf("durable object %s: %w", id, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done && s.err != nil {
		return fail(objectErrorStatus(s.err), fmt.Errorf("durable object %s: %w", id, s.err))
	}
	return workerabi.StatusOK, s.encodeHead(inv, e)
}

// streamObject runs a request in a Durable Object on this node for objectStream; it returns
// when the object's turn ends, which its invocation's limits bound (and a wait for the
// caller, the caller's invocation).
func (w *Worker) streamObject(s *objStream, binding string, b *doBinding, id durable.ID, head []byte, body io.Reader, size int64) {
	err := w.runObjectTo(s.wctx, binding, b, id, head, body, size, s)
	if err != nil {
		w.logObjectFailure(binding, b.class, id, err)
	}
	s.end(err)
}

// unpin lets the goroutine of this invocation leave its OS thread while it waits in a host
// call for a Durable Object on this node, and reports whether it did (the caller then locks
// it again with runtime.LockOSThread before the guest resumes). The object's goroutine can
// then run on the thread the caller leaves, instead of two locked threads handing the CPU to
// each other twice per call (with GOMAXPROCS=1 that handoff cost more than the object's
// whole request). The guest's CPU meter reads the clock of whatever thread runs it again
// (cpuMeter.resume); an uninstrumented guest, whose timer watches one thread's clock, stays,
// and so does a wait served off the instance's goroutine (interleave.go), which holds no
// thread to give.
func (inv *invocation) unpin() bool {
	if !inv.inst.instrumented || inv.offStack {
		return false
	}
	runtime.UnlockOSThread()
	return true
}

// encodeHead encodes a streamed call's result once its head arrived (FETCH_STREAM's shape:
// the body handle, 0 when the body is complete, the status, the header and the body bytes
// received so far) and hands those bytes to the guest. The caller holds s.mu.
func (s *objStream) encodeHead(inv *invocation, e *workerabi.Encoder) []byte {
	h := uint32(0)
	if !s.done {
		h = inv.streams.add(s)
	}
	e.U32(h)
	e.U32(uint32(s.status))
	fs := s.header.Fields()
	e.U32(uint32(len(fs)))
	for _, f := range fs {
		e.Str(f.Name)
		e.Str(f.Value)
	}
	e.Bytes(s.ready[s.off:])
	s.ready, s.off = s.ready[:0], 0
	signal(s.wakeW)
	return e.B
}
