package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/verge-edge/verge/internal/workerabi"
)

// Flusher is implemented by the ResponseWriter the SDK passes to handlers (and to Durable
// Objects), like net/http's Flusher: Flush sends the response head, when it has not left yet,
// and every byte written so far to the client at once. Without Flush the SDK hands written
// bytes to the host in 32 KiB pieces and the client may see them later; a handler that
// streams (server-sent events, progress, a long computation) flushes after each part:
//
//	w.Write([]byte("working...\n"))
//	w.(sdk.Flusher).Flush()
//
// A flushed response has no Content-Length (HTTP/1.1 chunked, HTTP/2 and HTTP/3 data
// frames). In a Durable Object, Flush first makes the object's storage writes so far
// durable, then releases the bytes to its caller (the output gate).
type Flusher interface {
	Flush()
}

var (
	_ Flusher       = (*responseWriter)(nil)
	_ io.ReaderFrom = (*responseWriter)(nil)
)

// Flush sends the head and the buffered bytes to the client now. An error (the client went
// away) is returned by the next Write.
func (w *responseWriter) Flush() {
	if w.ended || w.err != nil {
		return
	}
	if w.status == 0 {
		w.status = 200
	}
	e := workerabi.Encoder{B: scratch.B[:0]}
	if w.sent {
		e.U8(0)
	} else {
		e.U8(1)
		w.encodeHead(&e)
	}
	e.Bytes(w.buf)
	_, err := rawCall(workerabi.OpRespFlush, e.B)
	scratch.B = e.B
	w.sent = true
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
	}
}

// ReadFrom copies src to the response; io.Copy(w, src) uses it. A streamed body (the Body of
// a Fetch or Durable Object response still arriving) is passed on as it arrives: each part
// read is flushed to the client, so that a proxied stream is not held back. Other readers,
// and bodies that arrived whole, are written like any bytes. It reads straight into the
// writer's buffer: no allocation.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	sb, _ := src.(*streamBody)
	if sb != nil && sb.handle == 0 && sb.err == nil {
		n, err := w.Write(sb.first)
		sb.first = nil
		return int64(n), err
	}
	streamed := sb != nil
	var total int64
	for {
		if w.ended {
			return total, errors.New("verge sdk: write after the response ended")
		}
		if w.err != nil {
			return total, w.err
		}
		if w.status == 0 {
			w.status = 200
		}
		if cap(w.buf) < bodyFlush {
			w.buf = append(make([]byte, 0, bodyFlush), w.buf...)
		}
		if len(w.buf) >= bodyFlush {
			if err := w.flush(); err != nil {
				return total, err
			}
		}
		n, err := src.Read(w.buf[len(w.buf):bodyFlush])
		w.buf = w.buf[:len(w.buf)+n]
		total += int64(n)
		if streamed && n > 0 {
			w.Flush()
		}
		if err == io.EOF {
			return total, w.err
		}
		if err != nil {
			return total, err
		}
	}
}

// streamBody is the Body of a Fetch or Durable Object response: first the bytes that came
// with the response, then, while the handle is open, reads from the host.
type streamBody struct {
	first  []byte
	handle uint32 // 0: nothing more
	err    error
}

func (b *streamBody) Read(p []byte) (int, error) {
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.handle == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	var arg [8]byte
	binary.LittleEndian.PutUint32(arg[:4], b.handle)
	binary.LittleEndian.PutUint32(arg[4:], uint32(min(len(p), 1<<20)))
	n, err := rawCallInto(workerabi.OpBodyRead, arg[:], p[:min(len(p), 1<<20)])
	if err != nil {
		// The host released the handle with the failure.
		b.handle, b.err = 0, fmt.Errorf("verge sdk: reading response body: %w", err)
		return 0, b.err
	}
	if n == 0 {
		b.handle = 0 // released by the host at the end
		return 0, io.EOF
	}
	return n, nil
}

// Close releases the body; reading it to the end releases it too, and so does the end of
// the invocation.
func (b *streamBody) Close() error {
	b.first = nil
	if b.handle != 0 {
		var arg [4]byte
		binary.LittleEndian.PutUint32(arg[:], b.handle)
		b.handle = 0
		if _, err := rawCall(workerabi.OpBodyClose, arg[:]); err != nil {
			return err
		}
	}
	if b.err == nil {
		b.err = errors.New("verge sdk: read of a closed response body")
	}
	return nil
}

// maxBufferedBody bounds what the SDK itself reads of a response body into memory (for
// Response.JSON and RPC results).
const maxBufferedBody = 32 << 20

// readBody returns the whole body of resp, at most maxBufferedBody bytes, and closes it.
func readBody(resp *Response) ([]byte, error) {
	if resp.Body == nil {
		return nil, nil
	}
	defer resp.Body.Close()
	if sb, ok := resp.Body.(*streamBody); ok && sb.handle == 0 && sb.err == nil {
		b := sb.first
		sb.first = nil
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedBody+1))
	if err == nil && len(b) > maxBufferedBody {
		err = fmt.Errorf("verge sdk: response body exceeds %d bytes", maxBufferedBody)
	}
	return b, err
}

// decodeStreamResponse decodes the result of workerabi.OpFetchStream and
// workerabi.OpDOFetchStream: u32 handle, u32 status, header, bytes first.
func decodeStreamResponse(res []byte) (*Response, error) {
	d := workerabi.Decoder{B: res}
	h := d.U32()
	resp := &Response{StatusCode: int(d.U32())}
	resp.Header = decodeHeader(&d)
	resp.Body = &streamBody{first: cloneBytes(&d), handle: h}
	return resp, d.Err
}
