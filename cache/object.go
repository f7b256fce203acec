package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/message"
)

var (
	errTooLarge   = errors.New("cache: response body exceeds the maximum object size")
	errIncomplete = errors.New("cache: response body ended before it was complete")
)

// meta is what a stored response carries besides its body: the head, when and how it was
// received, and the derived freshness facts. It is immutable once the object is published;
// a revalidation makes a new meta. It is encoded as the header of a disk file.
type meta struct {
	Key     string          `json:"key"`
	URL     string          `json:"url"`
	Primary uint64          `json:"primary"`
	Hash    uint64          `json:"hash"`
	Status  int             `json:"status"`
	Header  []message.Field `json:"header"`
	// ReqTime and RespTime are when the request that got this response was sent and the
	// response received (Unix nanoseconds): request_time and response_time of RFC 9111
	// section 4.2.3.
	ReqTime  int64 `json:"req_time"`
	RespTime int64 `json:"resp_time"`
	// Date is the Date field in Unix seconds, RespTime's when absent.
	Date int64 `json:"date"`
	// AgeValue is the Age field in seconds, 0 when absent.
	AgeValue int64 `json:"age_value"`
	// Lifetime is the freshness lifetime in nanoseconds.
	Lifetime int64 `json:"lifetime"`
	// SWR and SIE are the stale-while-revalidate and stale-if-error windows in seconds, -1
	// when absent.
	SWR int64 `json:"swr"`
	SIE int64 `json:"sie"`
	// MustRevalidate forbids serving the response stale: must-revalidate, proxy-revalidate
	// or s-maxage.
	MustRevalidate bool `json:"must_revalidate"`
	// NoCache requires a revalidation before every use.
	NoCache      bool     `json:"no_cache"`
	ETag         string   `json:"etag"`
	LastModified string   `json:"last_modified"`
	Vary         []string `json:"vary"`
	VaryKey      string   `json:"vary_key"`
	Tags         []string `json:"tags"`
	// BodyLen is the declared body length, -1 when unknown until the body is complete.
	BodyLen int64 `json:"body_len"`
	// RangeStart and RangeTotal describe a stored 206 (partial content): the offset of the
	// stored bytes in the full representation, and the full representation's length. Both
	// are zero for complete responses.
	RangeStart int64 `json:"range_start,omitempty"`
	RangeTotal int64 `json:"range_total,omitempty"`
}

// age returns the current age of the response at now (RFC 9111 section 4.2.3).
func (m *meta) age(now int64) time.Duration {
	apparent := max(0, m.RespTime-m.Date*int64(time.Second))
	corrected := m.AgeValue*int64(time.Second) + (m.RespTime - m.ReqTime)
	initial := max(apparent, corrected)
	return time.Duration(initial + (now - m.RespTime))
}

// object is a stored (or being stored) response: its meta, the head rebuilt from it, and
// its body.
type object struct {
	m   *meta
	hdr message.Header
	b   *body
	// hits counts the proxy's requests served from this copy (TopKeys).
	hits atomic.Uint64
}

func newObject(m *meta, b *body) *object {
	o := &object{m: m, b: b}
	for _, f := range m.Header {
		o.hdr.Add(f.Name, f.Value)
	}
	return o
}

// length returns the body length when known.
func (o *object) length() (int64, bool) {
	if n, done := o.b.state(); done {
		return n, true
	}
	if o.m.BodyLen >= 0 {
		return o.m.BodyLen, true
	}
	return 0, false
}

// weight is the object's memory cost, as the memory tier counts it.
func (o *object) weight() uint32 {
	n := int64(len(o.b.data)) + 256
	for _, f := range o.m.Header {
		n += int64(len(f.Name) + len(f.Value) + 32)
	}
	n += int64(len(o.m.Key) + len(o.m.URL))
	return uint32(min(n, 1<<32-1))
}

// body is a response body in memory, growing while the response streams in: readers of an
// object in progress wait for more bytes. A body loaded from disk without its bytes in
// memory has data nil and path set.
type body struct {
	mu    sync.Mutex
	data  []byte
	size  int64
	limit int64
	done  bool
	err   error
	wake  chan struct{} // closed and replaced whenever size, done or err changes

	// A body loaded from disk without its bytes in memory: its file, tier entry and
	// checksum. The body's offset in the file is read from the file when it is opened (a
	// revalidation may have rewritten the file with a head of another length).
	path  string
	crc   uint32
	disk  *diskTier
	entry *diskEntry
}

