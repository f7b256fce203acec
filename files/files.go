// Package files serves static files from a directory, as the route action `files`: byte
// ranges (single and multipart), conditional requests, NGINX-style ETags, Last-Modified,
// Content-Type by extension, directory listings, a single-page-application fallback and
// precompressed variants (file.br, file.zst, file.gz).
//
// Every open goes through an os.Root, so no name, symlink or race can reach a file outside
// the root; on top of that, request paths with "..", NUL, backslashes or malformed escapes
// are refused before any lookup, and dotfiles are not served unless asked for (docs/files.md).
//
// On a plain-text HTTP/1.1 connection the file body goes to the socket with sendfile(2):
// the exchange implements io.ReaderFrom (http1.Exchange.ReadFrom) and the handler hands it
// the *os.File. Elsewhere (TLS, HTTP/2, HTTP/3, compressed or multipart bodies) it streams
// through a pooled 32 KiB buffer.
package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/verge-edge/verge/compression"
	"github.com/verge-edge/verge/message"
)

// Config configures a Handler. The zero value of each optional field is its default.
type Config struct {
	// Root is the directory served. Required.
	Root string
	// Index lists the files tried, in order, for a request naming a directory. Nil means
	// [index.html]; empty (non-nil) means none.
	Index []string
	// Browse lists a directory without an index file as an HTML page. Default false: 403.
	Browse bool
	// SPAFallback, when set (e.g. "/index.html"), is served with status 200 for GET and HEAD
	// requests whose path names nothing and whose last segment has no "." (an application
	// route such as /users/42, not a missing asset such as /app.js, which stays 404).
	SPAFallback string
	// Precompressed lists the codings whose precompressed variants (name + ".zst", ".br",
	// ".gz") are served, in order of preference, to clients that accept them.
	Precompressed []compression.Algorithm
	// Hidden serves names starting with "." as well. Default false: they are answered 404
	// (".well-known" is always served).
	Hidden bool
	// Compress, when set, compresses responses on the fly (files without a precompressed
	// variant, directory listings) as the policy says. Range responses are never compressed.
	Compress *compression.Policy
}

// Handler serves one Config. It is safe for concurrent use; Close releases the root.
type Handler struct {
	cfg      Config
	root     *os.Root
	fallback string // SPAFallback relative to the root; "" when none
	realRoot string // the root with symlinks resolved, for reachedHidden; "" when unchecked
}

// New opens cfg.Root and returns its handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Root == "" {
		return nil, errors.New("files: root is required")
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	if cfg.Index == nil {
		cfg.Index = []string{"index.html"}
	}
	h := &Handler{cfg: cfg, root: root}
	if !cfg.Hidden {
		h.realRoot = realRootOf(cfg.Root)
	}
	if cfg.SPAFallback != "" {
		rel, _, status := cleanPath(cfg.SPAFallback, true)
		if status != 0 || rel == "." {
			root.Close()
			return nil, fmt.Errorf("files: spa_fallback %q is not a file path under the root", cfg.SPAFallback)
		}
		h.fallback = rel
	}
	return h, nil
}

// Close releases the root directory.
func (h *Handler) Close() error { return h.root.Close() }

// Result is what Serve sent.
type Result struct {
	// Status is the response status.
	Status int
	// BytesSent counts the body bytes written (encoded ones when compressed).
	BytesSent int64
}

// Head changes a response head before it is sent: the route's response_headers.
type Head func(resp *message.Response)

var respPool = sync.Pool{New: func() any { return new(message.Response) }}

// Serve answers req on ex with the file its path names. head, when non-nil, may change every
// response head (errors included) before it is sent. The error is the one writing to ex
// returned; the response was then cut short.
func (h *Handler) Serve(ex message.ServerExchange, req *message.Request, head Head) (Result, error) {
	resp := respPool.Get().(*message.Response)
	defer func() { resp.Reset(); respPool.Put(resp) }()
	resp.Proto = req.Proto
	w := &writer{h: h, ex: ex, req: req, resp: resp, head: head}
	if req.Method != "GET" && req.Method != "HEAD" {
		return w.plain(405, "405 Method Not Allowed: static files answer GET and HEAD\n", "Allow", "GET, HEAD")
	}
	rel, slash, status := cleanPath(req.Path(), h.cfg.Hidden)
	if status != 0 {
		return w.fail(status)
	}
	f, err := h.open(rel)
	if err != nil {
		return w.notFound(rel, err)
	}
	defer func() { f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return w.fail(500)
	}
	if info.IsDir() {
		if !slash {
			return w.redirectSlash()
		}
		for _, name := range h.cfg.Index {
			ip := name
			if rel != "." {
				ip = rel + "/" + name
			}
			idx, err := h.open(ip)
			if err != nil {
				continue
			}
			ii, err := idx.Stat()
			if err != nil || !ii.Mode().IsRegular() {
				idx.Close()
				continue
			}
			f.Close()
			f, info, rel = idx, ii, ip
			return w.file(f, info, rel)
		}
		if h.cfg.Browse {
			return w.listing(f, rel)
		}
		return w.fail(403)
	}
	if !info.Mode().IsRegular() {
		return w.fail(404)
	}
	return w.file(f, info, rel)
}

