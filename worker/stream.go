package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/message"
)

// Limits of streamed bodies (docs/workers.md, "Streaming").
const (
	// MaxOpenBodies caps the streamed bodies (subrequest and Durable Object responses) an
	// invocation holds open at once; a fetch beyond it fails with a limit error until one
	// is read to its end or closed. Every open body is closed when the invocation ends.
	MaxOpenBodies = 16
	// BodyIdleTimeout bounds each wait for the next bytes of a streamed body: a read that
	// gets nothing for this long fails (the invocation's wall time limit still bounds the
	// whole).
	BodyIdleTimeout = 15 * time.Second
	// InlineBody is the largest body a streamed fetch returns whole in its result, saving
	// the reads: a body of known length up to it is read at once.
	InlineBody = 64 << 10
	// maxBodyRead bounds the bytes of one body read.
	maxBodyRead = 1 << 20
)

// errBodyIdle is the error of a streamed body that sent nothing for BodyIdleTimeout.
var errBodyIdle = fmt.Errorf("no body bytes for %v", BodyIdleTimeout)

// flusher is the optional capability of a ResponseWriter to push buffered bytes to the
// client now; message.ServerExchange has it.
type flusher interface{ Flush() error }

// bodySource is a streamed body behind a handle.
type bodySource = io.ReadCloser

// noBody is the body of a response that has none.
type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
func (noBody) Close() error             { return nil }

// streams holds an invocation's open body handles: handle h is open[h-1].
type streams struct {
	open []bodySource
	n    int
}

// add stores src and returns its handle, or 0 when MaxOpenBodies are open.
func (s *streams) add(src bodySource) uint32 {
	if s.n >= MaxOpenBodies {
		return 0
	}
	s.n++
	for i, o := range s.open {
		if o == nil {
			s.open[i] = src
			return uint32(i + 1)
		}
	}
	s.open = append(s.open, src)
	return uint32(len(s.open))
}

func (s *streams) full() bool { return s.n >= MaxOpenBodies }

func (s *streams) get(h uint32) bodySource {
	if h == 0 || int(h) > len(s.open) {
		return nil
	}
	return s.open[h-1]
}

// release closes handle h's body and frees the handle.
func (s *streams) release(h uint32) {
	if src := s.get(h); src != nil {
		src.Close()
		s.open[h-1] = nil
		s.n--
	}
}

// closeAll closes every open body (the invocation ended).
func (s *streams) closeAll() {
	if s.n == 0 {
		return
	}
	for i := range s.open {
		s.release(uint32(i + 1))
	}
	s.open = s.open[:0]
}

// respFlush serves workerabi.OpRespFlush: u8 has_head, [head], bytes chunk. The head (when
// given) and the chunk are written and pushed to the client at once.
func (inv *invocation) respFlush(arg []byte) (uint32, []byte) {
	if inv.sink == nil {
		return fail(workerabi.StatusUnavailable, errors.New("no response in this invocation"))
	}
	if inv.ended {
		return fail(workerabi.StatusInvalid, errors.New("response already ended"))
	}
	d := workerabi.Decoder{B: arg}
	if d.U8() == 1 {
		if inv.started {
			return fail(workerabi.StatusInvalid, errors.New("response head already sent"))
		}
		if err := inv.decodeHead(&d); err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		inv.resp.ContentLength = -1
		if !bodyAllowed(inv.resp.Status, false) {
			inv.resp.ContentLength = 0
		}
		if st, res := inv.writeHead(); st != workerabi.StatusOK {
			return st, res
		}
	} else if !inv.started {
		return fail(workerabi.StatusInvalid, errors.New("response flushed without a head"))
	}
	chunk := d.Raw()
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if st, res := inv.writeBody(chunk); st != workerabi.StatusOK {
		return st, res
	}
	if f, ok := inv.sink.(flusher); ok {
		if err := f.Flush(); err != nil {
			return fail(workerabi.StatusInternal, fmt.Errorf("flushing response: %w", err))
		}
	}
	return workerabi.StatusOK, nil
}

