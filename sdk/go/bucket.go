package sdk

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// ObjectBucket is an object storage bucket bound to the worker, as returned by Bucket: a
// store of objects of any size, each with HTTP metadata, custom metadata and an ETag, in
// the manner of Cloudflare R2 (docs/workers.md, "Object storage").
type ObjectBucket struct{ name string }

// Bucket returns the bucket bound to the worker under name. Operations on a name the
// worker's configuration does not bind fail with ErrUnavailable.
func Bucket(name string) *ObjectBucket { return &ObjectBucket{name: name} }

// HTTPMetadata are the header fields stored with an object and sent with it by
// WriteObject.
type HTTPMetadata struct {
	ContentType        string
	ContentLanguage    string
	ContentDisposition string
	ContentEncoding    string
	CacheControl       string
	Expires            string
}

// Object is an object's metadata and, from Get, the outcome of the read and its body.
type Object struct {
	Key  string
	Size int64
	// ETag is the entity tag without quotes; HTTPETag is it quoted, as header fields
	// carry it.
	ETag     string
	HTTPETag string
	// Uploaded is when the object was written.
	Uploaded       time.Time
	HTTPMetadata   HTTPMetadata
	CustomMetadata map[string]string
	// MD5 and SHA256 are the body's digests in hex when the store knows them (a put
	// records both, a multipart upload neither).
	MD5, SHA256 string

	// Status is what a Get's preconditions and range make of the read, as an HTTP status:
	// 200 (the whole body), 206 (a range: Offset and Length), 304 (not modified: If-None-
	// Match or If-Modified-Since), 412 (If-Match or If-Unmodified-Since failed) or 416 (the
	// range header is not satisfiable). Head and Put leave it 0.
	Status int
	// Offset and Length are the bytes of the body that Body reads.
	Offset, Length int64
	// Body streams the selected bytes for 200 and 206: a small body arrived with the
	// metadata, a larger one is read from the host as the worker reads it (or copied to the
	// client by the host, WriteObject). Read it to io.EOF or Close it (an invocation holds
	// at most 16 bodies open). Nil for other statuses and for Head.
	Body io.ReadCloser
}

// ContentRange returns the Content-Range field of a 206 or 416 Get, "" otherwise.
func (o *Object) ContentRange() string {
	switch o.Status {
	case 206:
		return "bytes " + strconv.FormatInt(o.Offset, 10) + "-" + strconv.FormatInt(o.Offset+o.Length-1, 10) + "/" + strconv.FormatInt(o.Size, 10)
	case 416:
		return "bytes */" + strconv.FormatInt(o.Size, 10)
	}
	return ""
}

func decodeObject(d *workerabi.Decoder) *Object {
	o := &Object{Key: d.Str(), Size: d.I64(), ETag: d.Str()}
	o.HTTPETag = `"` + o.ETag + `"`
	o.Uploaded = time.UnixMilli(d.I64()).UTC()
	h := &o.HTTPMetadata
	for _, p := range [...]*string{&h.ContentType, &h.ContentLanguage, &h.ContentDisposition, &h.ContentEncoding, &h.CacheControl, &h.Expires} {
		*p = d.Str()
	}
	if n := d.Count(8); n > 0 {
		o.CustomMetadata = make(map[string]string, n)
		for range n {
			k := d.Str()
			o.CustomMetadata[k] = d.Str()
		}
	}
	o.MD5, o.SHA256 = d.Str(), d.Str()
	return o
}

// Range selects part of an object: the last Suffix bytes when Suffix > 0, otherwise
// Length bytes from Offset (Length 0: to the end).
type Range struct {
	Offset, Length, Suffix int64
}

// Conditions are a read's preconditions (RFC 9110 section 13.1): entity-tag lists as header
// values ("*", or quoted tags separated by commas); zero times and empty strings are absent.
type Conditions struct {
	IfMatch, IfNoneMatch               string
	IfModifiedSince, IfUnmodifiedSince time.Time
	// IfRange makes RangeHeader apply only to the representation it names (an entity tag
	// or a date).
	IfRange string
}

