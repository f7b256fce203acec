package worker

import (
	"context"
	"errors"
	"fmt"
	"github.com/verge-edge/verge/internal/workerabi"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/verge-edge/verge/containers"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/queue"
	"github.com/verge-edge/verge/worker/internal/wasm"
)

// ResponseWriter receives a worker's response; message.ServerExchange implements it. When it
// also has a Flush() error method (ServerExchange does), a worker's flush (sdk.Flusher) calls
// it after writing, so that the head and the bytes written so far reach the client at once.
type ResponseWriter interface {
	WriteHeader(resp *message.Response) error
	Write(p []byte) (int, error)
	Finish(trailer *message.Header) error
}

// Request is an incoming request for Serve.
type Request struct {
	// Message is the request; its Body streams the request body (nil means none).
	Message *message.Request
	// RemoteAddr is the client's IP address as text.
	RemoteAddr string
	// TLS tells whether the request arrived over TLS (for the URL's scheme when the request
	// does not carry one).
	TLS bool
}

// Result describes a served request.
type Result struct {
	// Status is the status sent, 0 if none.
	Status int
	// BytesSent counts response body bytes written.
	BytesSent int64
	// CPU is the guest's CPU time (see Limits.CPUTime), or for an invocation whose guest
	// executed for less than a millisecond, its execution wall time (an upper bound).
	CPU time.Duration
	// BodyRead is true when the guest read from the request body.
	BodyRead bool
}

// Serve runs the worker for req, writing the response to out. On error, Error.Responded says
// whether a response head was already written (then only aborting is left); otherwise the
// caller answers (Error.StatusCode) or passes the request on.
func (w *Worker) Serve(ctx context.Context, out ResponseWriter, req *Request) (Result, error) {
	v := w.acquireCurrent(w.cur.Load())
	if v == nil {
		// No version yet (the first one is compiling) or none any more.
		var err error
		if v, err = w.awaitVersion(ctx); v == nil {
			w.stats.fail(Unavailable)
			return Result{}, &Error{Kind: Unavailable, Worker: w.name, Cause: err}
		}
	}
	defer v.release()
	in, err := v.get(ctx)
	if err != nil {
		w.stats.fail(err.(*Error).Kind)
		return Result{}, err
	}
	inv := &in.inv
	inv.reset(ctx, workerabi.KindFetch)
	inv.sink = out
	inv.encodeHead(req)
	inv.body = req.Message.Body
	if inv.body != nil {
		inv.bodySize = req.Message.ContentLength
	}
	inv.isHead = req.Message.Method == "HEAD"
	inv.proto = req.Message.Proto
	inv.ws.up = newWSUpgrade(out, req.Message)
	rc, err := in.run(ctx, workerabi.KindFetch)
	inv.finishWS(err != nil || rc != workerabi.RCOK)
	res := Result{Status: inv.status, BytesSent: inv.sent, CPU: inv.cpuUsed, BodyRead: inv.bodyRead}
	// run counted its own failures; these two are the request's.
	if err == nil && rc != workerabi.RCOK {
		err = &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("verge_handle returned %d", rc)}
		w.stats.fail(Crashed)
	}
	if err == nil && !inv.ended {
		err = &Error{Kind: NoResponse, Worker: w.name}
		if inv.started {
			err = &Error{Kind: NoResponse, Worker: w.name, Cause: errors.New("response not ended")}
		}
		w.stats.fail(NoResponse)
	}
	if err != nil {
		var we *Error
		if !errors.As(err, &we) {
			we = &Error{Kind: Crashed, Worker: w.name, Cause: err}
		}
		we.Responded = inv.started
		ended := inv.ended
		inv.clear()
		v.discard(in)
		if ended && we.Kind != NoResponse {
			// The client has its whole response; the failure hit waitUntil work.
			v.log.Warn("worker failed after its response", "kind", we.Kind.String(), "err", we.Cause)
			return res, nil
		}
		v.log.Warn("worker invocation failed", "kind", we.Kind.String(), "err", we.Cause, "cpu", inv.cpuUsed)
		return res, we
	}
	inv.clear()
	v.put(in)
	return res, nil
}

// run calls verge_handle under the CPU and wall time limits. The goroutine stays on its OS
// thread meanwhile, so that the thread's CPU clock measures the guest (see threadCPU).
func (i *instance) run(ctx context.Context, kind uint32) (uint32, error) {
	return i.runInv(ctx, kind, &i.inv)
}

