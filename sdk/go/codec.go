package sdk

import "github.com/verge-edge/verge/internal/workerabi"

// The wire format itself (integers, byte strings, counts) is package workerabi, shared with
// the host; this file adds the SDK's own types on top of it.

// encodeHeader appends a count and the name/value pairs of h.
func encodeHeader(e *workerabi.Encoder, h Header) {
	e.U32(uint32(len(h.fields)))
	for _, f := range h.fields {
		e.Str(f.Name)
		e.Str(f.Value)
	}
}

// decodeHeader reads a header written by encodeHeader; each pair takes at least 8 bytes, so
// a hostile count cannot make it allocate.
func decodeHeader(d *workerabi.Decoder) Header {
	n := d.Count(8)
	if d.Err != nil {
		return Header{}
	}
	h := Header{fields: make([]Field, 0, n)}
	for range n {
		name := d.Str()
		h.fields = append(h.fields, Field{Name: name, Value: d.Str()})
	}
	return h
}

// cloneBytes returns a copy of the next byte string, nil when it is empty.
func cloneBytes(d *workerabi.Decoder) []byte { return append([]byte(nil), d.Raw()...) }