// GetOptions select what Get reads.
type GetOptions struct {
	// Range reads part of the object; one beyond its end fails with ErrInvalid.
	Range *Range
	// RangeHeader is a request's Range header passed through, answered as RFC 9110 says:
	// Status 206 for a satisfiable single range, 416 for an unsatisfiable one, the whole
	// object (200) for anything else. Ignored when Range is set.
	RangeHeader string
	// OnlyIf holds the preconditions.
	OnlyIf Conditions
}

// httpTime is the HTTP date format (IMF-fixdate).
const httpTime = "Mon, 02 Jan 2006 15:04:05 GMT"

// GetOptionsFrom returns the options that answer r as an HTTP server would: its Range,
// If-Range, If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since fields (dates
// that do not parse are ignored, as RFC 9110 says). A range applies to GET only.
func GetOptionsFrom(r *Request) *GetOptions {
	o := &GetOptions{}
	if r.Method == "" || r.Method == "GET" {
		o.RangeHeader = r.Header.Get("Range")
		o.OnlyIf.IfRange = r.Header.Get("If-Range")
	}
	o.OnlyIf.IfMatch = r.Header.Get("If-Match")
	o.OnlyIf.IfNoneMatch = r.Header.Get("If-None-Match")
	if t, err := time.Parse(httpTime, r.Header.Get("If-Modified-Since")); err == nil {
		o.OnlyIf.IfModifiedSince = t
	}
	if t, err := time.Parse(httpTime, r.Header.Get("If-Unmodified-Since")); err == nil {
		o.OnlyIf.IfUnmodifiedSince = t
	}
	return o
}

