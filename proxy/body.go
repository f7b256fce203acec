package proxy

import (
	"errors"
	"io"

	"github.com/verge-edge/verge/fault"
)

var (
	errNoResponse = errors.New("request phase reported the request handled but sent no response")
	errNoPeer     = errors.New("upstream peer phase returned no peer")
)

// bodyReader streams the downstream request body upstream through the RequestBody phase.
type bodyReader struct {
	s       *Session
	filter  requestFilter
	pending []byte // filter output not yet handed to the reader
	started bool   // a byte was read from the client: the request can no longer be retried
	eos     bool
}

type requestFilter interface {
	run(s *Session, chunk []byte, eos bool) ([]byte, error)
}

// phaseFilter adapts a Phases value's RequestBody to a function without a type parameter.
type phaseFilter[C any] struct {
	ph Phases[C]
	c  *C
}

func (f *phaseFilter[C]) run(s *Session, chunk []byte, eos bool) ([]byte, error) {
	return f.ph.RequestBody(s, chunk, eos, f.c)
}

func (b *bodyReader) init(s *Session, filter requestFilter) {
	*b = bodyReader{s: s, filter: filter}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if len(b.pending) > 0 {
		n := copy(p, b.pending)
		b.pending = b.pending[n:]
		return n, nil
	}
	if b.eos {
		return 0, io.EOF
	}
	d := b.s.Req
	n, err := d.Body.Read(p)
	if n > 0 {
		b.started = true
		b.s.BytesReceived += int64(n)
	}
	eos := err == io.EOF
	if err != nil && !eos {
		return 0, fault.Classify(fault.Downstream, err)
	}
	if eos {
		b.eos = true
		if d.Trailer.Len() > 0 {
			b.s.upReq.Trailer.CopyFrom(&d.Trailer)
		}
	}
	out, ferr := b.filter.run(b.s, p[:n], eos)
	if ferr != nil {
		return 0, ferr
	}
	if len(out) > 0 && (len(out) > len(p) || &out[0] != &p[0]) {
		c := copy(p, out)
		if c < len(out) {
			b.pending = out[c:]
		}
		return c, nil
	}
	if len(out) == 0 && eos {
		return 0, io.EOF
	}
	return len(out), nil
}
