package compression

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/verge-edge/verge/message"
)

// codecWriter is what the three libraries' streaming encoders have in common.
type codecWriter interface {
	io.WriteCloser
	Flush() error
	Reset(w io.Writer)
}

// sink collects an encoder's output between two Body calls.
type sink struct{ b []byte }

func (s *sink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

// codec is one pooled encoder and its output buffer.
type codec struct {
	w   codecWriter
	out sink
	in  int64 // bytes given to w in the current stream
}

// maxPooledOutput is the largest output buffer kept when a codec returns to its pool.
const maxPooledOutput = 256 << 10

// zstdWindow bounds the zstd window, and with it each pooled encoder's memory; decoders
// accept up to 8 MiB for HTTP (RFC 8878 section 3.1.1.1.2).
const zstdWindow = 1 << 20

// brotliLGWin is brotli's window, 2^19 = 512 KiB, instead of the library's 4 MiB (lgwin 22):
// an encoder's buffers grow with the window, to about 6 MiB at 512 KiB (level 5, after a
// response past the window; about 3 MiB before) against about 29 MiB at 4 MiB. Matches
// further back than 512 KiB save little on web responses.
const brotliLGWin = 19

// maxPooledInput is the largest response (uncompressed bytes) after which a codec still
// returns to its pool. An encoder's buffers grow with a stream's input up to its window and
// never shrink on Reset; one whose stream went past this bound is dropped, so the pools keep
// only encoders that never served more than this in one response (a brotli one then holds about 3.4 MiB, zstd 3 MiB, gzip 1 MiB), and a
// burst of large responses leaves no memory pinned behind it.
const maxPooledInput = 256 << 10

// encoderPool keeps idle encoders of one coding and level: up to maxIdle in a list the
// garbage collector leaves alone, the rest in a sync.Pool. A sync.Pool alone is emptied by
// every other collection, and a new zstd encoder costs about 2 ms and 1.7 MB, so under load
// the collections its garbage triggers would empty the pool again: each response would pay
// for a new encoder.
type encoderPool struct {
	mu   sync.Mutex
	idle []*codec
	sync.Pool
}

// maxIdle bounds the encoders of one coding and level kept past garbage collections.
const maxIdle = 16

func (p *encoderPool) get() *codec {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c
	}
	p.mu.Unlock()
	return p.Get().(*codec)
}

func (p *encoderPool) put(c *codec) {
	p.mu.Lock()
	if len(p.idle) < maxIdle {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.Put(c)
}

var pools sync.Map // poolKey -> *encoderPool

type poolKey struct {
	alg   Algorithm
	level int
}

// poolFor returns the shared pool of encoders of alg at level (1-9).
func poolFor(alg Algorithm, level int) *encoderPool {
	k := poolKey{alg, level}
	if p, ok := pools.Load(k); ok {
		return p.(*encoderPool)
	}
	p := &encoderPool{}
	p.New = func() any { return &codec{w: newWriter(alg, level)} }
	actual, _ := pools.LoadOrStore(k, p)
	return actual.(*encoderPool)
}

// newWriter creates an encoder of alg at level 1-9 writing to io.Discard until Reset.
func newWriter(alg Algorithm, level int) codecWriter {
	switch alg {
	case Zstd:
		w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(ZstdLevel(level)),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic("compression: zstd: " + err.Error()) // the options are constant and valid
		}
		return w
	case Brotli:
		return brotli.NewWriterOptions(io.Discard, brotli.WriterOptions{Quality: level, LGWin: brotliLGWin})
	case Gzip:
		w, err := gzip.NewWriterLevel(io.Discard, level)
		if err != nil {
			panic("compression: gzip: " + err.Error()) // level is validated 1-9
		}
		return w
	}
	panic("compression: no encoder for " + alg.Token())
}

// ZstdLevel maps a level of 1 to 9 to the zstd library's speeds.
func ZstdLevel(level int) zstd.EncoderLevel {
	switch {
	case level <= 2:
		return zstd.SpeedFastest
	case level <= 5:
		return zstd.SpeedDefault
	case level <= 8:
		return zstd.SpeedBetterCompression
	}
	return zstd.SpeedBestCompression
}

// NewWriter returns a streaming encoder of alg at level (1-9) writing to w, unpooled: for
// tools and tests. Close it to end the stream.
func NewWriter(alg Algorithm, level int, w io.Writer) io.WriteCloser {
	c := newWriter(alg, level)
	c.Reset(w)
	return c
}

// Encoder compresses one response as it streams. Keep one in the per-request state: Start
// decides and prepares the head, Body compresses each chunk, Release returns the pooled
// encoder. The zero value is ready and passes bodies unchanged.
type Encoder struct {
	c    *codec
	pool *encoderPool
	alg  Algorithm
}

