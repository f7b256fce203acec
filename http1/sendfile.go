package http1

import (
	"io"
	"os"
)

// sendfileChunk is the most a single kernel copy sends before the write deadline is armed
// again: a slow client gets the connection's write timeout per MiB, not for the whole file.
const sendfileChunk = 1 << 20

// ReadFrom writes the response body from r until io.EOF. When the response has a
// Content-Length, the connection is the TCP socket itself (not TLS) and r is an *os.File or
// an *io.LimitedReader of one, the buffered head is flushed and the kernel copies the file
// to the socket (sendfile(2)), at most 1 MiB at a time, each under the connection's write
// timeout. Otherwise the bytes go through Write via a pooled buffer. It implements
// io.ReaderFrom, which the static file server looks for.
func (ex *Exchange) ReadFrom(r io.Reader) (int64, error) {
	f, limit := fileSource(r)
	w := &ex.c.out
	rf, direct := w.conn.(io.ReaderFrom)
	if f == nil || !direct || ex.respMode != bodyLength || ex.discardBody || !ex.headWritten ||
		ex.finished || ex.aborted || ex.upgraded {
		return ex.copyBuffered(r)
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	var total int64
	for limit > 0 && ex.respRemaining > 0 {
		n := min(limit, ex.respRemaining, sendfileChunk)
		if w.perWrite > 0 {
			w.wdl.arm(w.conn, true, w.perWrite)
		}
		lr := &io.LimitedReader{R: f, N: n}
		m, err := rf.ReadFrom(lr)
		total += m
		limit -= m
		ex.respRemaining -= m
		if err != nil {
			w.err = err
			return total, err
		}
		if m < n {
			break // the file ended early: Finish reports the short body
		}
	}
	if limit > 0 && ex.respRemaining == 0 {
		// More file than the announced length: the same error Write gives.
		return total, ErrContentLength
	}
	return total, nil
}

// fileSource finds the file behind r and how many bytes of it r yields (-1: to its end).
func fileSource(r io.Reader) (*os.File, int64) {
	switch v := r.(type) {
	case *os.File:
		return v, 1<<63 - 1
	case *io.LimitedReader:
		if f, ok := v.R.(*os.File); ok {
			return f, v.N
		}
	}
	return nil, 0
}

// writerOnly hides Exchange's ReadFrom from io.CopyBuffer.
type writerOnly struct{ ex *Exchange }

func (w writerOnly) Write(p []byte) (int, error) { return w.ex.Write(p) }

func (ex *Exchange) copyBuffered(r io.Reader) (int64, error) {
	buf := copyBufPool.Get().(*[32 << 10]byte)
	defer copyBufPool.Put(buf)
	return io.CopyBuffer(writerOnly{ex}, r, buf[:])
}