// notFound answers a failed open: the SPA fallback for an application route, 403 for a
// permission error, 404 otherwise (including a symlink leading out of the root).
func (w *writer) notFound(rel string, err error) (Result, error) {
	if errors.Is(err, fs.ErrPermission) {
		return w.fail(403)
	}
	h := w.h
	if h.fallback != "" && errors.Is(err, fs.ErrNotExist) && !lastSegmentHasDot(rel) {
		f, err := h.open(h.fallback)
		if err == nil {
			defer f.Close()
			if info, err := f.Stat(); err == nil && info.Mode().IsRegular() {
				return w.file(f, info, h.fallback)
			}
		}
	}
	return w.fail(404)
}

// writer is one response in the making.
type writer struct {
	h    *Handler
	ex   message.ServerExchange
	req  *message.Request
	resp *message.Response
	head Head
	sent int64
	cx   compression.Exchange
	// identity sends the response past the compressor (a 304 whose validators are set).
	identity bool
}

var errorText = map[int]string{
	400: "400 Bad Request: invalid path\n",
	403: "403 Forbidden\n",
	404: "404 Not Found\n",
	412: "412 Precondition Failed\n",
	500: "500 Internal Server Error\n",
}

func (w *writer) fail(status int) (Result, error) {
	return w.plain(status, errorText[status], "", "")
}

// plain sends a short text response, with one extra field when name is not empty.
func (w *writer) plain(status int, body, name, value string) (Result, error) {
	r := w.resp
	r.Status = status
	r.Header.Add("Content-Type", "text/plain; charset=utf-8")
	if name != "" {
		r.Header.Add(name, value)
	}
	r.ContentLength = int64(len(body))
	return w.send([]byte(body))
}

// redirectSlash sends a directory's request to its name with a trailing slash, as NGINX
// does. The Location is an absolute path built from the request's own path, so it cannot
// become a protocol-relative URL ("//host").
func (w *writer) redirectSlash() (Result, error) {
	p := w.req.Path()
	loc := "/" + strings.TrimLeft(p, "/") + "/"
	if q := w.req.RawQuery(); q != "" {
		loc += "?" + q
	}
	r := w.resp
	r.Status = 301
	r.Header.Add("Location", loc)
	r.Header.Add("Content-Type", "text/plain; charset=utf-8")
	body := "301 Moved Permanently\n"
	r.ContentLength = int64(len(body))
	return w.send([]byte(body))
}

// writeHead applies the route's head changes and compression, and sends the head.
func (w *writer) writeHead() error {
	if w.head != nil {
		w.head(w.resp)
	}
	if p := w.h.cfg.Compress; p != nil && !w.identity {
		w.cx.ServerExchange, w.cx.Policy = w.ex, p
		w.ex = &w.cx
	}
	return w.ex.WriteHeader(w.resp)
}

// send writes the head and a small body held in memory, then finishes.
func (w *writer) send(body []byte) (Result, error) {
	defer w.release()
	if err := w.writeHead(); err != nil {
		return w.result(), err
	}
	if w.req.Method != "HEAD" && len(body) > 0 {
		if err := w.write(body); err != nil {
			return w.result(), err
		}
	}
	err := w.ex.Finish(nil)
	return w.result(), err
}

func (w *writer) write(p []byte) error {
	n, err := w.ex.Write(p)
	w.sent += int64(n)
	return err
}

func (w *writer) result() Result {
	sent := w.sent
	if w.ex == &w.cx {
		sent = w.cx.BytesWritten()
	}
	return Result{Status: w.resp.Status, BytesSent: sent}
}

func (w *writer) release() {
	if w.ex == &w.cx {
		w.cx.Release()
	}
}

// smallFile is the size up to which a body is read into a pooled buffer and written with
// the head in one system call, rather than sent with sendfile after it in two.
const smallFile = 32 << 10

// copyFile sends n bytes of f from off: through the exchange's ReadFrom (sendfile on plain
// HTTP/1.1) when it has one, the body is larger than smallFile and not compressed; else
// through a pooled buffer with pread, which leaves the file offset alone.
func (w *writer) copyFile(f *os.File, off, n int64) error {
	if rf, ok := w.ex.(io.ReaderFrom); ok && n > smallFile {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
		m, err := rf.ReadFrom(&io.LimitedReader{R: f, N: n})
		w.sent += m
		if err == nil && m < n {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	bp := bufPool.Get().(*[smallFile]byte)
	defer bufPool.Put(bp)
	buf := bp[:]
	for n > 0 {
		k, err := f.ReadAt(buf[:min(int64(len(buf)), n)], off)
		if k > 0 {
			if werr := w.write(buf[:k]); werr != nil {
				return werr
			}
			n -= int64(k)
			off += int64(k)
		}
		if err != nil {
			if err == io.EOF && n > 0 {
				return io.ErrUnexpectedEOF // the file shrank while being sent
			}
			if err != io.EOF {
				return err
			}
			break
		}
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { return new([smallFile]byte) }}

// openFlags open files without blocking: a FIFO planted under the root cannot hang a
// request, and os skips its poller registration dance (four fcntl calls per open) for a
// descriptor that is already non-blocking. Reads of regular files ignore the flag.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK

// open opens name under the root. Unless Hidden, a name that symlinks lead to a dotfile or
// into a dot directory is not found.
func (h *Handler) open(name string) (*os.File, error) {
	f, err := h.root.OpenFile(name, openFlags, 0)
	if err == nil && h.realRoot != "" && h.reachedHidden(f) {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, err
}
