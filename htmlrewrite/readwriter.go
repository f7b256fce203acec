package htmlrewrite

import (
	"io"
)

// Reader returns a reader of src's document rewritten with r. Closing it closes src when
// src is an io.Closer.
func (r *Rules) Reader(src io.Reader) io.ReadCloser {
	return &reader{src: src, s: r.NewStream(), buf: make([]byte, 32<<10)}
}

type reader struct {
	src  io.Reader
	s    *Stream
	buf  []byte
	out  []byte
	off  int
	done bool
	err  error
}

func (r *reader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.done {
			return 0, r.err
		}
		r.out, r.off = r.out[:0], 0
		n, err := r.src.Read(r.buf)
		if n > 0 {
			r.out = r.s.Rewrite(r.out, r.buf[:n])
		}
		if err == io.EOF {
			r.out = r.s.End(r.out)
			r.done, r.err = true, io.EOF
		} else if err != nil {
			r.done, r.err = true, err
		}
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

func (r *reader) Close() error {
	if c, ok := r.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Writer returns a writer that rewrites the document written to it with r and writes the
// result to dst. Close ends the document (it does not close dst).
func (r *Rules) Writer(dst io.Writer) io.WriteCloser {
	return &writer{dst: dst, s: r.NewStream()}
}

type writer struct {
	dst io.Writer
	s   *Stream
	out []byte
}

func (w *writer) Write(p []byte) (int, error) {
	w.out = w.s.Rewrite(w.out[:0], p)
	if len(w.out) > 0 {
		if _, err := w.dst.Write(w.out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *writer) Close() error {
	w.out = w.s.End(w.out[:0])
	if len(w.out) > 0 {
		_, err := w.dst.Write(w.out)
		return err
	}
	return nil
}