// runInv runs inv, the instance's own invocation or, nested inside a waiting one's host
// call, another (interleave.go): the waiting one's timers and state are set aside and
// restored when the nested one returns.
func (i *instance) runInv(ctx context.Context, kind uint32, inv *invocation) (uint32, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	outer := i.cur
	nested := i.in.Depth() > 0
	var saved runState
	if nested {
		saved = i.saveRun()
	}
	i.cur = inv
	l := &i.v.limits
	now := time.Now()
	inv.cpu.start(l.CPUTime, !i.instrumented, now)
	inv.wallEnd = now.Add(l.WallTime)
	i.wallDeadline.Store(int64(inv.wallEnd.Sub(clockBase)))
	i.gen++
	s := uint64(i.gen)<<32 | stateRunning
	if !i.instrumented {
		i.cpuClock.Store(currentThreadClock())
		i.cpuDeadline.Store(inv.cpu.deadline())
	}
	i.state.Store(s)
	i.wall.Reset(l.WallTime)
	if !i.instrumented {
		i.cpu.Reset(l.CPUTime)
	}
	rc, err := i.in.Handle(ctx, kind, inv)
	if !i.instrumented {
		i.cpu.Stop()
	}
	i.wall.Stop()
	inv.cpuUsed = inv.cpu.finish()
	stopped := uint32(stateIdle)
	after := s&^stateMask | stateIdle
	if nested {
		after = saved.state
	}
	if !i.state.CompareAndSwap(s, after) {
		stopped = uint32(i.state.Load() & stateMask)
		i.poisoned = true
	}
	i.cur = outer
	if nested {
		i.restoreRun(saved)
	}
	st := &i.v.w.stats
	st.ran(kind, inv.cpuUsed)
	if err == nil {
		return rc, nil
	}
	we := i.runError(err, stopped, inv)
	st.fail(we.Kind)
	return 0, we
}

// runError classifies the error that ended invocation inv; stopped is the exit code of the
// interrupt that stopped it, or stateIdle.
func (i *instance) runError(err error, stopped uint32, inv *invocation) *Error {
	l := &i.v.limits
	switch stopped {
	case exitCPU:
		return &Error{Kind: CPULimit, Worker: i.v.w.name, Cause: fmt.Errorf("stopped after %v of CPU time (limit %v)", inv.cpuUsed.Round(time.Millisecond), l.CPUTime)}
	case exitWall:
		return &Error{Kind: WallLimit, Worker: i.v.w.name, Cause: fmt.Errorf("stopped after %v (limit %v)", l.WallTime, l.WallTime)}
	}
	var lost *wasm.ExitError
	if errors.As(err, &lost) && lost.Code == exitLost {
		return &Error{Kind: Crashed, Worker: i.v.w.name, Cause: errInstanceLost}
	}
	if errors.Is(err, wasm.ErrMemoryDenied) {
		return &Error{Kind: MemoryLimit, Worker: i.v.w.name, Cause: fmt.Errorf("growing the instance's memory: %w", i.v.w.mem.exhausted())}
	}
	var ee *wasm.ExitError
	if errors.As(err, &ee) {
		return &Error{Kind: Crashed, Worker: i.v.w.name, Cause: fmt.Errorf("guest exited with code %d (a Go panic or fatal error, e.g. out of memory, exits with 2)", ee.Code)}
	}
	return &Error{Kind: Crashed, Worker: i.v.w.name, Cause: err}
}

// invocation is the host side of one call into an instance; it is reused by the instance.
type invocation struct {
	inst *instance
	ctx  context.Context
	kind uint32

	head     []byte // encoded request head for workerabi.OpReqHead
	headBuf  []byte
	body     io.Reader
	bodyRead bool
	// bodySize is body's declared length, -1 when unknown; lent is the body once passed
	// on (reqstream.go), closed when the invocation ends.
	bodySize int64
	lent     *lentBody
	isHead   bool
	proto    string

	sink    ResponseWriter
	resp    message.Response
	started bool
	ended   bool
	status  int
	sent    int64

	turn    *durable.Turn
	nsName  string
	class   string
	objID   string
	retries int

	subrequests int
	streams     streams // open body handles (stream.go)
	// nestNext is set by OpInterleave for the next host operation (interleave.go).
	nestNext bool
	// offStack is set while a wait of this invocation is served on a goroutine other
	// than the instance's (interleave.go).
	offStack bool
	ioCtx    context.Context
	ioCancel context.CancelFunc

	ws wsInvocation // WebSockets (websocket.go)

	// sched is the event of a KindScheduled invocation (scheduled.go).
	sched  *ScheduledEvent
	qbatch *queue.Batch     // the batch of a KindQueue invocation (queues.go)
	cexit  *containers.Exit // the event of a KindContainerExit invocation (containers.go)

	e       workerabi.Encoder
	cpu     cpuMeter
	wallEnd time.Time
	cpuUsed time.Duration
}

