package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"time"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

func storageStatus(err error) uint32 {
	if errors.Is(err, kv.ErrInvalid) || errors.Is(err, durable.ErrInvalid) {
		return statusInvalid
	}
	return statusInternal
}

func (inv *invocation) kvOp(op uint32, arg []byte) (uint32, []byte) {
	d := dec{b: arg}
	binding := string(d.raw())
	ns := inv.inst.v.kv[binding]
	if ns == nil {
		return fail(statusUnavailable, fmt.Errorf("no KV namespace bound as %q", binding))
	}
	ctx := inv.io()
	e := &inv.e
	switch op {
	case opKVGet:
		key := d.str()
		withMeta := d.u8() == 1
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		ent, err := ns.Get(ctx, key)
		if err != nil {
			return fail(storageStatus(err), err)
		}
		if ent == nil {
			e.u8(0)
			return statusOK, e.b
		}
		e.u8(1)
		e.bytes(ent.Value)
		if withMeta && ent.Metadata != nil {
			e.u8(1)
			e.bytes(ent.Metadata)
		} else {
			e.u8(0)
			e.bytes(nil)
		}
		var exp int64
		if !ent.Expiration.IsZero() {
			exp = ent.Expiration.Unix()
		}
		e.i64(exp)
		return statusOK, e.b
	case opKVPut:
		key := d.str()
		value := d.raw()
		var o kv.PutOptions
		hasMeta := d.u8() == 1
		meta := d.raw()
		if hasMeta {
			o.Metadata = meta
		}
		if exp := d.i64(); exp > 0 {
			o.Expiration = time.Unix(exp, 0)
		}
		if ttl := d.i64(); ttl > 0 {
			o.ExpirationTTL = time.Duration(ttl) * time.Second
		}
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		if err := ns.Put(ctx, key, value, o); err != nil {
			return fail(storageStatus(err), err)
		}
		return statusOK, nil
	case opKVDelete:
		key := d.str()
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		if err := ns.Delete(ctx, key); err != nil {
			return fail(storageStatus(err), err)
		}
		return statusOK, nil
	}
	o := kv.ListOptions{Prefix: d.str(), Limit: int(d.u32()), Cursor: d.str()}
	if d.err != nil {
		return fail(statusInvalid, d.err)
	}
	res, err := ns.List(ctx, o)
	if err != nil {
		return fail(storageStatus(err), err)
	}
	e.bool(res.ListComplete)
	e.str(res.Cursor)
	e.u32(uint32(len(res.Keys)))
	for _, k := range res.Keys {
		e.str(k.Name)
		var exp int64
		if !k.Expiration.IsZero() {
			exp = k.Expiration.Unix()
		}
		e.i64(exp)
		e.bool(k.Metadata != nil)
		e.bytes(k.Metadata)
	}
	return statusOK, e.b
}

func (inv *invocation) doOp(op uint32, arg []byte) (uint32, []byte) {
	e := &inv.e
	if op == opDOContext {
		if inv.turn == nil {
			return fail(statusUnavailable, errors.New("not a Durable Object invocation"))
		}
		e.str(inv.nsName)
		e.str(inv.class)
		e.str(inv.objID)
		e.u32(uint32(inv.retries))
		return statusOK, e.b
	}
	d := dec{b: arg}
	binding := string(d.raw())
	b := inv.inst.v.durable[binding]
	if b == nil {
		return fail(statusUnavailable, fmt.Errorf("no Durable Object namespace bound as %q", binding))
	}
	switch op {
	case opDOIDFromName:
		name := d.raw()
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		e.str(b.ns.IDFromName(string(name)).String())
		return statusOK, e.b
	case opDONewID:
		e.str(b.ns.NewUniqueID().String())
		return statusOK, e.b
	case opDOIDFromStr:
		id, err := b.ns.ParseID(string(d.raw()))
		if err != nil {
			return fail(statusInvalid, err)
		}
		e.str(id.String())
		return statusOK, e.b
	}
	// opDOFetch: str ns, str id, request head, bytes body
	id, err := b.ns.ParseID(string(d.raw()))
	if err != nil {
		return fail(statusInvalid, err)
	}
	headStart := d.b
	d.raw()
	d.raw()
	d.raw()
	for n := d.count(8); n > 0; n-- {
		d.raw()
		d.raw()
	}
	head := bytes.Clone(headStart[:len(headStart)-len(d.b)])
	body := bytes.Clone(d.raw())
	if d.err != nil {
		return fail(statusInvalid, d.err)
	}
	resp, err := inv.inst.v.w.callObject(inv.io(), binding, b, id, head, body)
	if err != nil {
		return fail(statusInternal, err)
	}
	e.u32(uint32(resp.status))
	fs := resp.header.Fields()
	e.u32(uint32(len(fs)))
	for _, f := range fs {
		e.str(f.Name)
		e.str(f.Value)
	}
	e.bytes(resp.body.Bytes())
	return statusOK, e.b
}