// Head returns an object's metadata, nil when it does not exist.
func (b *ObjectBucket) Head(key string) (*Object, error) {
	var e workerabi.Encoder
	e.Str(b.name)
	e.Str(key)
	res, err := rawCall(workerabi.OpObjHead, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	if d.U8() == 0 {
		return nil, d.Err
	}
	o := decodeObject(&d)
	return o, d.Err
}

// Get reads an object, nil (and no error) when it does not exist. Check Status: only 200
// and 206 have a Body. Nil options read the whole object.
func (b *ObjectBucket) Get(key string, o *GetOptions) (*Object, error) {
	if o == nil {
		o = &GetOptions{}
	}
	var e workerabi.Encoder
	e.Str(b.name)
	e.Str(key)
	var r Range
	if o.Range != nil {
		r = *o.Range
	}
	e.Bool(o.Range != nil)
	e.I64(r.Offset)
	e.I64(r.Length)
	e.I64(r.Suffix)
	e.Str(o.RangeHeader)
	e.Str(o.OnlyIf.IfMatch)
	e.Str(o.OnlyIf.IfNoneMatch)
	e.I64(unixOrZero(o.OnlyIf.IfModifiedSince))
	e.I64(unixOrZero(o.OnlyIf.IfUnmodifiedSince))
	e.Str(o.OnlyIf.IfRange)
	e.Bool(false) // the body too
	res, err := rawCall(workerabi.OpObjGet, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	if d.U8() == 0 {
		return nil, d.Err
	}
	status := int(d.U32())
	obj := decodeObject(&d)
	obj.Status = status
	obj.Offset, obj.Length = d.I64(), d.I64()
	h := d.U32()
	first := cloneBytes(&d)
	if status == 200 || status == 206 {
		obj.Body = &streamBody{first: first, handle: h}
	}
	return obj, d.Err
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// PutOptions are a put's optional parts.
type PutOptions struct {
	HTTPMetadata HTTPMetadata
	// CustomMetadata is stored with the object (names and values 2 KiB at most together).
	CustomMetadata map[string]string
	// MD5 and SHA256, when set (raw digests), are checked against the body as it is stored:
	// on a mismatch the put fails with ErrInvalid and nothing is stored.
	MD5, SHA256 []byte
}

func encodePutOptions(e *workerabi.Encoder, o *PutOptions) {
	if o == nil {
		o = &PutOptions{}
	}
	h := &o.HTTPMetadata
	for _, s := range [...]string{h.ContentType, h.ContentLanguage, h.ContentDisposition, h.ContentEncoding, h.CacheControl, h.Expires} {
		e.Str(s)
	}
	e.U32(uint32(len(o.CustomMetadata)))
	for k, v := range o.CustomMetadata {
		e.Str(k)
		e.Str(v)
	}
	e.Bytes(o.MD5)
	e.Bytes(o.SHA256)
}

// putChunk is the size of the pieces a streamed put hands to the host.
const putChunk = 256 << 10

// Put stores body as key's object (up to 5 GiB; larger ones take a multipart upload) and
// returns its metadata once it is durable. The body streams: the incoming request's Body and
// the Body of a Get or Fetch are read by the host itself, other readers are handed over in
// 256 KiB pieces, so memory stays flat whatever the size. Nil body stores an empty object.
func (b *ObjectBucket) Put(key string, body io.Reader, o *PutOptions) (*Object, error) {
	var e workerabi.Encoder
	e.Str(b.name)
	e.Str(key)
	encodePutOptions(&e, o)
	res, err := putBody(workerabi.OpObjPut, &e, body)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	obj := decodeObject(&d)
	return obj, d.Err
}

// putBody completes e, an OpObjPut or OpObjUploadPart argument, with body's source, calls op
// and streams the body when needed; it returns the result of the put.
func putBody(op uint32, e *workerabi.Encoder, body io.Reader) ([]byte, error) {
	switch src := body.(type) {
	case nil:
		e.U8(workerabi.ObjSourceInline)
		e.Bytes(nil)
		return callPut(op, e.B)
	case *hostBody:
		if src == &curBody && depth <= 1 {
			e.U8(workerabi.ObjSourceRequest)
			src.eof = true
			return callPut(op, e.B)
		}
	case *streamBody:
		if len(src.first) == 0 && src.handle != 0 && src.err == nil {
			e.U8(workerabi.ObjSourceHandle)
			e.U32(src.handle)
			src.handle, src.err = 0, errors.New("verge sdk: body passed to a put")
			return callPut(op, e.B)
		}
	}
	// Whatever else: read a first piece; a body that ends within it goes inline.
	buf := make([]byte, putChunk)
	n, err := io.ReadFull(body, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		e.U8(workerabi.ObjSourceInline)
		e.Bytes(buf[:n])
		return callPut(op, e.B)
	}
	if err != nil {
		return nil, err
	}
	e.U8(workerabi.ObjSourceStream)
	res, err := rawCall(op, e.B)
	if err != nil {
		return nil, err
	}
	h := binary.LittleEndian.Uint32(res)
	var arg [4]byte
	binary.LittleEndian.PutUint32(arg[:], h)
	w := workerabi.Encoder{B: make([]byte, 0, 8+putChunk)}
	for {
		w.B = append(w.B[:0], arg[:]...)
		w.Bytes(buf[:n])
		if _, err := rawCall(workerabi.OpObjWrite, w.B); err != nil {
			return nil, err // the host released the handle
		}
		n, err = io.ReadFull(body, buf)
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			rawCall(workerabi.OpBodyClose, arg[:]) // aborts: nothing is stored
			return nil, err
		}
	}
	return rawCall(workerabi.OpObjFinish, arg[:])
}

// callPut calls a put whose body the host reads itself; the result starts with a u32 (0).
func callPut(op uint32, arg []byte) ([]byte, error) {
	res, err := rawCall(op, arg)
	if err != nil {
		return nil, err
	}
	if len(res) < 4 {
		return nil, errors.New("verge sdk: short put result")
	}
	return res[4:], nil
}

// Delete removes keys (up to 1,000); missing keys are not an error.
func (b *ObjectBucket) Delete(keys ...string) error {
	var e workerabi.Encoder
	e.Str(b.name)
	e.U32(uint32(len(keys)))
	for _, k := range keys {
		e.Str(k)
	}
	_, err := rawCall(workerabi.OpObjDelete, e.B)
	return err
}

// ObjectListOptions select a page of objects.
type ObjectListOptions struct {
	Prefix string
	// Delimiter rolls the keys that contain it after Prefix into DelimitedPrefixes (their
	// key up to the delimiter), like directories.
	Delimiter string
	// Cursor continues a listing (ObjectListResult.Cursor).
	Cursor string
	// Limit caps objects plus prefixes, 1 to 1,000. Zero means 1,000.
	Limit int
}

// ObjectListResult is one page of a listing, in key order (by bytes).
type ObjectListResult struct {
	Objects           []*Object
	DelimitedPrefixes []string
	// Truncated tells that more follow: pass Cursor to the next List.
	Truncated bool
	Cursor    string
}

// List returns a page of objects (with their metadata) and delimited prefixes.
func (b *ObjectBucket) List(o *ObjectListOptions) (*ObjectListResult, error) {
	if o == nil {
		o = &ObjectListOptions{}
	}
	var e workerabi.Encoder
	e.Str(b.name)
	e.Str(o.Prefix)
	e.Str(o.Delimiter)
	e.Str(o.Cursor)
	e.U32(uint32(o.Limit))
	res, err := rawCall(workerabi.OpObjList, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	out := &ObjectListResult{Truncated: d.U8() == 1, Cursor: d.Str()}
	n := d.Count(8)
	for range n {
		out.Objects = append(out.Objects, decodeObject(&d))
	}
	n = d.Count(4)
	for range n {
		out.DelimitedPrefixes = append(out.DelimitedPrefixes, d.Str())
	}
	return out, d.Err
}

// MultipartUpload is an upload of a large object in parts (5 MiB at least each but the
// last, up to 10,000 parts), uploaded in any order, even by different requests
// (ResumeMultipartUpload), and assembled by Complete. An upload neither completed nor
// aborted is dropped after 7 days.
type MultipartUpload struct {
	Key      string
	UploadID string
	b        *ObjectBucket
}

// UploadedPart identifies an uploaded part for Complete.
type UploadedPart struct {
	PartNumber int
	ETag       string
	Size       int64
}

// CreateMultipartUpload starts a multipart upload of key with the object's options (the
// checksums are not used).
func (b *ObjectBucket) CreateMultipartUpload(key string, o *PutOptions) (*MultipartUpload, error) {
	var e workerabi.Encoder
	e.Str(b.name)
	e.Str(key)
	encodePutOptions(&e, o)
	res, err := rawCall(workerabi.OpObjUploadCreate, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	return &MultipartUpload{Key: key, UploadID: d.Str(), b: b}, d.Err
}

// ResumeMultipartUpload returns an upload started earlier, by its key and id.
func (b *ObjectBucket) ResumeMultipartUpload(key, uploadID string) *MultipartUpload {
	return &MultipartUpload{Key: key, UploadID: uploadID, b: b}
}

func (u *MultipartUpload) head(e *workerabi.Encoder) {
	e.Str(u.b.name)
	e.Str(u.Key)
	e.Str(u.UploadID)
}

// UploadPart stores part number n (1 to 10,000) from body, streamed like Put's.
func (u *MultipartUpload) UploadPart(n int, body io.Reader) (UploadedPart, error) {
	var e workerabi.Encoder
	u.head(&e)
	e.U32(uint32(n))
	res, err := putBody(workerabi.OpObjUploadPart, &e, body)
	if err != nil {
		return UploadedPart{}, err
	}
	d := workerabi.Decoder{B: res}
	p := UploadedPart{PartNumber: int(d.U32()), ETag: d.Str(), Size: d.I64()}
	return p, d.Err
}

// Complete assembles the parts, listed in ascending order, into the object.
func (u *MultipartUpload) Complete(parts []UploadedPart) (*Object, error) {
	var e workerabi.Encoder
	u.head(&e)
	e.U32(uint32(len(parts)))
	for _, p := range parts {
		e.U32(uint32(p.PartNumber))
		e.Str(p.ETag)
	}
	res, err := rawCall(workerabi.OpObjUploadComplete, e.B)
	if err != nil {
		return nil, err
	}
	d := workerabi.Decoder{B: res}
	o := decodeObject(&d)
	return o, d.Err
}

// Abort ends the upload and drops its parts.
func (u *MultipartUpload) Abort() error {
	var e workerabi.Encoder
	u.head(&e)
	_, err := rawCall(workerabi.OpObjUploadAbort, e.B)
	return err
}

// WriteObject writes obj, a Get's result, as the response: its status (200, 206, 304, 412
// or 416), ETag, Last-Modified, Accept-Ranges, Content-Range, its HTTP metadata as fields,
// and the body with its Content-Length. Fields already set on w's header are kept. When the
// response has not started, a streamed body is copied to the client by the host, without
// passing through the worker's memory; the body is closed either way.
func WriteObject(w ResponseWriter, obj *Object) {
	h := w.Header()
	h.Set("ETag", obj.HTTPETag)
	h.Set("Last-Modified", obj.Uploaded.UTC().Format(httpTime))
	h.Set("Accept-Ranges", "bytes")
	m := &obj.HTTPMetadata
	for _, f := range [...]Field{{"Content-Type", m.ContentType}, {"Content-Language", m.ContentLanguage},
		{"Content-Disposition", m.ContentDisposition}, {"Content-Encoding", m.ContentEncoding},
		{"Cache-Control", m.CacheControl}, {"Expires", m.Expires}} {
		if f.Value != "" && h.Get(f.Name) == "" {
			h.Set(f.Name, f.Value)
		}
	}
	if cr := obj.ContentRange(); cr != "" {
		h.Set("Content-Range", cr)
	}
	status := obj.Status
	if status == 0 {
		status = 200
	}
	if obj.Body == nil {
		w.WriteHeader(status)
		return
	}
	defer obj.Body.Close()
	if rw, ok := w.(*responseWriter); ok && !rw.sent && len(rw.buf) == 0 && !rw.ended && rw.status == 0 {
		if sb, ok := obj.Body.(*streamBody); ok && len(sb.first) == 0 && sb.handle != 0 && sb.err == nil {
			rw.status = status
			e := workerabi.Encoder{B: scratch.B[:0]}
			e.U32(sb.handle)
			rw.encodeHead(&e)
			_, err := rawCall(workerabi.OpObjRespond, e.B)
			scratch.B = e.B
			sb.handle, sb.err = 0, errors.New("verge sdk: body written to the response")
			rw.sent, rw.ended = true, true
			if err != nil {
				rw.err = err
			}
			return
		}
	}
	w.WriteHeader(status)
	io.Copy(w, obj.Body)
}

// ServeObject answers r with key's object as a file server would: GET and HEAD only (405
// otherwise), 404 when missing, and the request's range and preconditions answered as RFC
// 9110 says (206, 304, 412, 416).
func ServeObject(w ResponseWriter, r *Request, b *ObjectBucket, key string) {
	if r.Method != "GET" && r.Method != "HEAD" {
		w.Header().Set("Allow", "GET, HEAD")
		ErrorResponse(w, "method not allowed", 405)
		return
	}
	// HEAD opens the body too: its length goes out as Content-Length, its bytes do not.
	obj, err := b.Get(key, GetOptionsFrom(r))
	if err != nil {
		ErrorResponse(w, err.Error(), 500)
		return
	}
	if obj == nil {
		ErrorResponse(w, "not found", 404)
		return
	}
	WriteObject(w, obj)
}