func (inv *invocation) reset(ctx context.Context, kind uint32) {
	inv.ctx, inv.kind = ctx, kind
	inv.head, inv.body, inv.bodyRead, inv.isHead, inv.proto = nil, nil, false, false, message.HTTP11
	inv.bodySize = -1
	inv.sink, inv.started, inv.ended, inv.status, inv.sent = nil, false, false, 0, 0
	inv.turn, inv.nsName, inv.class, inv.objID, inv.retries = nil, "", "", "", 0
	inv.subrequests, inv.nestNext = 0, false
	inv.sched, inv.cexit = nil, nil
}

// clear drops references held past the invocation.
func (inv *invocation) clear() {
	inv.streams.closeAll()
	if inv.lent != nil {
		inv.lent.Close()
		inv.lent = nil
	}
	inv.ws.event, inv.ws.sock = nil, nil
	if inv.ioCancel != nil {
		inv.ioCancel()
		inv.ioCtx, inv.ioCancel = nil, nil
	}
	inv.ctx, inv.body, inv.sink, inv.turn, inv.head = nil, nil, nil, nil, nil
	inv.resp.Reset()
	if cap(inv.e.B) > 64<<10 {
		inv.e.B = nil
	}
	if cap(inv.headBuf) > 64<<10 {
		inv.headBuf = nil
	}
}

// io returns the context for host I/O: the request's, bounded by the wall time limit.
func (inv *invocation) io() context.Context {
	if inv.ioCtx == nil {
		inv.ioCtx, inv.ioCancel = context.WithTimeout(inv.ctx, inv.inst.v.limits.WallTime)
	}
	return inv.ioCtx
}

// encodeHead encodes the request head for workerabi.OpReqHead into the reusable buffer.
func (inv *invocation) encodeHead(r *Request) {
	m := r.Message
	e := workerabi.Encoder{B: inv.headBuf[:0]}
	e.Str(m.Method)
	if strings.HasPrefix(m.Target, "http://") || strings.HasPrefix(m.Target, "https://") {
		e.Str(m.Target)
	} else {
		scheme := m.Scheme
		if scheme == "" {
			scheme = "http"
			if r.TLS {
				scheme = "https"
			}
		}
		host := m.Authority
		if host == "" {
			host = m.Header.Get("Host")
		}
		if host == "" {
			host = "localhost"
		}
		n := len(scheme) + 3 + len(host) + len(m.Target)
		e.U32(uint32(n))
		e.B = append(e.B, scheme...)
		e.B = append(e.B, "://"...)
		e.B = append(e.B, host...)
		e.B = append(e.B, m.Target...)
	}
	e.Str(r.RemoteAddr)
	fs := m.Header.Fields()
	e.U32(uint32(len(fs)))
	for _, f := range fs {
		e.Str(f.Name)
		e.Str(f.Value)
	}
	inv.headBuf = e.B
	inv.head = e.B
}

// Call serves one host operation. The time spent here does not count as guest CPU time.
func (inv *invocation) Call(op uint32, arg []byte) (uint32, []byte) {
	inv.inst.pause()
	var status uint32
	var res []byte
	if inv.nestNext {
		// The guest marked this operation (OpInterleave) as one other invocations may
		// run in, should it be a wait.
		inv.nestNext = false
		status, res = inv.interleave(op, arg)
	} else {
		status, res = inv.dispatch(op, arg)
	}
	inv.inst.resume()
	return status, res
}

// Yield enforces the CPU and wall time limits. The guest calls it periodically while it
// runs (wasm.Host), so a looping guest stops at its limits even when timers cannot fire in
// time: with one P, or with a garbage collection waiting for the guest's goroutine to stop.
// It reads the wall clock, and the thread's CPU clock only when the budget could be spent
// (see cpuMeter).
func (inv *invocation) Yield() {
	now := time.Now()
	if !now.Before(inv.wallEnd) {
		inv.inst.interrupt(exitWall)
		return
	}
	if !inv.cpu.check(now) {
		inv.inst.interrupt(exitCPU)
	}
}

func fail(status uint32, err error) (uint32, []byte) { return status, []byte(err.Error()) }

