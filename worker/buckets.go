package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/objstore"
)

// bucketBinding is an object storage binding resolved to its bucket.
type bucketBinding struct {
	name  string
	b     objstore.Bucket
	stats *BucketStats
}

// bindBuckets resolves the version's bucket bindings (Config.Buckets).
func (v *version) bindBuckets(ctx context.Context, cfg *Config) error {
	svc := &v.w.reg.svc
	v.buckets = map[string]*bucketBinding{}
	for binding, name := range cfg.Buckets {
		store := cfg.BucketStores[binding]
		if store == nil {
			store = svc.Objects
		}
		if store == nil {
			return fmt.Errorf("worker %s: bucket binding %s: no object storage configured", v.w.name, binding)
		}
		b, err := store.Bucket(ctx, name)
		if err != nil {
			return fmt.Errorf("worker %s: bucket binding %s: %w", v.w.name, binding, err)
		}
		v.buckets[binding] = &bucketBinding{name: name, b: b, stats: v.w.reg.objStats.of(name)}
	}
	return nil
}

// Operation kinds counted per bucket (BucketStats.Ops).
const (
	bucketOpGet = iota
	bucketOpHead
	bucketOpPut
	bucketOpDelete
	bucketOpList
	bucketOpMultipart
	bucketOpKinds
)

var bucketOpLabels = [bucketOpKinds]string{"get", "head", "put", "delete", "list", "multipart"}

// BucketStats are a bucket's counters since the registry started, for metrics.
type BucketStats struct {
	ops      [bucketOpKinds]atomic.Uint64
	errs     atomic.Uint64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
}

// BucketSample is a point-in-time view of one bucket's counters.
type BucketSample struct {
	// Bucket is the bucket's name.
	Bucket string
	// Ops counts operations by kind: get, head, put, delete, list, multipart (every
	// multipart call). Every kind is present.
	Ops map[string]uint64
	// Errors counts failed operations.
	Errors uint64
	// BytesIn counts body bytes stored (puts and parts); BytesOut body bytes read.
	BytesIn, BytesOut int64
}

// bucketStatsSet holds the counters of every bucket bound so far, by bucket name.
type bucketStatsSet struct {
	mu sync.Mutex
	m  map[string]*BucketStats
}

func (s *bucketStatsSet) of(name string) *BucketStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*BucketStats{}
	}
	st := s.m[name]
	if st == nil {
		st = &BucketStats{}
		s.m[name] = st
	}
	return st
}

// BucketStats returns the counters of every bucket a worker has bound, sorted by name.
func (r *Registry) BucketStats() []BucketSample {
	r.objStats.mu.Lock()
	names := slices.Sorted(maps.Keys(r.objStats.m))
	sts := make([]*BucketStats, len(names))
	for i, n := range names {
		sts[i] = r.objStats.m[n]
	}
	r.objStats.mu.Unlock()
	out := make([]BucketSample, len(names))
	for i, st := range sts {
		s := BucketSample{Bucket: names[i], Ops: map[string]uint64{}, Errors: st.errs.Load(), BytesIn: st.bytesIn.Load(), BytesOut: st.bytesOut.Load()}
		for k, l := range bucketOpLabels {
			s.Ops[l] = st.ops[k].Load()
		}
		out[i] = s
	}
	return out
}

// objStatus is the ABI status of a failed bucket operation.
func objStatus(err error) uint32 {
	switch {
	case errors.Is(err, objstore.ErrInvalid), errors.Is(err, objstore.ErrChecksum), errors.Is(err, objstore.ErrNoUpload):
		return workerabi.StatusInvalid
	case errors.Is(err, objstore.ErrTooLarge):
		return workerabi.StatusLimit
	}
	return workerabi.StatusInternal
}

// objFail counts and returns a failed operation.
func (bb *bucketBinding) fail(err error) (uint32, []byte) {
	bb.stats.errs.Add(1)
	return fail(objStatus(err), err)
}