func (inv *invocation) storageOp(op uint32, arg []byte) (uint32, []byte) {
	t := inv.turn
	if t == nil {
		return fail(statusUnavailable, errors.New("storage is only available inside a Durable Object"))
	}
	d := dec{b: arg}
	e := &inv.e
	ctx := inv.io()
	switch op {
	case opStGet, opStDelete:
		n := d.count(4)
		if n > durable.MaxBatchKeys {
			return fail(statusInvalid, fmt.Errorf("%d keys exceed %d per call", n, durable.MaxBatchKeys))
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = d.str()
		}
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		if op == opStDelete {
			c, err := t.Delete(keys)
			if err != nil {
				return fail(storageStatus(err), err)
			}
			e.u32(uint32(c))
			return statusOK, e.b
		}
		vals, err := t.Get(keys)
		if err != nil {
			return fail(storageStatus(err), err)
		}
		e.u32(uint32(len(vals)))
		for _, v := range vals {
			e.bool(v != nil)
			e.bytes(v)
		}
		return statusOK, e.b
	case opStPut:
		n := d.count(8)
		if n > durable.MaxBatchKeys {
			return fail(statusInvalid, fmt.Errorf("%d entries exceed %d per call", n, durable.MaxBatchKeys))
		}
		entries := make([]durable.Entry, n)
		for i := range entries {
			entries[i] = durable.Entry{Key: d.str(), Value: d.bytes()}
		}
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		if err := t.Put(entries); err != nil {
			return fail(storageStatus(err), err)
		}
		return statusOK, nil
	case opStList:
		o := durable.ListOptions{Prefix: d.str(), Start: d.str(), End: d.str(), Reverse: d.u8() == 1, Limit: int(d.u32())}
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		es, err := t.List(o)
		if err != nil {
			return fail(storageStatus(err), err)
		}
		e.u32(uint32(len(es)))
		for _, en := range es {
			e.str(en.Key)
			e.bytes(en.Value)
		}
		return statusOK, e.b
	case opStDeleteAll:
		if err := t.DeleteAll(ctx); err != nil {
			return fail(storageStatus(err), err)
		}
		return statusOK, nil
	case opStTxnBegin:
		if err := t.Begin(); err != nil {
			return fail(storageStatus(err), err)
		}
		return statusOK, nil
	case opStTxnCommit:
		if err := t.Commit(); err != nil {
			return fail(statusInvalid, err)
		}
		return statusOK, nil
	case opStTxnRollback:
		if err := t.Rollback(); err != nil {
			return fail(statusInvalid, err)
		}
		return statusOK, nil
	case opStSQL:
		return inv.sql(t, &d)
	case opAlarmGet:
		at, ok, err := t.GetAlarm(ctx)
		if err != nil {
			return fail(statusInternal, err)
		}
		e.bool(ok)
		e.i64(at.UnixMilli())
		return statusOK, e.b
	case opAlarmSet:
		ms := d.i64()
		if d.err != nil {
			return fail(statusInvalid, d.err)
		}
		if err := t.SetAlarm(ctx, time.UnixMilli(ms)); err != nil {
			return fail(statusInternal, err)
		}
		return statusOK, nil
	}
	// opAlarmDelete
	if err := t.DeleteAlarm(ctx); err != nil {
		return fail(statusInternal, err)
	}
	return statusOK, nil
}