func (inv *invocation) dispatch(op uint32, arg []byte) (uint32, []byte) {
	inv.e.B = inv.e.B[:0]
	if inv.kind == workerabi.KindDOEvict && op != workerabi.OpDOContext && op != workerabi.OpLog {
		// Evictions run while the namespace is busy elsewhere: no storage, calls or I/O.
		return fail(workerabi.StatusUnavailable, fmt.Errorf("host operation %d is not available while an object is evicted", op))
	}
	switch op {
	case workerabi.OpReqHead:
		if inv.head == nil {
			return fail(workerabi.StatusUnavailable, errors.New("no request in this invocation"))
		}
		return workerabi.StatusOK, inv.head
	case workerabi.OpReqBody:
		return inv.readBody(arg)
	case workerabi.OpRespHead, workerabi.OpRespBody, workerabi.OpRespEnd:
		return inv.respond(op, arg)
	case workerabi.OpLog:
		d := workerabi.Decoder{B: arg}
		level := int32(d.U32())
		msg := d.Str()
		inv.inst.v.log.Log(context.Background(), slog.Level(level), msg)
		return workerabi.StatusOK, nil
	case workerabi.OpEnv:
		return workerabi.StatusOK, inv.inst.v.env
	case workerabi.OpKVGet, workerabi.OpKVPut, workerabi.OpKVDelete, workerabi.OpKVList:
		return inv.kvOp(op, arg)
	case workerabi.OpDOIDFromName, workerabi.OpDONewID, workerabi.OpDOIDFromStr, workerabi.OpDOFetch, workerabi.OpDOContext, workerabi.OpDOFetchStream, workerabi.OpDOFetchBody:
		return inv.doOp(op, arg)
	case workerabi.OpStGet, workerabi.OpStPut, workerabi.OpStDelete, workerabi.OpStList, workerabi.OpStDeleteAll, workerabi.OpStTxnBegin, workerabi.OpStTxnCommit,
		workerabi.OpStTxnRollback, workerabi.OpStSQL, workerabi.OpAlarmGet, workerabi.OpAlarmSet, workerabi.OpAlarmDelete:
		return inv.storageOp(op, arg)
	case workerabi.OpFetch:
		return inv.fetch(arg)
	case workerabi.OpRespFlush:
		return inv.respFlush(arg)
	case workerabi.OpFetchStream:
		return inv.fetchStream(arg)
	case workerabi.OpBodyRead, workerabi.OpBodyClose:
		return inv.streamOp(op, arg)
	case workerabi.OpObjHead, workerabi.OpObjGet, workerabi.OpObjPut, workerabi.OpObjWrite, workerabi.OpObjFinish, workerabi.OpObjDelete, workerabi.OpObjList,
		workerabi.OpObjUploadCreate, workerabi.OpObjUploadPart, workerabi.OpObjUploadComplete, workerabi.OpObjUploadAbort, workerabi.OpObjRespond:
		return inv.objOp(op, arg)
	case workerabi.OpCacheMatch, workerabi.OpCachePut, workerabi.OpCacheDelete:
		return inv.cacheOp(op, arg)
	case workerabi.OpInterleave:
		inv.nestNext = true
		return workerabi.StatusOK, nil
	case workerabi.OpSleep:
		return inv.sleepOp(arg)
	case workerabi.OpScheduledEvent:
		return inv.scheduledEvent()
	case workerabi.OpServiceFetch:
		return inv.serviceFetch(arg)
	case workerabi.OpWSAccept, workerabi.OpWSReceive, workerabi.OpWSSend, workerabi.OpWSClose, workerabi.OpWSAcceptObject,
		workerabi.OpWSList, workerabi.OpWSEvent, workerabi.OpWSAttachSet, workerabi.OpWSAttachGet:
		return inv.wsOp(op, arg)
	case workerabi.OpQueueSend, workerabi.OpQueueBatch, workerabi.OpQueueAck, workerabi.OpQueueRetry:
		return inv.queueOp(op, arg)
	case workerabi.OpContainerStart, workerabi.OpContainerFetch, workerabi.OpContainerState, workerabi.OpContainerStop, workerabi.OpContainerExit, workerabi.OpContainerFetchBody:
		return inv.containerOp(op, arg)
	case workerabi.OpAIRun:
		return inv.aiRun(arg)
	}
	return fail(workerabi.StatusUnavailable, fmt.Errorf("unknown host operation %d", op))
}

