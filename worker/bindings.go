package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"

	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/durable/clustered"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

func storageStatus(err error) uint32 {
	if errors.Is(err, kv.ErrInvalid) || errors.Is(err, durable.ErrInvalid) {
		return workerabi.StatusInvalid
	}
	return workerabi.StatusInternal
}

func (inv *invocation) kvOp(op uint32, arg []byte) (uint32, []byte) {
	d := workerabi.Decoder{B: arg}
	binding := string(d.Raw())
	ns := inv.inst.v.kv[binding]
	if ns == nil {
		return fail(workerabi.StatusUnavailable, fmt.Errorf("no KV namespace bound as %q", binding))
	}
	ctx := inv.io()
	e := &inv.e
	switch op {
	case workerabi.OpKVGet:
		key := d.Str()
		withMeta := d.U8() == 1
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		ent, err := ns.Get(ctx, key)
		if err != nil {
			return fail(storageStatus(err), err)
		}
		if ent == nil {
			e.U8(0)
			return workerabi.StatusOK, e.B
		}
		e.U8(1)
		e.Bytes(ent.Value)
		if withMeta && ent.Metadata != nil {
			e.U8(1)
			e.Bytes(ent.Metadata)
		} else {
			e.U8(0)
			e.Bytes(nil)
		}
		var exp int64
		if !ent.Expiration.IsZero() {
			exp = ent.Expiration.Unix()
		}
		e.I64(exp)
		return workerabi.StatusOK, e.B
	case workerabi.OpKVPut:
		key := d.Str()
		value := d.Raw()
		var o kv.PutOptions
		hasMeta := d.U8() == 1
		meta := d.Raw()
		if hasMeta {
			o.Metadata = meta
		}
		if exp := d.I64(); exp > 0 {
			o.Expiration = time.Unix(exp, 0)
		}
		if ttl := d.I64(); ttl > 0 {
			o.ExpirationTTL = time.Duration(ttl) * time.Second
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := ns.Put(ctx, key, value, o); err != nil {
			return fail(storageStatus(err), err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpKVDelete:
		key := d.Str()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := ns.Delete(ctx, key); err != nil {
			return fail(storageStatus(err), err)
		}
		return workerabi.StatusOK, nil
	}
	o := kv.ListOptions{Prefix: d.Str(), Limit: int(d.U32()), Cursor: d.Str()}
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	res, err := ns.List(ctx, o)
	if err != nil {
		return fail(storageStatus(err), err)
	}
	e.Bool(res.ListComplete)
	e.Str(res.Cursor)
	e.U32(uint32(len(res.Keys)))
	for _, k := range res.Keys {
		e.Str(k.Name)
		var exp int64
		if !k.Expiration.IsZero() {
			exp = k.Expiration.Unix()
		}
		e.I64(exp)
		e.Bool(k.Metadata != nil)
		e.Bytes(k.Metadata)
	}
	return workerabi.StatusOK, e.B
}

func (inv *invocation) doOp(op uint32, arg []byte) (uint32, []byte) {
	e := &inv.e
	if op == workerabi.OpDOContext {
		if inv.turn == nil && inv.kind != workerabi.KindDOEvict {
			return fail(workerabi.StatusUnavailable, errors.New("not a Durable Object invocation"))
		}
		e.Str(inv.nsName)
		e.Str(inv.class)
		e.Str(inv.objID)
		e.U32(uint32(inv.retries))
		return workerabi.StatusOK, e.B
	}
	d := workerabi.Decoder{B: arg}
	binding := string(d.Raw())
	b := inv.inst.v.durable[binding]
	if b == nil {
		return fail(workerabi.StatusUnavailable, fmt.Errorf("no Durable Object namespace bound as %q", binding))
	}
	switch op {
	case workerabi.OpDOIDFromName:
		name := d.Raw()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		e.Str(b.ns.IDFromName(string(name)).String())
		return workerabi.StatusOK, e.B
	case workerabi.OpDONewID:
		e.Str(b.ns.NewUniqueID().String())
		return workerabi.StatusOK, e.B
	case workerabi.OpDOIDFromStr:
		id, err := b.ns.ParseID(string(d.Raw()))
		if err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		e.Str(id.String())
		return workerabi.StatusOK, e.B
	}
	// workerabi.OpDOFetch: str ns, str id, request head, bytes body
	id, err := b.ns.ParseID(string(d.Raw()))
	if err != nil {
		return fail(workerabi.StatusInvalid, err)
	}
	headStart := d.B
	d.Raw()
	d.Raw()
	d.Raw()
	for n := d.Count(8); n > 0; n-- {
		d.Raw()
		d.Raw()
	}
	head := bytes.Clone(headStart[:len(headStart)-len(d.B)])
	if op == workerabi.OpDOFetchBody {
		// No body in the argument: the rest of this invocation's request body.
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		return inv.objectStream(binding, b, id, head, nil, true)
	}
	body := bytes.Clone(d.Raw())
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if op == workerabi.OpDOFetchStream {
		return inv.objectStream(binding, b, id, head, body, false)
	}
	inv.callStart()
	out, err := inv.inst.v.w.callObject(inv.withUpgrade(inv.io()), binding, b, id, head, body, e.B)
	inv.callEnd()
	if err != nil {
		return fail(objectErrorStatus(err), err)
	}
	e.B = out
	return workerabi.StatusOK, e.B
}

func (inv *invocation) storageOp(op uint32, arg []byte) (uint32, []byte) {
	t := inv.turn
	if t == nil {
		return fail(workerabi.StatusUnavailable, errors.New("storage is only available inside a Durable Object"))
	}
	d := workerabi.Decoder{B: arg}
	e := &inv.e
	ctx := inv.io()
	switch op {
	case workerabi.OpStGet, workerabi.OpStDelete:
		n := d.Count(4)
		if n > durable.MaxBatchKeys {
			return fail(workerabi.StatusInvalid, fmt.Errorf("%d keys exceed %d per call", n, durable.MaxBatchKeys))
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = d.Str()
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if op == workerabi.OpStDelete {
			c, err := t.Delete(keys)
			if err != nil {
				return fail(storageStatus(err), err)
			}
			e.U32(uint32(c))
			return workerabi.StatusOK, e.B
		}
		vals, err := t.Get(keys)
		if err != nil {
			return fail(storageStatus(err), err)
		}
		e.U32(uint32(len(vals)))
		for _, v := range vals {
			e.Bool(v != nil)
			e.Bytes(v)
		}
		return workerabi.StatusOK, e.B
	case workerabi.OpStPut:
		n := d.Count(8)
		if n > durable.MaxBatchKeys {
			return fail(workerabi.StatusInvalid, fmt.Errorf("%d entries exceed %d per call", n, durable.MaxBatchKeys))
		}
		entries := make([]durable.Entry, n)
		for i := range entries {
			entries[i] = durable.Entry{Key: d.Str(), Value: d.Bytes()}
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := t.Put(entries); err != nil {
			return fail(storageStatus(err), err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpStList:
		o := durable.ListOptions{Prefix: d.Str(), Start: d.Str(), End: d.Str(), Reverse: d.U8() == 1, Limit: int(d.U32())}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		es, err := t.List(o)
		if err != nil {
			return fail(storageStatus(err), err)
		}
		e.U32(uint32(len(es)))
		for _, en := range es {
			e.Str(en.Key)
			e.Bytes(en.Value)
		}
		return workerabi.StatusOK, e.B
	case workerabi.OpStDeleteAll:
		if err := t.DeleteAll(ctx); err != nil {
			return fail(storageStatus(err), err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpStTxnBegin:
		if err := t.Begin(); err != nil {
			return fail(storageStatus(err), err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpStTxnCommit:
		if err := t.Commit(); err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpStTxnRollback:
		if err := t.Rollback(); err != nil {
			return fail(workerabi.StatusInvalid, err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpStSQL:
		return inv.sql(t, &d)
	case workerabi.OpAlarmGet:
		at, ok, err := t.GetAlarm(ctx)
		if err != nil {
			return fail(workerabi.StatusInternal, err)
		}
		e.Bool(ok)
		e.I64(at.UnixMilli())
		return workerabi.StatusOK, e.B
	case workerabi.OpAlarmSet:
		ms := d.I64()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := t.SetAlarm(ctx, time.UnixMilli(ms)); err != nil {
			return fail(workerabi.StatusInternal, err)
		}
		return workerabi.StatusOK, nil
	}
	// workerabi.OpAlarmDelete
	if err := t.DeleteAlarm(ctx); err != nil {
		return fail(workerabi.StatusInternal, err)
	}
	return workerabi.StatusOK, nil
}

// SQL value tags.
const (
	valNull  = 0
	valInt   = 1
	valFloat = 2
	valText  = 3
	valBlob  = 4
)

func (inv *invocation) sql(t *durable.Turn, d *workerabi.Decoder) (uint32, []byte) {
	query := d.Str()
	n := d.Count(1)
	args := make([]durable.Value, n)
	for i := range args {
		switch d.U8() {
		case valNull:
		case valInt:
			args[i] = d.I64()
		case valFloat:
			args[i] = d.F64()
		case valText:
			args[i] = d.Str()
		case valBlob:
			args[i] = d.Bytes()
		default:
			return fail(workerabi.StatusInvalid, fmt.Errorf("argument %d: unknown value type", i+1))
		}
	}
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	res, err := t.SQL(query, args)
	if err != nil {
		return fail(workerabi.StatusInvalid, err)
	}
	e := &inv.e
	e.U32(uint32(len(res.Columns)))
	for _, c := range res.Columns {
		e.Str(c)
	}
	e.U32(uint32(len(res.Rows)))
	for _, row := range res.Rows {
		for _, v := range row {
			switch x := v.(type) {
			case nil:
				e.U8(valNull)
			case int64:
				e.U8(valInt)
				e.I64(x)
			case float64:
				e.U8(valFloat)
				e.I64(int64(math.Float64bits(x)))
			case string:
				e.U8(valText)
				e.Str(x)
			case []byte:
				e.U8(valBlob)
				e.Bytes(x)
			default:
				e.U8(valText)
				e.Str(fmt.Sprint(x))
			}
		}
	}
	e.I64(res.RowsWritten)
	return workerabi.StatusOK, e.B
}

// fetch sends a subrequest through the transport: args are a request head (method, url,
// remote, header) and a body; the result is status, header and body.
func (inv *invocation) fetch(arg []byte) (uint32, []byte) {
	resp, st, res := inv.roundTrip(inv.io(), arg)
	if resp == nil {
		return st, res
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxFetchBody+1))
	if err != nil {
		return fail(workerabi.StatusInternal, fmt.Errorf("fetch: reading body: %w", err))
	}
	if len(data) > MaxFetchBody {
		return fail(workerabi.StatusLimit, fmt.Errorf("fetch: response body exceeds %d bytes (stream it: sdk.Fetch reads the body as the worker reads it)", MaxFetchBody))
	}
	e := &inv.e
	encodeRespHead(e, resp)
	e.Bytes(data)
	return workerabi.StatusOK, e.B
}

// roundTrip sends the subrequest encoded in arg (a request head and a body) under ctx and
// returns its response, whose Body (never nil) the caller closes; or, when it fails, nil and
// the operation's status and error.
func (inv *invocation) roundTrip(ctx context.Context, arg []byte) (*message.Response, uint32, []byte) {
	return inv.roundTripTo(ctx, arg, nil, false)
}

// subrequestsLeft fails when the invocation made all the subrequests its limits allow; a
// subrequest of any kind (fetch, service, AI, container) checks it, then counts itself.
func (inv *invocation) subrequestsLeft() error {
	if lim := inv.inst.v.limits.Subrequests; inv.subrequests >= lim {
		return fmt.Errorf("too many subrequests (limit %d)", lim)
	}
	return nil
}

// roundTripTo is roundTrip; a non-nil to is the one address the subrequest connects to
// (an object's container, containers.go), whatever its URL's host.
func (inv *invocation) roundTripTo(ctx context.Context, arg []byte, to *netip.AddrPort, lend bool) (*message.Response, uint32, []byte) {
	v := inv.inst.v
	tr := v.w.reg.svc.Transport // never nil: NewRegistry supplies its own
	if err := inv.subrequestsLeft(); err != nil {
		return failed(workerabi.StatusLimit, err)
	}
	inv.subrequests++
	d := workerabi.Decoder{B: arg}
	method, rawURL := d.Str(), d.Str()
	d.Raw()
	req := &message.Request{Method: method, Proto: message.HTTP11}
	for n := d.Count(8); n > 0; n-- {
		name, value := d.Str(), d.Str()
		if message.EqualFold(name, "Host") || message.EqualFold(name, "Content-Length") || message.EqualFold(name, "Transfer-Encoding") || message.EqualFold(name, "Connection") {
			continue
		}
		req.Header.Add(name, value)
	}
	var body []byte
	if !lend {
		body = d.Bytes()
	}
	if d.Err != nil {
		return failed(workerabi.StatusInvalid, d.Err)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return failed(workerabi.StatusInvalid, fmt.Errorf("fetch: invalid URL %q (want http or https with a host)", rawURL))
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	// The policy is checked on the resolved address, which is then dialed (not the name
	// again); the transport's dialer checks the connection once more.
	eg := v.egress
	var ap netip.AddrPort
	var byName bool
	if to != nil {
		eg, ap = &egress{addrPorts: []netip.AddrPort{*to}, listeners: v.egress.listeners}, *to
	} else {
		ap, byName, err = v.egress.resolveFetch(ctx, host, port)
	}
	if err != nil {
		if errors.Is(err, ErrRefused) {
			return failed(workerabi.StatusUnavailable, fmt.Errorf("fetch %s: %w", rawURL, err))
		}
		return failed(workerabi.StatusInternal, fmt.Errorf("fetch %s: %w", rawURL, err))
	}
	peer := &upstream.Peer{Address: ap.String()}
	if u.Scheme == "https" {
		peer.TLS = &upstream.TLSOptions{ServerName: host}
	}
	req.Scheme, req.Authority = u.Scheme, u.Host
	req.Target = u.RequestURI()
	req.ContentLength = int64(len(body))
	if len(body) > 0 {
		req.Body = bytes.NewReader(body)
	}
	if lend {
		// The rest of the invocation's request body, streamed by the transport (chunked
		// when its length is not known).
		if r, size := inv.takeBody(); size != 0 {
			req.Body, req.ContentLength = r, size
		}
	}
	if req.Method == "" {
		req.Method = "GET"
	}
	// Redirects are not followed: a 3xx goes back to the worker, whose next fetch of the
	// Location is checked like this one.
	resp, err := tr.RoundTrip(context.WithValue(ctx, egressKey{}, &egressCtx{e: eg, byName: byName}), peer, req)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			return failed(workerabi.StatusUnavailable, fmt.Errorf("fetch %s: %w", rawURL, err))
		}
		return failed(workerabi.StatusInternal, fmt.Errorf("fetch %s: %w", rawURL, err))
	}
	if resp.Body == nil {
		resp.Body = noBody{}
	}
	return resp, 0, nil
}

// failed is fail for roundTrip.
func failed(status uint32, err error) (*message.Response, uint32, []byte) {
	st, res := fail(status, err)
	return nil, st, res
}

// objResponse is a Durable Object's buffered response.
type objResponse struct {
	status int
	header message.Header
	body   bytes.Buffer
}

func (r *objResponse) WriteHeader(resp *message.Response) error {
	r.status = resp.Status
	r.header = resp.Header.Clone()
	return nil
}

func (r *objResponse) Write(p []byte) (int, error) { return r.body.Write(p) }

func (r *objResponse) Finish(*message.Header) error { return nil }

// callObject delivers a request to a Durable Object through its input gate and appends its
// encoded response (status, header fields, body, as workerabi.OpDOFetch returns them) to
// dst once the object's writes are durable. With a cluster (Services.Router), the request
// runs on the node that owns the object, here or elsewhere.
func (w *Worker) callObject(ctx context.Context, binding string, b *doBinding, id durable.ID, head, body, dst []byte) ([]byte, error) {
	if r := w.reg.svc.Router; r != nil {
		out, err := r.Call(ctx, b.ns.Name(), id, encodeObjRequest(head, body, serviceDepth(ctx)))
		if err != nil {
			// Failures of the object's code were logged where it ran; what is left is
			// the cluster's (no owner reachable, request too large).
			if errors.Is(err, cluster.ErrUnavailable) || errors.Is(err, durable.ErrInvalid) {
				w.logObjectFailure(binding, b.class, id, err)
			}
			return nil, fmt.Errorf("durable object %s: %w", id, err)
		}
		return append(dst, out...), nil
	}
	resp, err := w.runObject(ctx, binding, b, id, head, body)
	if err != nil {
		w.logObjectFailure(binding, b.class, id, err)
		return nil, fmt.Errorf("durable object %s: %w", id, err)
	}
	return resp.appendTo(dst), nil
}

// objectErrorStatus is the ABI status of a failed Durable Object request.
func objectErrorStatus(err error) uint32 {
	switch {
	case errors.Is(err, durable.ErrInvalid):
		return workerabi.StatusInvalid
	case errors.Is(err, cluster.ErrUnavailable):
		return workerabi.StatusUnavailable
	}
	return workerabi.StatusInternal
}

// runObject runs a request in the object on this node, through its input gate.
func (w *Worker) runObject(ctx context.Context, binding string, b *doBinding, id durable.ID, head, body []byte) (*objResponse, error) {
	resp := &objResponse{}
	if err := w.runObjectTo(ctx, binding, b, id, head, bytes.NewReader(body), int64(len(body)), resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// runObjectTo runs a request in the object on this node, through its input gate, writing
// its response to out (an objStream learns the object's turn, for its output gate).
func (w *Worker) runObjectTo(ctx context.Context, binding string, b *doBinding, id durable.ID, head []byte, body io.Reader, size int64, out ResponseWriter) error {
	return b.ns.Do(ctx, id, func(t *durable.Turn) error {
		if s, ok := out.(*objStream); ok {
			s.setTurn(t)
		}
		_, ended, err := w.invokeObject(ctx, t, binding, b.class, workerabi.KindDOFetch, 0, func(inv *invocation) {
			inv.head, inv.body, inv.bodySize, inv.sink = head, body, size, out
			if s, ok := out.(*objStream); ok {
				s.setCallee(inv.inst)
			}
		})
		if err != nil {
			return err
		}
		if !ended {
			return &Error{Kind: NoResponse, Worker: w.name}
		}
		return nil
	})
}

// appendTo appends the response as workerabi.OpDOFetch returns it.
func (r *objResponse) appendTo(dst []byte) []byte {
	e := workerabi.Encoder{B: dst}
	e.U32(uint32(r.status))
	fs := r.header.Fields()
	e.U32(uint32(len(fs)))
	for _, f := range fs {
		e.Str(f.Name)
		e.Str(f.Value)
	}
	e.Bytes(r.body.Bytes())
	return e.B
}

// encodeObjRequest packs a Durable Object request (its encoded head and its body) for
// Services.Router, with the depth of the chain of service calls the calling invocation runs
// in (service.go) when it is not 0: the object's invocation, on whichever node owns it,
// continues that chain, so a loop of service calls through objects on other nodes meets
// MaxServiceDepth as one on a single node does. The depth is the host's: the head and the
// body the worker gave are length-prefixed before it, so nothing a worker or a client sends
// can set it. decodeObjRequest unpacks it. (A request without the depth, from a node of an
// older version, is depth 0, and a payload with one fails INVALID on such a node: the
// depth is only sent within a chain of service calls.)
func encodeObjRequest(head, body []byte, depth int) []byte {
	e := workerabi.Encoder{B: make([]byte, 0, 12+len(head)+len(body))}
	e.Bytes(head)
	e.Bytes(body)
	if depth > 0 {
		e.U32(uint32(depth))
	}
	return e.B
}

func decodeObjRequest(p []byte) (head, body []byte, depth int, err error) {
	d := workerabi.Decoder{B: p}
	head, body = d.Raw(), d.Raw()
	if d.Err == nil && len(d.B) != 0 {
		depth = int(d.U32())
		if d.Err == nil && (len(d.B) != 0 || depth <= 0 || depth >= MaxServiceDepth) {
			d.Err = errors.New("trailing bytes")
		}
	}
	if d.Err != nil {
		return nil, nil, 0, fmt.Errorf("worker: bad durable object request: %v: %w", d.Err, durable.ErrInvalid)
	}
	return head, body, depth, nil
}

// objectHandler runs requests for objects of namespace nsName that Services.Router
// delivers to this node: from this node's own workers, or forwarded by another node.
func (w *Worker) objectHandler(nsName string) func(ctx context.Context, id durable.ID, payload []byte) ([]byte, error) {
	return func(ctx context.Context, id durable.ID, payload []byte) ([]byte, error) {
		head, body, depth, err := decodeObjRequest(payload)
		if err != nil {
			return nil, err
		}
		if depth > 0 {
			ctx = context.WithValue(ctx, serviceDepthKey{}, depth)
		}
		var binding string
		var b *doBinding
		if cur := w.cur.Load(); cur != nil {
			binding, b = cur.bindingOf(nsName)
		}
		if b == nil {
			return nil, fmt.Errorf("worker %s: no binding for namespace %s here: %w", w.name, nsName, cluster.ErrUnavailable)
		}
		resp, err := w.runObject(ctx, binding, b, id, head, body)
		if err != nil {
			if !errors.Is(err, clustered.ErrNotOwner) && !errors.Is(err, durable.ErrLeaseLost) {
				w.logObjectFailure(binding, b.class, id, err)
			}
			return nil, err
		}
		return resp.appendTo(nil), nil
	}
}

// logObjectFailure writes the error-log line of a failed Durable Object request, as a failed
// worker invocation gets one: the calling worker sees the error, the operator the line.
func (w *Worker) logObjectFailure(binding, class string, id durable.ID, err error) {
	log := w.reg.svc.Logger.With("worker", w.name)
	if v := w.cur.Load(); v != nil {
		log = v.log
	}
	kind := "error"
	var we *Error
	if errors.As(err, &we) {
		kind = we.Kind.String()
	}
	log.Warn("durable object request failed", "binding", binding, "class", class,
		"object", id.String(), "kind", kind, "err", err)
}

var errAlarmFailed = errors.New("alarm handler failed")

// runAlarm runs an object's alarm (durable.Options.OnAlarm).
func (w *Worker) runAlarm(ctx context.Context, nsName string, t *durable.Turn, retries int) error {
	cur := w.cur.Load()
	if cur == nil {
		return &Error{Kind: Unavailable, Worker: w.name}
	}
	binding, b := cur.bindingOf(nsName)
	if b == nil {
		return fmt.Errorf("worker %s: no binding for namespace %s", w.name, nsName)
	}
	rc, _, err := w.invokeObject(ctx, t, binding, b.class, workerabi.KindDOAlarm, retries, nil)
	switch {
	case err != nil:
		return err
	case rc == workerabi.RCAlarmFailed:
		return errAlarmFailed
	}
	return nil
}