// streamOp serves the body-handle operations.
func (inv *invocation) streamOp(op uint32, arg []byte) (uint32, []byte) {
	d := workerabi.Decoder{B: arg}
	h := d.U32()
	if op == workerabi.OpBodyClose {
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		inv.streams.release(h)
		return workerabi.StatusOK, nil
	}
	// workerabi.OpBodyRead: u32 handle, u32 max
	n := int(d.U32())
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	src := inv.streams.get(h)
	if src == nil {
		return fail(workerabi.StatusInvalid, fmt.Errorf("no open body with handle %d", h))
	}
	if n <= 0 {
		return workerabi.StatusOK, nil
	}
	n = min(n, maxBodyRead)
	if cap(inv.e.B) < n {
		inv.e.B = make([]byte, 0, max(n, 32<<10))
	}
	buf := inv.e.B[:n]
	if _, ok := src.(*objStream); ok {
		// The object may still be running, and may call an object of this instance.
		inv.callStart()
		defer inv.callEnd()
		if inv.unpin() {
			defer runtime.LockOSThread()
		}
	}
	for {
		k, err := src.Read(buf)
		if k > 0 {
			return workerabi.StatusOK, buf[:k]
		}
		if err == io.EOF {
			inv.streams.release(h)
			return workerabi.StatusOK, nil
		}
		if err != nil {
			inv.streams.release(h)
			return fail(workerabi.StatusInternal, fmt.Errorf("reading body: %w", err))
		}
	}
}

// fetchStream serves workerabi.OpFetchStream: the subrequest's head and a body handle (0
// with the whole body when it is small and of known length).
func (inv *invocation) fetchStream(arg []byte) (uint32, []byte) {
	return inv.fetchStreamTo(arg, nil, nil, false)
}

// fetchStreamTo is fetchStream to the address to when not nil (roundTripTo); done, when
// not nil, is called once the response's body is read or closed, or the request failed.
// With lend the request's body is the rest of the invocation's own (roundTripTo).
func (inv *invocation) fetchStreamTo(arg []byte, to *netip.AddrPort, done func(), lend bool) (uint32, []byte) {
	if inv.streams.full() {
		if done != nil {
			done()
		}
		return fail(workerabi.StatusLimit, fmt.Errorf("too many open response bodies (limit %d): read them to the end or close them", MaxOpenBodies))
	}
	ctx, cancel := context.WithCancel(inv.io())
	if done != nil {
		cancel0 := cancel
		cancel = func() { cancel0(); done() }
	}
	resp, st, res := inv.roundTripTo(ctx, arg, to, lend)
	if resp == nil {
		cancel()
		return st, res
	}
	e := &inv.e
	e.B = e.B[:0]
	if resp.ContentLength >= 0 && resp.ContentLength <= InlineBody {
		var data []byte
		var err error
		data, err = io.ReadAll(io.LimitReader(resp.Body, InlineBody+1))
		resp.Body.Close()
		cancel()
		if err != nil {
			return fail(workerabi.StatusInternal, fmt.Errorf("fetch: reading body: %w", err))
		}
		e.U32(0)
		encodeRespHead(e, resp)
		e.Bytes(data)
		return workerabi.StatusOK, e.B
	}
	b := &fetchBody{body: resp.Body, cancel: cancel}
	b.idle = time.AfterFunc(BodyIdleTimeout, b.expire)
	b.idle.Stop()
	e.U32(inv.streams.add(b))
	encodeRespHead(e, resp)
	e.Bytes(nil)
	return workerabi.StatusOK, e.B
}

// encodeRespHead appends a response's status and header fields.
func encodeRespHead(e *workerabi.Encoder, resp *message.Response) {
	e.U32(uint32(resp.Status))
	fs := resp.Header.Fields()
	e.U32(uint32(len(fs)))
	for _, f := range fs {
		e.Str(f.Name)
		e.Str(f.Value)
	}
}

// fetchBody is a subrequest's streamed response body. Each read waits at most
// BodyIdleTimeout: the timer cancels the round trip's context, which interrupts the read.
type fetchBody struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	idle   *time.Timer
}

// expire is the idle timer's function: the pending read fails.
func (b *fetchBody) expire() { b.cancel() }

func (b *fetchBody) Read(p []byte) (int, error) {
	b.idle.Reset(BodyIdleTimeout)
	n, err := b.body.Read(p)
	if !b.idle.Stop() && err != nil && n == 0 {
		return 0, errBodyIdle
	}
	return n, err
}

func (b *fetchBody) Close() error {
	b.idle.Stop()
	err := b.body.Close()
	b.cancel()
	return err
}