// SQL value tags.
const (
	valNull  = 0
	valInt   = 1
	valFloat = 2
	valText  = 3
	valBlob  = 4
)

func (inv *invocation) sql(t *durable.Turn, d *dec) (uint32, []byte) {
	query := d.str()
	n := d.count(1)
	args := make([]durable.Value, n)
	for i := range args {
		switch d.u8() {
		case valNull:
		case valInt:
			args[i] = d.i64()
		case valFloat:
			args[i] = d.f64()
		case valText:
			args[i] = d.str()
		case valBlob:
			args[i] = d.bytes()
		default:
			return fail(statusInvalid, fmt.Errorf("argument %d: unknown value type", i+1))
		}
	}
	if d.err != nil {
		return fail(statusInvalid, d.err)
	}
	res, err := t.SQL(query, args)
	if err != nil {
		return fail(statusInvalid, err)
	}
	e := &inv.e
	e.u32(uint32(len(res.Columns)))
	for _, c := range res.Columns {
		e.str(c)
	}
	e.u32(uint32(len(res.Rows)))
	for _, row := range res.Rows {
		for _, v := range row {
			switch x := v.(type) {
			case nil:
				e.u8(valNull)
			case int64:
				e.u8(valInt)
				e.i64(x)
			case float64:
				e.u8(valFloat)
				e.i64(int64(math.Float64bits(x)))
			case string:
				e.u8(valText)
				e.str(x)
			case []byte:
				e.u8(valBlob)
				e.bytes(x)
			default:
				e.u8(valText)
				e.str(fmt.Sprint(x))
			}
		}
	}
	e.i64(res.RowsWritten)
	return statusOK, e.b
}