func newBody(limit int64, sizeHint int64) *body {
	b := &body{limit: limit, wake: make(chan struct{})}
	if sizeHint > 0 && sizeHint <= limit {
		b.data = make([]byte, 0, sizeHint)
	}
	return b
}

// completeBody returns a finished in-memory body.
func completeBody(data []byte) *body {
	return &body{data: data, size: int64(len(data)), limit: int64(len(data)), done: true}
}

// fileBody returns a finished body read from the disk file of e.
func fileBody(t *diskTier, e *diskEntry, size int64, crc uint32) *body {
	return &body{path: e.path, size: size, limit: size, done: true, crc: crc, disk: t, entry: e}
}

func (b *body) notify() {
	if b.wake != nil {
		close(b.wake)
		b.wake = make(chan struct{})
	}
}

// write appends p; it fails once the body would exceed its limit.
func (b *body) write(p []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if b.size+int64(len(p)) > b.limit {
		b.err = errTooLarge
		b.data = nil
		b.notify()
		return errTooLarge
	}
	b.data = append(b.data, p...)
	b.size += int64(len(p))
	b.notify()
	return nil
}

func (b *body) finish() {
	b.mu.Lock()
	b.done = true
	b.notify()
	b.mu.Unlock()
}

func (b *body) fail(err error) {
	b.mu.Lock()
	if b.err == nil && !b.done {
		b.err = err
		b.data = nil
		b.notify()
	}
	b.mu.Unlock()
}

func (b *body) state() (size int64, done bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size, b.done
}

// readAt copies bytes from offset off, waiting while the body is still being written.
func (b *body) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	for {
		b.mu.Lock()
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		if off < b.size {
			n := copy(p, b.data[off:b.size])
			b.mu.Unlock()
			return n, nil
		}
		if b.done {
			b.mu.Unlock()
			return 0, io.EOF
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// bodyReader reads an object's body from off up to end (exclusive; -1 means to the end). It
// is embedded in a transaction and reused. A read of a whole file-backed body checks the
// body's checksum before it returns the last bytes: a corrupt file ends the read with an
// error (the client sees a short body, never a wrong one) and is deleted.
type bodyReader struct {
	ctx  context.Context
	b    *body
	off  int64
	end  int64
	f    *os.File
	base int64  // offset of the body in f
	crc  uint32 // of the bytes read so far, when the read started at 0
	full bool   // the read covers the whole body, so its checksum can be checked
}

func (r *bodyReader) init(ctx context.Context, b *body, off, end int64) {
	*r = bodyReader{ctx: ctx, b: b, off: off, end: end}
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.end >= 0 {
		if r.off >= r.end {
			return 0, io.EOF
		}
		if rem := r.end - r.off; int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	// path is set only when a complete, file-backed body is made (fileBody) and never
	// changes; data may be growing under b.mu while a fill streams, so it is not looked at
	// here: a file-backed body never holds data.
	if r.b.path != "" {
		return r.readFile(p)
	}
	n, err := r.b.readAt(r.ctx, p, r.off)
	r.off += int64(n)
	return n, err
}

func (r *bodyReader) readFile(p []byte) (int, error) {
	b := r.b
	if r.f == nil {
		f, base, err := b.disk.open(b)
		if err != nil {
			if errors.Is(err, errCorrupt) {
				b.disk.removeEntry(b.entry)
			}
			return 0, err
		}
		// A file-backed body is complete and does not change, so its size can be read
		// without the lock (an in-memory body still growing can not).
		r.f, r.base = f, base
		r.full = r.off == 0 && (r.end < 0 || r.end >= b.size)
	}
	if r.off >= b.size {
		return 0, io.EOF
	}
	if rem := b.size - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := r.f.ReadAt(p, r.base+r.off)
	if err == io.EOF {
		if int64(n) < int64(len(p)) {
			err = fmt.Errorf("cache: %s: truncated: %w", b.path, errCorrupt)
			b.disk.removeEntry(b.entry)
			return 0, err
		}
		err = nil
	}
	if r.full {
		r.crc = crc32.Update(r.crc, castagnoli, p[:n])
		if r.off+int64(n) == b.size && r.crc != b.crc {
			b.disk.removeEntry(b.entry)
			return 0, fmt.Errorf("cache: %s: body checksum: %w", b.path, errCorrupt)
		}
	}
	r.off += int64(n)
	return n, err
}

// Close releases the file a disk-backed read opened.
func (r *bodyReader) Close() error {
	var err error
	if r.f != nil {
		err = r.f.Close()
	}
	*r = bodyReader{}
	return err
}