// Start applies p to resp, the answer to req, and reports whether its body will be
// compressed. It adds Vary: Accept-Encoding when the representation depends on the request's
// Accept-Encoding; and when it compresses, it sets Content-Encoding, removes Content-Length
// (the response is sent chunked, or in HTTP/2 and HTTP/3 data frames), Content-MD5 and
// Accept-Ranges, and makes a strong ETag weak. A HEAD gets the head its GET would get, and
// reports false: there is no body to encode. A 304 gets the Vary and ETag the 200 it stands
// for had (see NotModified). A nil p compresses nothing. When MaxActive responses are being
// compressed already, the response is sent identity (with its Vary).
func (e *Encoder) Start(p *Policy, req *message.Request, resp *message.Response) bool {
	if p == nil {
		return false
	}
	e.Release() // (a second Start must not leak the first's encoder and slot)
	if resp.Status == 304 {
		p.notModified(req, resp)
		return false
	}
	alg, vary := p.Decide(req, resp)
	if vary {
		AddVary(&resp.Header)
	}
	if alg == None {
		return false
	}
	if req.Method == "HEAD" {
		encodedHead(resp, alg)
		return false
	}
	if !acquire() {
		return false
	}
	e.alg = alg
	e.pool = p.pools[alg]
	e.c = e.pool.get()
	e.c.in = 0
	e.c.out.b = e.c.out.b[:0]
	e.c.w.Reset(&e.c.out)
	encodedHead(resp, alg)
	return true
}

// encodedHead changes a head for a body encoded with alg.
func encodedHead(resp *message.Response, alg Algorithm) {
	resp.Header.Set("Content-Encoding", alg.Token())
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	resp.Header.Del("Content-MD5")
	resp.Header.Del("Accept-Ranges")
	WeakenETag(&resp.Header)
}

// DefaultMaxActive is the default of SetMaxActive: responses compressed at the same time,
// process-wide. An active encoder holds up to about 6 MiB (brotli, 512 KiB window; zstd
// 3 MiB, gzip 1 MiB), so 128 of them stay under 800 MiB.
const DefaultMaxActive = 128

var (
	active    atomic.Int64
	maxActive atomic.Int64
)

func init() { maxActive.Store(DefaultMaxActive) }

// SetMaxActive sets how many responses may be compressed at the same time in the process
// (n <= 0 restores DefaultMaxActive). Past it, a response that would have been compressed is
// sent identity, with a strong ETag and its Vary: Accept-Encoding, so that a burst of slow
// compressed responses cannot hold an unbounded number of encoders.
func SetMaxActive(n int) {
	if n <= 0 {
		n = DefaultMaxActive
	}
	maxActive.Store(int64(n))
}

// ActiveCount counts the responses being compressed now, process-wide.
func ActiveCount() int { return int(active.Load()) }

func acquire() bool {
	if active.Add(1) > maxActive.Load() {
		active.Add(-1)
		return false
	}
	return true
}

// Active reports whether the current response is being compressed.
func (e *Encoder) Active() bool { return e.c != nil }

// Algorithm is the coding of the current response, None when it is not compressed.
func (e *Encoder) Algorithm() Algorithm { return e.alg }

// Body compresses the next chunk and returns the encoded bytes ready to send (chunk itself
// when the response is not compressed). flush asks for everything given so far to be sent,
// at some cost in ratio: set it when the source paused (a streamed response must not wait in
// the encoder); eos ends the stream. The result is valid until the next call.
func (e *Encoder) Body(chunk []byte, flush, eos bool) ([]byte, error) {
	c := e.c
	if c == nil {
		return chunk, nil
	}
	c.out.b = c.out.b[:0]
	if len(chunk) > 0 {
		c.in += int64(len(chunk))
		if _, err := c.w.Write(chunk); err != nil {
			return nil, err
		}
	}
	var err error
	switch {
	case eos:
		err = c.w.Close()
	case flush:
		err = c.w.Flush()
	}
	return c.out.b, err
}

// Release returns the encoder to its pool. Call it once the response ended; the slice Body
// returned last is then no longer valid.
func (e *Encoder) Release() {
	c := e.c
	if c == nil {
		return
	}
	e.c, e.alg = nil, None
	active.Add(-1)
	if c.in > maxPooledInput {
		return // its buffers grew with its input: let the collector have them
	}
	c.w.Reset(io.Discard)
	if cap(c.out.b) > maxPooledOutput {
		c.out.b = nil
	}
	c.out.b = c.out.b[:0]
	e.pool.put(c)
}