// fetch sends a subrequest through the transport: args are a request head (method, url,
// remote, header) and a body; the result is status, header and body.
func (inv *invocation) fetch(arg []byte) (uint32, []byte) {
	v := inv.inst.v
	tr := v.w.reg.svc.Transport
	if tr == nil {
		return fail(statusUnavailable, errors.New("subrequests are not available"))
	}
	if inv.subrequests >= v.limits.Subrequests {
		return fail(statusLimit, fmt.Errorf("too many subrequests (limit %d)", v.limits.Subrequests))
	}
	inv.subrequests++
	d := dec{b: arg}
	method, rawURL := d.str(), d.str()
	d.raw()
	req := &message.Request{Method: method, Proto: message.HTTP11}
	for n := d.count(8); n > 0; n-- {
		name, value := d.str(), d.str()
		if message.EqualFold(name, "Host") || message.EqualFold(name, "Content-Length") || message.EqualFold(name, "Transfer-Encoding") || message.EqualFold(name, "Connection") {
			continue
		}
		req.Header.Add(name, value)
	}
	body := d.bytes()
	if d.err != nil {
		return fail(statusInvalid, d.err)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail(statusInvalid, fmt.Errorf("fetch: invalid URL %q (want http or https with a host)", rawURL))
	}
	peer := &upstream.Peer{Address: u.Host}
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		peer.Address = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Scheme == "https" {
		peer.TLS = &upstream.TLSOptions{ServerName: u.Hostname()}
	}
	req.Scheme, req.Authority = u.Scheme, u.Host
	req.Target = u.RequestURI()
	req.ContentLength = int64(len(body))
	if len(body) > 0 {
		req.Body = bytes.NewReader(body)
	}
	if req.Method == "" {
		req.Method = "GET"
	}
	resp, err := tr.RoundTrip(inv.io(), peer, req)
	if err != nil {
		return fail(statusInternal, fmt.Errorf("fetch %s: %w", rawURL, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxFetchBody+1))
	if err != nil {
		return fail(statusInternal, fmt.Errorf("fetch %s: reading body: %w", rawURL, err))
	}
	if len(data) > MaxFetchBody {
		return fail(statusLimit, fmt.Errorf("fetch %s: response body exceeds %d bytes", rawURL, MaxFetchBody))
	}
	e := &inv.e
	e.u32(uint32(resp.Status))
	fs := resp.Header.Fields()
	e.u32(uint32(len(fs)))
	for _, f := range fs {
		e.str(f.Name)
		e.str(f.Value)
	}
	e.bytes(data)
	return statusOK, e.b
}

// actor is the live instance of one Durable Object: a dedicated instance of the version that
// was current when the object was activated.
type actor struct {
	v    *version
	inst *instance
}

func (a *actor) close() {
	a.inst.close()
	a.v.release()
}

// evictActor releases an evicted object's instance (durable.Options.OnEvict).
func evictActor(o *durable.Object) {
	if a, ok := o.Actor.(*actor); ok {
		o.Actor = nil
		a.close()
	}
}

// actorFor returns the object's live instance, (re)creating it on the current version.
func (w *Worker) actorFor(ctx context.Context, t *durable.Turn) (*actor, error) {
	cur := w.cur.Load()
	if a, ok := t.Object.Actor.(*actor); ok {
		if a.v == cur {
			return a, nil
		}
		t.Object.Actor = nil
		a.close()
	}
	if cur == nil || !cur.acquire() {
		return nil, &Error{Kind: Unavailable, Worker: w.name}
	}
	in, err := cur.newInstance(ctx)
	if err != nil {
		cur.release()
		return nil, &Error{Kind: Crashed, Worker: w.name, Cause: err}
	}
	a := &actor{v: cur, inst: in}
	t.Object.Actor = a
	return a, nil
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

// callObject delivers a request to a Durable Object through its input gate and returns its
// response once the object's writes are durable.
func (w *Worker) callObject(ctx context.Context, binding string, b *doBinding, id durable.ID, head, body []byte) (*objResponse, error) {
	resp := &objResponse{}
	err := b.ns.Do(ctx, id, func(t *durable.Turn) error {
		a, err := w.actorFor(ctx, t)
		if err != nil {
			return err
		}
		inv := &a.inst.inv
		inv.reset(ctx, kindDOFetch)
		inv.head, inv.body, inv.sink = head, bytes.NewReader(body), resp
		inv.turn, inv.nsName, inv.class, inv.objID = t, binding, b.class, id.String()
		rc, err := a.inst.run(ctx, kindDOFetch)
		ended := inv.ended
		inv.clear()
		if err == nil && rc != rcOK {
			err = &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("durable object handler returned %d", rc)}
		}
		if err != nil || a.inst.poisoned {
			t.Object.Actor = nil
			a.close()
		}
		if err != nil {
			return err
		}
		if !ended {
			return &Error{Kind: NoResponse, Worker: w.name}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("durable object %s: %w", id, err)
	}
	return resp, nil
}

var errAlarmFailed = errors.New("alarm handler failed")

// runAlarm runs an object's alarm (durable.Options.OnAlarm).
func (w *Worker) runAlarm(ctx context.Context, nsName string, t *durable.Turn, retries int) error {
	cur := w.cur.Load()
	if cur == nil {
		return &Error{Kind: Unavailable, Worker: w.name}
	}
	var binding, class string
	for name, b := range cur.durable {
		if b.ns.Name() == nsName {
			binding, class = name, b.class
			break
		}
	}
	if class == "" {
		return fmt.Errorf("worker %s: no binding for namespace %s", w.name, nsName)
	}
	a, err := w.actorFor(ctx, t)
	if err != nil {
		return err
	}
	inv := &a.inst.inv
	inv.reset(ctx, kindDOAlarm)
	inv.turn, inv.nsName, inv.class, inv.objID, inv.retries = t, binding, class, t.Object.ID.String(), retries
	rc, err := a.inst.run(ctx, kindDOAlarm)
	inv.clear()
	if err == nil && a.inst.poisoned {
		t.Object.Actor = nil
		a.close()
	}
	switch {
	case err != nil:
		t.Object.Actor = nil
		a.close()
		return err
	case rc == rcAlarmFailed:
		return errAlarmFailed
	case rc != rcOK:
		t.Object.Actor = nil
		a.close()
		return &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("alarm handler returned %d", rc)}
	}
	return nil
}