// encodeObject appends an object's metadata.
func encodeObject(e *workerabi.Encoder, o *objstore.Object) {
	e.Str(o.Key)
	e.I64(o.Size)
	e.Str(o.ETag)
	e.I64(o.Uploaded.UnixMilli())
	h := &o.HTTP
	for _, s := range [...]string{h.ContentType, h.ContentLanguage, h.ContentDisposition, h.ContentEncoding, h.CacheControl, h.Expires} {
		e.Str(s)
	}
	e.U32(uint32(len(o.Custom)))
	for _, k := range slices.Sorted(maps.Keys(o.Custom)) {
		e.Str(k)
		e.Str(o.Custom[k])
	}
	e.Str(o.MD5)
	e.Str(o.SHA256)
}

// decodePutOptions reads a put's options: the HTTP metadata, the custom metadata and the
// checksums.
func decodePutOptions(d *workerabi.Decoder) objstore.PutOptions {
	var o objstore.PutOptions
	h := &o.HTTP
	for _, p := range [...]*string{&h.ContentType, &h.ContentLanguage, &h.ContentDisposition, &h.ContentEncoding, &h.CacheControl, &h.Expires} {
		*p = d.Str()
	}
	if n := d.Count(8); n > 0 {
		o.Custom = make(map[string]string, n)
		for range n {
			k := d.Str()
			o.Custom[k] = d.Str()
		}
	}
	if b := d.Bytes(); len(b) > 0 {
		o.MD5 = b
	}
	if b := d.Bytes(); len(b) > 0 {
		o.SHA256 = b
	}
	return o
}