func (inv *invocation) readBody(arg []byte) (uint32, []byte) {
	d := workerabi.Decoder{B: arg}
	n := int(d.U32())
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if inv.body == nil || n == 0 {
		return workerabi.StatusOK, nil
	}
	inv.bodyRead = true
	n = min(n, 1<<20)
	if cap(inv.e.B) < n {
		inv.e.B = make([]byte, 0, n)
	}
	buf := inv.e.B[:n]
	for {
		k, err := inv.body.Read(buf)
		if k > 0 {
			return workerabi.StatusOK, buf[:k]
		}
		if err == io.EOF {
			inv.body = nil
			return workerabi.StatusOK, nil
		}
		if err != nil {
			return fail(workerabi.StatusInternal, fmt.Errorf("reading request body: %w", err))
		}
	}
}

// hopByHop lists response fields the host controls itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "TE", "Trailer", "Content-Length"}

func (inv *invocation) decodeHead(d *workerabi.Decoder) error {
	status := int(d.U32())
	n := d.Count(8)
	r := &inv.resp
	r.Reset()
	r.Status = status
	r.Proto = inv.proto
	for range n {
		name, value := d.Raw(), d.Raw()
		if d.Err != nil {
			break
		}
		skip := false
		for _, h := range hopByHop {
			if message.EqualFold(string(name), h) {
				skip = true
				break
			}
		}
		if !skip {
			r.Header.Add(string(name), string(value))
		}
	}
	if d.Err != nil {
		return d.Err
	}
	if (status < 200 && !(status == 101 && inv.switchAllowed())) || status > 999 {
		return fmt.Errorf("invalid response status %d", status)
	}
	return nil
}

func bodyAllowed(status int, head bool) bool {
	return !head && status != 204 && status != 304
}

func (inv *invocation) respond(op uint32, arg []byte) (uint32, []byte) {
	if inv.sink == nil {
		return fail(workerabi.StatusUnavailable, errors.New("no response in this invocation"))
	}
	if inv.ended {
		return fail(workerabi.StatusInvalid, errors.New("response already ended"))
	}
	d := workerabi.Decoder{B: arg}
	switch op {
	case workerabi.OpRespHead:
		if inv.started {
			return fail(workerabi.StatusInvalid, errors.New("response head already sent"))
		}
		if err := inv.decodeHead(&d); err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		if inv.resp.Status == 101 && inv.kind == workerabi.KindFetch {
			return inv.switchProtocols()
		}
		// A streamed response's length is unknown, for HEAD as for GET: HEAD answers with
		// the header fields GET would (RFC 9110 section 9.3.2), not Content-Length: 0.
		inv.resp.ContentLength = -1
		if !bodyAllowed(inv.resp.Status, false) {
			inv.resp.ContentLength = 0
		}
		return inv.writeHead()
	case workerabi.OpRespBody:
		if !inv.started {
			return fail(workerabi.StatusInvalid, errors.New("response body before its head"))
		}
		return inv.writeBody(arg)
	}
	// workerabi.OpRespEnd: u8 has_head, [head], bytes last_chunk
	hasHead := d.U8() == 1
	if hasHead {
		if inv.started {
			return fail(workerabi.StatusInvalid, errors.New("response head already sent"))
		}
		if err := inv.decodeHead(&d); err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		if inv.resp.Status == 101 && inv.kind == workerabi.KindFetch {
			return inv.switchProtocols()
		}
	} else if !inv.started {
		return fail(workerabi.StatusInvalid, errors.New("response ended without a head"))
	}
	chunk := d.Raw()
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if hasHead {
		inv.resp.ContentLength = int64(len(chunk))
		if !bodyAllowed(inv.resp.Status, false) {
			inv.resp.ContentLength = 0
		}
		if st, res := inv.writeHead(); st != workerabi.StatusOK {
			return st, res
		}
	}
	if st, res := inv.writeBody(chunk); st != workerabi.StatusOK {
		return st, res
	}
	inv.ended = true
	if err := inv.sink.Finish(nil); err != nil {
		return fail(workerabi.StatusInternal, fmt.Errorf("finishing response: %w", err))
	}
	return workerabi.StatusOK, nil
}

func (inv *invocation) writeHead() (uint32, []byte) {
	inv.started = true
	inv.status = inv.resp.Status
	if err := inv.sink.WriteHeader(&inv.resp); err != nil {
		return fail(workerabi.StatusInternal, fmt.Errorf("writing response head: %w", err))
	}
	return workerabi.StatusOK, nil
}

func (inv *invocation) writeBody(p []byte) (uint32, []byte) {
	if len(p) == 0 || !bodyAllowed(inv.status, inv.isHead) {
		return workerabi.StatusOK, nil
	}
	n, err := inv.sink.Write(p)
	inv.sent += int64(n)
	if err != nil {
		return fail(workerabi.StatusInternal, fmt.Errorf("writing response body: %w", err))
	}
	return workerabi.StatusOK, nil
}
