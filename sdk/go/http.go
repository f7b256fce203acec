package sdk

import (
	"encoding/binary"
	"errors"
	"github.com/verge-edge/verge/internal/workerabi"
	"io"
	"net/url"
	"strings"
)

// Field is one header field.
type Field struct {
	Name  string
	Value string
}

// Header is an ordered list of header fields; lookups ignore the case of names. The zero
// value is an empty header.
type Header struct {
	fields []Field
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// Get returns the first value of name, or "".
func (h *Header) Get(name string) string {
	for _, f := range h.fields {
		if equalFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns every value of name in order.
func (h *Header) Values(name string) []string {
	var vs []string
	for _, f := range h.fields {
		if equalFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Add appends a field.
func (h *Header) Add(name, value string) { h.fields = append(h.fields, Field{name, value}) }

// Set replaces every field of name with one field.
func (h *Header) Set(name, value string) {
	h.Del(name)
	h.Add(name, value)
}

// Del removes every field of name.
func (h *Header) Del(name string) {
	j := 0
	for _, f := range h.fields {
		if !equalFold(f.Name, name) {
			h.fields[j] = f
			j++
		}
	}
	h.fields = h.fields[:j]
}

// Fields returns the fields in order; the slice aliases the header.
func (h *Header) Fields() []Field { return h.fields }

// Request is an incoming request (in a handler or a Durable Object) or an outgoing one (for
// Fetch and Durable Object stubs). An incoming Request and its Body are valid only until the
// handler returns: the SDK reuses them for the next request.
type Request struct {
	// Method is the HTTP method. Empty means GET for outgoing requests.
	Method string
	// RawURL is the absolute request URL (scheme, host, path and query).
	RawURL string
	// Header holds the request header fields.
	Header Header
	// Body is the request body. On incoming requests it streams from the host and is never
	// nil; on outgoing requests nil means no body.
	Body io.Reader
	// RemoteAddr is the client's IP address on incoming requests.
	RemoteAddr string

	url *url.URL
}

// URL returns RawURL parsed (once; later changes to RawURL are not seen). It returns an empty
// URL when RawURL does not parse.
func (r *Request) URL() *url.URL {
	if r.url == nil {
		u, err := url.Parse(r.RawURL)
		if err != nil {
			u = &url.URL{}
		}
		r.url = u
	}
	return r.url
}

// Path returns the URL's path in its escaped form, without parsing the whole URL.
func (r *Request) Path() string {
	s := r.RawURL
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
		j := strings.IndexByte(s, '/')
		if j < 0 {
			return "/"
		}
		s = s[j:]
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "/"
	}
	return s
}

// NewRequest returns an outgoing request for Fetch or a Durable Object stub.
func NewRequest(method, rawURL string, body io.Reader) (*Request, error) {
	if _, err := url.Parse(rawURL); err != nil {
		return nil, err
	}
	return &Request{Method: method, RawURL: rawURL, Body: body}, nil
}

// Response is the answer to an outgoing request.
type Response struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Header holds the response header fields.
	Header Header
	// Body streams the response body: a small body of known length arrived with the
	// response, a larger or open-ended one is read from the host as the worker reads it, so
	// a body of any size passes through in bounded memory (io.Copy(w, resp.Body) streams it
	// on to the client). It is never nil for responses of Fetch and ObjectID.Fetch. Read it
	// to io.EOF or Close it: an invocation holds at most 16 bodies open (see
	// docs/workers.md, "Streaming"); the host closes the rest when the invocation ends.
	Body io.ReadCloser
}

// ResponseWriter builds the response to an incoming request, like net/http's.
type ResponseWriter interface {
	// Header returns the header fields sent by WriteHeader; changes after it have no effect.
	Header() *Header
	// WriteHeader sends the status and header. Without a call, the first Write sends 200.
	WriteHeader(status int)
	// Write sends body bytes.
	Write(p []byte) (int, error)
}

// bodyFlush is the size at which buffered response bytes are handed to the host.
const bodyFlush = 32 << 10

type responseWriter struct {
	header  Header
	status  int
	sent    bool // head passed to the host
	buf     []byte
	ended   bool
	discard bool  // HEAD request or status without body; bytes dropped by the host anyway
	err     error // a failed Flush, returned by the next Write
}

func (w *responseWriter) Header() *Header { return &w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	if status < 100 || status > 999 {
		status = 500
	}
	w.status = status
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.ended {
		return 0, errors.New("verge sdk: write after the response ended")
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.status == 0 {
		w.status = 200
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= bodyFlush {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *responseWriter) encodeHead(e *workerabi.Encoder) {
	e.U32(uint32(w.status))
	encodeHeader(e, w.header)
}

func (w *responseWriter) flush() error {
	e := workerabi.Encoder{B: scratch.B[:0]}
	defer func() { scratch.B = e.B }()
	if !w.sent {
		w.sent = true
		w.encodeHead(&e)
		if _, err := rawCall(workerabi.OpRespHead, e.B); err != nil {
			return err
		}
		e.B = e.B[:0]
	}
	_, err := rawCall(workerabi.OpRespBody, w.buf)
	w.buf = w.buf[:0]
	return err
}

// end hands the rest of the response to the host, which releases it to the client.
func (w *responseWriter) end() error {
	if w.ended {
		return nil
	}
	w.ended = true
	if w.status == 0 {
		w.status = 200
	}
	e := workerabi.Encoder{B: scratch.B[:0]}
	if w.sent {
		e.U8(0)
	} else {
		w.sent = true
		e.U8(1)
		w.encodeHead(&e)
	}
	e.Bytes(w.buf)
	_, err := rawCall(workerabi.OpRespEnd, e.B)
	scratch.B = e.B
	return err
}

// scratch is the encoding buffer reused by the response path (one request runs at a time).
var scratch workerabi.Encoder

// hostBody streams the incoming request body from the host.
type hostBody struct{ eof bool }

func (b *hostBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	var arg [4]byte
	binary.LittleEndian.PutUint32(arg[:], uint32(min(len(p), 1<<20)))
	res, err := rawCall(workerabi.OpReqBody, arg[:])
	if err != nil {
		return 0, err
	}
	if len(res) == 0 {
		b.eof = true
		return 0, io.EOF
	}
	return copy(p, res), nil
}

// Reused per request: one request runs at a time in an instance.
var (
	curReq  Request
	curBody hostBody
	curW    responseWriter
)

// readRequest decodes the head of the current incoming request into curReq. The strings are
// substrings of one copy of the head, and the header slice is reused.
func readRequest(r *Request, body *hostBody) (*Request, error) {
	res, err := rawCall(workerabi.OpReqHead, nil)
	if err != nil {
		return nil, err
	}
	head := string(res)
	d := workerabi.Decoder{B: res}
	sub := func() string {
		// Raw aliases res, so the string's offset in head is what has been read minus it.
		v := d.Raw()
		end := len(res) - len(d.B)
		return head[end-len(v) : end]
	}
	fields := r.Header.fields[:0]
	*r = Request{}
	r.Method = sub()
	r.RawURL = sub()
	r.RemoteAddr = sub()
	for n := d.Count(8); n > 0; n-- {
		name := sub()
		fields = append(fields, Field{Name: name, Value: sub()})
	}
	if d.Err != nil {
		return nil, d.Err
	}
	r.Header.fields = fields
	*body = hostBody{}
	r.Body = body
	return r, nil
}

func serveRequest(h Handler) error {
	// The top-level invocation reuses the package's request state; one nested in a
	// waiting one (interleave.go) gets its own, leaving the waiting one's intact.
	r, body, w := &curReq, &curBody, &curW
	if depth > 1 {
		r, body, w = new(Request), new(hostBody), new(responseWriter)
	}
	r, err := readRequest(r, body)
	if err != nil {
		return err
	}
	buf, hdr := w.buf[:0], w.header.fields[:0]
	*w = responseWriter{buf: buf, header: Header{fields: hdr}}
	h.ServeHTTP(w, r)
	err = w.end()
	if cap(w.buf) > 1<<20 {
		w.buf = nil
	}
	return err
}

// encodeRequest writes an outgoing request: head (method, url, "", header) and body.
func encodeRequest(e *workerabi.Encoder, r *Request) error {
	if err := encodeRequestHead(e, r); err != nil {
		return err
	}
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return err
		}
	}
	e.Bytes(body)
	return nil
}

// sendRequest encodes r after what e holds and calls the host with it: with bodyOp (the
// request's head alone) when r passes the incoming request's body on (passesBody) and the
// host knows bodyOp, with op (the body read whole) otherwise. before, when not nil, runs
// before each call. It returns the streamed response (decodeStreamResponse).
func sendRequest(e *workerabi.Encoder, r *Request, bodyOp, op uint32, before func()) (*Response, error) {
	prefix := len(e.B)
	if passesBody(r) {
		if err := encodeRequestHead(e, r); err != nil {
			return nil, err
		}
		if before != nil {
			before()
		}
		res, err := rawCall(bodyOp, e.B)
		if err == nil {
			passedBody(r)
			return decodeStreamResponse(res)
		}
		if !unknownOp(err) {
			return nil, err
		}
		e.B = e.B[:prefix]
	}
	if err := encodeRequest(e, r); err != nil {
		return nil, err
	}
	if before != nil {
		before()
	}
	res, err := rawCall(op, e.B)
	if err != nil {
		return nil, err
	}
	return decodeStreamResponse(res)
}

// passesBody reports whether r's body is the rest of the incoming request's, as the SDK
// reads it from the host (Request.Body of the request being handled, or that reader given
// to a new request) and not read to its end: the host can then pass it on itself, streamed
// (workerabi.OpDOFetchBody, workerabi.OpContainerFetchBody), without copying it through the
// guest's memory.
func passesBody(r *Request) bool {
	b, ok := r.Body.(*hostBody)
	return ok && !b.eof
}

// passedBody records that r's body was passed on by the host (passesBody): reading it
// returns io.EOF (as the host would answer) without asking.
func passedBody(r *Request) {
	if b, ok := r.Body.(*hostBody); ok {
		b.eof = true
	}
}

// unknownOp reports whether err is the answer of a host that does not know the operation
// (an older Verge): the call did nothing.
func unknownOp(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Code == ErrUnavailable && strings.HasPrefix(e.Message, "unknown host operation")
}

// encodeRequestHead writes an outgoing request's head (method, url, "", header).
func encodeRequestHead(e *workerabi.Encoder, r *Request) error {
	m := r.Method
	if m == "" {
		m = "GET"
	}
	if r.RawURL == "" {
		return errors.New("verge sdk: request without URL")
	}
	e.Str(m)
	e.Str(r.RawURL)
	e.Str("")
	encodeHeader(e, r.Header)
	return nil
}

// Fetch sends r to its URL through the host's upstream transport (connection pooling, TLS)
// and returns the response once its head arrived; its Body streams the rest (see
// Response.Body). Each call counts against the worker's subrequest limit.
// Loopback, private and other non-public addresses, and the host's own listeners, are
// refused (ErrUnavailable) unless the worker's fetch.allow opens them; redirects are
// returned, not followed.
func Fetch(r *Request) (*Response, error) {
	var e workerabi.Encoder
	if err := encodeRequest(&e, r); err != nil {
		return nil, err
	}
	mayInterleave()
	res, err := rawCall(workerabi.OpFetchStream, e.B)
	if err != nil {
		return nil, err
	}
	return decodeStreamResponse(res)
}

// ErrorResponse writes a plain-text error response, like net/http's Error.
func ErrorResponse(w ResponseWriter, msg string, status int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}