// objOp serves the object storage operations but the body handle's.
func (inv *invocation) objOp(op uint32, arg []byte) (uint32, []byte) {
	d := workerabi.Decoder{B: arg}
	switch op {
	case workerabi.OpObjWrite, workerabi.OpObjFinish:
		return inv.objUploadOp(op, &d)
	case workerabi.OpObjRespond:
		return inv.objRespond(&d)
	}
	binding := string(d.Raw())
	bb := inv.inst.v.buckets[binding]
	if bb == nil {
		return fail(workerabi.StatusUnavailable, fmt.Errorf("no bucket bound as %q", binding))
	}
	ctx := inv.io()
	e := &inv.e
	switch op {
	case workerabi.OpObjHead:
		key := d.Str()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		bb.stats.ops[bucketOpHead].Add(1)
		if err := objstore.CheckKey(key); err != nil {
			return bb.fail(err)
		}
		o, err := bb.b.Head(ctx, key)
		if err != nil {
			return bb.fail(err)
		}
		e.Bool(o != nil)
		if o != nil {
			encodeObject(e, o)
		}
		return workerabi.StatusOK, e.B
	case workerabi.OpObjGet:
		return inv.objGet(bb, &d)
	case workerabi.OpObjPut:
		key := d.Str()
		o := decodePutOptions(&d)
		bb.stats.ops[bucketOpPut].Add(1)
		return inv.objWrite(bb, &d, func(ctx context.Context, r io.Reader) (func(*workerabi.Encoder), error) {
			obj, err := bb.b.Put(ctx, key, r, o)
			if err != nil {
				return nil, err
			}
			return func(e *workerabi.Encoder) { encodeObject(e, obj) }, nil
		})
	case workerabi.OpObjDelete:
		n := d.Count(4)
		if n > objstore.MaxDeleteKeys {
			return fail(workerabi.StatusInvalid, fmt.Errorf("%d keys exceed %d per delete", n, objstore.MaxDeleteKeys))
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = d.Str()
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		bb.stats.ops[bucketOpDelete].Add(1)
		if err := bb.b.Delete(ctx, keys); err != nil {
			return bb.fail(err)
		}
		return workerabi.StatusOK, nil
	case workerabi.OpObjList:
		o := objstore.ListOptions{Prefix: d.Str(), Delimiter: d.Str(), Cursor: d.Str(), Limit: int(d.U32())}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		bb.stats.ops[bucketOpList].Add(1)
		res, err := objstore.List(ctx, bb.b, o)
		if err != nil {
			return bb.fail(err)
		}
		e.Bool(res.Truncated)
		e.Str(res.Cursor)
		e.U32(uint32(len(res.Objects)))
		for _, o := range res.Objects {
			encodeObject(e, o)
		}
		e.U32(uint32(len(res.Prefixes)))
		for _, p := range res.Prefixes {
			e.Str(p)
		}
		return workerabi.StatusOK, e.B
	}
	bb.stats.ops[bucketOpMultipart].Add(1)
	key := d.Str()
	switch op {
	case workerabi.OpObjUploadCreate:
		o := decodePutOptions(&d)
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		id, err := bb.b.CreateUpload(ctx, key, o)
		if err != nil {
			return bb.fail(err)
		}
		e.Str(id)
		return workerabi.StatusOK, e.B
	case workerabi.OpObjUploadPart:
		id := d.Str()
		n := int(d.U32())
		return inv.objWrite(bb, &d, func(ctx context.Context, r io.Reader) (func(*workerabi.Encoder), error) {
			p, err := bb.b.UploadPart(ctx, key, id, n, r, objstore.PutOptions{})
			if err != nil {
				return nil, err
			}
			return func(e *workerabi.Encoder) { e.U32(uint32(p.Number)); e.Str(p.ETag); e.I64(p.Size) }, nil
		})
	case workerabi.OpObjUploadComplete:
		id := d.Str()
		n := d.Count(8)
		if n > objstore.MaxParts {
			return fail(workerabi.StatusInvalid, fmt.Errorf("%d parts exceed %d", n, objstore.MaxParts))
		}
		parts := make([]objstore.Part, n)
		for i := range parts {
			parts[i] = objstore.Part{Number: int(d.U32()), ETag: d.Str()}
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		o, err := bb.b.CompleteUpload(ctx, key, id, parts)
		if err != nil {
			return bb.fail(err)
		}
		encodeObject(e, o)
		return workerabi.StatusOK, e.B
	case workerabi.OpObjUploadAbort:
		id := d.Str()
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := bb.b.AbortUpload(ctx, key, id); err != nil {
			return bb.fail(err)
		}
		return workerabi.StatusOK, nil
	}
	return fail(workerabi.StatusUnavailable, fmt.Errorf("unknown host operation %d", op))
}

// objGet serves workerabi.OpObjGet: str key, u8 has_range, i64 offset, i64 length, i64
// suffix, str range_header, str if_match, str if_none_match, i64 if_modified_since, i64
// if_unmodified_since (Unix seconds, 0: none), str if_range, u8 head.
func (inv *invocation) objGet(bb *bucketBinding, d *workerabi.Decoder) (uint32, []byte) {
	key := d.Str()
	var o objstore.GetOptions
	hasRange := d.U8() == 1
	r := objstore.Range{Offset: d.I64(), Length: d.I64(), Suffix: d.I64()}
	if hasRange {
		o.Range = &r
	}
	o.RangeHeader = d.Str()
	o.IfMatch, o.IfNoneMatch = d.Str(), d.Str()
	if t := d.I64(); t != 0 {
		o.IfModifiedSince = time.Unix(t, 0)
	}
	if t := d.I64(); t != 0 {
		o.IfUnmodifiedSince = time.Unix(t, 0)
	}
	o.IfRange = d.Str()
	o.Head = d.U8() == 1
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if o.Head {
		bb.stats.ops[bucketOpHead].Add(1)
	} else {
		bb.stats.ops[bucketOpGet].Add(1)
		if inv.streams.full() {
			return fail(workerabi.StatusLimit, fmt.Errorf("too many open bodies (limit %d): read them to the end or close them", MaxOpenBodies))
		}
	}
	res, err := objstore.Get(inv.io(), bb.b, key, o)
	if err != nil {
		return bb.fail(err)
	}
	e := &inv.e
	e.B = e.B[:0]
	e.Bool(res.Object != nil)
	if res.Object == nil {
		return workerabi.StatusOK, e.B
	}
	e.U32(uint32(res.Status))
	encodeObject(e, res.Object)
	e.I64(res.Offset)
	e.I64(res.Length)
	if res.Body == nil {
		e.U32(0)
		e.Bytes(nil)
		return workerabi.StatusOK, e.B
	}
	body := &objBody{rc: res.Body, left: res.Length, stats: bb.stats}
	if res.Length <= InlineBody {
		data := make([]byte, res.Length)
		_, err := io.ReadFull(body, data)
		body.Close()
		if err != nil {
			return bb.fail(fmt.Errorf("reading object %q: %w", key, err))
		}
		e.U32(0)
		e.Bytes(data)
		return workerabi.StatusOK, e.B
	}
	e.U32(inv.streams.add(body))
	e.Bytes(nil)
	return workerabi.StatusOK, e.B
}

// objBody is an object's body behind a handle: it knows how many bytes are left (for
// OpObjRespond's Content-Length) and counts what it reads.
type objBody struct {
	rc    io.ReadCloser
	left  int64
	stats *BucketStats
}

func (b *objBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	b.stats.bytesOut.Add(int64(n))
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *objBody) Close() error { return b.rc.Close() }

// countingReader counts the bytes a put stores.
type countingReader struct {
	r     io.Reader
	stats *BucketStats
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.stats.bytesIn.Add(int64(n))
	return n, err
}

// storeFunc stores a body read from r and returns the encoder of its result.
type storeFunc func(ctx context.Context, r io.Reader) (func(*workerabi.Encoder), error)

// objWrite runs store on the body source that follows in d (workerabi.ObjSource*).
func (inv *invocation) objWrite(bb *bucketBinding, d *workerabi.Decoder, store storeFunc) (uint32, []byte) {
	src := d.U8()
	var r io.Reader
	switch src {
	case workerabi.ObjSourceInline:
		r = readerOf(d.Raw())
	case workerabi.ObjSourceRequest:
		r = noBody{}
		if inv.body != nil {
			inv.bodyRead = true
			r = inv.body
		}
	case workerabi.ObjSourceHandle:
		h := d.U32()
		s := inv.streams.get(h)
		if s == nil {
			return fail(workerabi.StatusInvalid, fmt.Errorf("no open body with handle %d", h))
		}
		if _, ok := s.(*objUpload); ok {
			return fail(workerabi.StatusInvalid, fmt.Errorf("handle %d is an upload, not a body", h))
		}
		defer inv.streams.release(h)
		if _, ok := s.(*objStream); ok {
			// A Durable Object's response still arriving: the object may call an object
			// of this instance meanwhile (as streamOp allows).
			inv.callStart()
			defer inv.callEnd()
			if inv.unpin() {
				defer runtime.LockOSThread()
			}
		}
		r = s
	case workerabi.ObjSourceStream:
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if inv.streams.full() {
			return fail(workerabi.StatusLimit, fmt.Errorf("too many open bodies (limit %d)", MaxOpenBodies))
		}
		u := startUpload(inv.io(), bb, store)
		e := &inv.e
		e.U32(inv.streams.add(u))
		return workerabi.StatusOK, e.B
	default:
		return fail(workerabi.StatusInvalid, fmt.Errorf("unknown body source %d", src))
	}
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	enc, err := store(inv.io(), countingReader{r, bb.stats})
	if src == workerabi.ObjSourceRequest {
		inv.body = nil // consumed, whether or not the put succeeded
	}
	if err != nil {
		return bb.fail(err)
	}
	e := &inv.e
	e.B = e.B[:0]
	e.U32(0)
	enc(e)
	return workerabi.StatusOK, e.B
}

// readerOf reads p (a view of guest memory, valid during the call only).
func readerOf(p []byte) io.Reader {
	return &sliceReader{p: p}
}

type sliceReader struct{ p []byte }

func (s *sliceReader) Read(b []byte) (int, error) {
	if len(s.p) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.p)
	s.p = s.p[n:]
	return n, nil
}

// objUpload is a put or part the guest writes piece by piece (workerabi.ObjSourceStream):
// the store reads a pipe in a goroutine of its own while OpObjWrite calls write into it.
// It sits among the invocation's body handles; closing it (the invocation ended without
// OpObjFinish) aborts the put, which stores nothing.
type objUpload struct {
	pw   *io.PipeWriter
	done chan struct{}
	enc  func(*workerabi.Encoder)
	err  error
}

var errUploadAborted = errors.New("upload not finished: the invocation ended or closed it")

func startUpload(ctx context.Context, bb *bucketBinding, store storeFunc) *objUpload {
	pr, pw := io.Pipe()
	u := &objUpload{pw: pw, done: make(chan struct{})}
	go u.run(ctx, pr, countingReader{pr, bb.stats}, store, bb)
	return u
}

// run stores what the pipe delivers until its writer closes it.
func (u *objUpload) run(ctx context.Context, pr *io.PipeReader, r io.Reader, store storeFunc, bb *bucketBinding) {
	defer close(u.done)
	u.enc, u.err = store(ctx, r)
	if u.err != nil {
		bb.stats.errs.Add(1)
	}
	// Writes after a failure fail at once with it.
	pr.CloseWithError(errors.Join(u.err, errors.New("upload ended")))
}

func (u *objUpload) Read([]byte) (int, error) {
	return 0, errors.New("an upload handle cannot be read")
}

func (u *objUpload) Close() error {
	u.pw.CloseWithError(errUploadAborted)
	<-u.done
	return nil
}

// objUploadOp serves OpObjWrite (u32 handle, bytes chunk) and OpObjFinish (u32 handle).
func (inv *invocation) objUploadOp(op uint32, d *workerabi.Decoder) (uint32, []byte) {
	h := d.U32()
	var chunk []byte
	if op == workerabi.OpObjWrite {
		chunk = d.Raw()
	}
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	u, _ := inv.streams.get(h).(*objUpload)
	if u == nil {
		return fail(workerabi.StatusInvalid, fmt.Errorf("no upload with handle %d", h))
	}
	if op == workerabi.OpObjWrite {
		if _, err := u.pw.Write(chunk); err != nil {
			<-u.done
			err = u.err
			inv.streams.release(h)
			if err == nil {
				err = errUploadAborted
			}
			return fail(objStatus(err), err)
		}
		return workerabi.StatusOK, nil
	}
	u.pw.Close()
	<-u.done
	inv.streams.release(h)
	if u.err != nil {
		return fail(objStatus(u.err), u.err)
	}
	e := &inv.e
	e.B = e.B[:0]
	u.enc(e)
	return workerabi.StatusOK, e.B
}

// objRespond serves OpObjRespond: u32 handle, u32 status, header. The host writes the head
// with the body's length and copies the body to the client itself: the bytes never pass
// through the guest's memory.
func (inv *invocation) objRespond(d *workerabi.Decoder) (uint32, []byte) {
	h := d.U32()
	if inv.sink == nil {
		return fail(workerabi.StatusUnavailable, errors.New("no response in this invocation"))
	}
	if inv.started || inv.ended {
		return fail(workerabi.StatusInvalid, errors.New("response head already sent"))
	}
	body, _ := inv.streams.get(h).(*objBody)
	if body == nil {
		return fail(workerabi.StatusInvalid, fmt.Errorf("no object body with handle %d", h))
	}
	defer inv.streams.release(h)
	if err := inv.decodeHead(d); err != nil {
		return fail(workerabi.StatusInvalid, err)
	}
	inv.resp.ContentLength = body.left
	if !bodyAllowed(inv.resp.Status, false) {
		inv.resp.ContentLength = 0
	}
	if st, res := inv.writeHead(); st != workerabi.StatusOK {
		return st, res
	}
	if bodyAllowed(inv.status, inv.isHead) {
		buf := respondPool.Get().(*[]byte)
		defer respondPool.Put(buf)
		for body.left > 0 {
			n, err := body.Read(*buf)
			if n > 0 {
				if st, res := inv.writeBody((*buf)[:n]); st != workerabi.StatusOK {
					return st, res
				}
			}
			if err != nil && err != io.EOF {
				return fail(workerabi.StatusInternal, fmt.Errorf("reading object: %w", err))
			}
			if err == io.EOF {
				break
			}
		}
	}
	inv.ended = true
	if err := inv.sink.Finish(nil); err != nil {
		return fail(workerabi.StatusInternal, fmt.Errorf("finishing response: %w", err))
	}
	return workerabi.StatusOK, nil
}

// respondPool holds the copy buffers of OpObjRespond.
var respondPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
