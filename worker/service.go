package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"

	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/message"
)

// MaxServiceDepth bounds a chain of service binding calls: a request that runs a worker
// which calls a service which calls another (or itself) gets at most MaxServiceDepth
// workers on its chain, the first included; the call that would go deeper fails with
// StatusLimit. Each worker on a chain holds one of its instances, so a worker bound to
// itself needs as many instances (Limits.MaxInstances, 16 by default) as it nests.
const MaxServiceDepth = 16

// serviceDepthKey carries the depth of the service call an invocation runs in (0 or absent
// for a request from a client) in its context.
type serviceDepthKey struct{}

func serviceDepth(ctx context.Context) int {
	d, _ := ctx.Value(serviceDepthKey{}).(int)
	return d
}

// serviceFetch serves workerabi.OpServiceFetch: it runs the request in the bound worker, in
// this process, on a goroutine of its own under the callee's limits (its CPU time, wall
// time, memory and subrequests are its own), and returns the response head once the callee
// released it (it flushed, wrote 64 KiB or finished) with a body handle for the rest, as
// workerabi.OpFetchStream does. The call counts as one subrequest of the caller; a callee
// that fails before its response head fails the call (its limits do not touch the
// caller's budget).
func (inv *invocation) serviceFetch(arg []byte) (uint32, []byte) {
	v := inv.inst.v
	d := workerabi.Decoder{B: arg}
	binding := string(d.Raw())
	target, ok := v.services[binding]
	if !ok {
		return fail(workerabi.StatusUnavailable, fmt.Errorf("no service bound as %q", binding))
	}
	depth := serviceDepth(inv.ctx) + 1
	if depth >= MaxServiceDepth {
		return fail(workerabi.StatusLimit, fmt.Errorf("service %s: %d workers on this chain of service calls (limit %d): do the bindings loop?", binding, depth+1, MaxServiceDepth))
	}
	if err := inv.subrequestsLeft(); err != nil {
		return fail(workerabi.StatusLimit, err)
	}
	req, err := decodeServiceRequest(&d)
	if err != nil {
		return fail(workerabi.StatusInvalid, fmt.Errorf("service %s: %w", binding, err))
	}
	callee := v.w.reg.Get(target)
	if callee == nil {
		return fail(workerabi.StatusUnavailable, fmt.Errorf("service %s: worker %s is not deployed", binding, target))
	}
	if inv.streams.full() {
		return fail(workerabi.StatusLimit, fmt.Errorf("too many open response bodies (limit %d): read them to the end or close them", MaxOpenBodies))
	}
	inv.subrequests++
	// The callee's invocation is bounded by its own limits, not by the caller's context: a
	// caller that stops reading early does not cut it short. A wait of the callee for its
	// caller ends when the caller's invocation does (it closes the body).
	ctx := context.WithValue(inv.io(), serviceDepthKey{}, depth)
	s := newObjStream(ctx, context.WithoutCancel(ctx))
	s.caller = inv.inst
	go callService(s, callee, req)
	if inv.unpin() {
		defer runtime.LockOSThread()
	}
	inv.callStart() // the callee may call an object living on this instance (objects.go, moveAfter)
	err = s.waitHead(ctx)
	inv.callEnd()
	if err != nil {
		s.Close()
		return fail(workerabi.StatusInternal, fmt.Errorf("service %s: %w", binding, err))
	}
	e := &inv.e
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done && s.err != nil {
		return fail(serviceErrorStatus(s.err), fmt.Errorf("service %s: %w", binding, s.err))
	}
	return workerabi.StatusOK, s.encodeHead(inv, e)
}

// callService runs req in the callee for serviceFetch; it returns when the callee's
// invocation ends.
func callService(s *objStream, callee *Worker, req *Request) {
	// Waiting for an instance of the callee (all busy, e.g. a worker bound to itself) is
	// bounded by the callee's wall time limit, as its invocation is.
	wall := DefaultWallTime
	if v := callee.cur.Load(); v != nil {
		wall = v.limits.WallTime
	}
	ctx, cancel := context.WithTimeout(s.wctx, wall)
	defer cancel()
	_, err := callee.Serve(ctx, s, req)
	s.end(err)
}

// serviceErrorStatus is the status of a failed service call: StatusLimit when the callee
// ran out of one of its limits or instances, StatusUnavailable when it is not deployed,
// StatusInternal otherwise.
func serviceErrorStatus(err error) uint32 {
	var we *Error
	if errors.As(err, &we) {
		switch we.Kind {
		case CPULimit, WallLimit, MemoryLimit, Overloaded:
			return workerabi.StatusLimit
		case Unavailable:
			return workerabi.StatusUnavailable
		}
	}
	return workerabi.StatusInternal
}

// decodeServiceRequest decodes a request head (method, absolute URL, "", header) and body
// for the callee. The URL names no host to connect to: it is what the callee's handler
// sees. Framing fields are the host's; the body is whole.
func decodeServiceRequest(d *workerabi.Decoder) (*Request, error) {
	method, rawURL := d.Str(), d.Str()
	d.Raw()
	m := &message.Request{Method: method, Proto: message.HTTP11, Target: rawURL}
	for n := d.Count(8); n > 0; n-- {
		name, value := d.Str(), d.Str()
		if message.EqualFold(name, "Content-Length") || message.EqualFold(name, "Transfer-Encoding") || message.EqualFold(name, "Connection") {
			continue
		}
		m.Header.Add(name, value)
	}
	body := d.Bytes()
	if d.Err != nil {
		return nil, d.Err
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid URL %q (want http or https with a host)", rawURL)
	}
	if m.Method == "" {
		m.Method = "GET"
	}
	m.Scheme, m.Authority = u.Scheme, u.Host
	m.ContentLength = int64(len(body))
	if len(body) > 0 {
		m.Body = bytes.NewReader(body)
	}
	return &Request{Message: m, TLS: u.Scheme == "https"}, nil
}
