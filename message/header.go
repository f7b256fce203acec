// Package message is Verge's protocol-neutral HTTP model: the request and response heads,
// ordered case-preserving header fields and streamed bodies shared by the HTTP/1.1, HTTP/2 and
// HTTP/3 adapters, the proxy phases and the upstream transports.
//
// Strings held by a Request or Response that a codec produced may point into buffers the codec
// reuses for the next message on the same connection. They are valid until the exchange ends;
// code that keeps one longer must copy it (strings.Clone).
package message

// Field is one header field as it appeared on the wire: the name keeps its case.
type Field struct {
	Name  string
	Value string
}

// Header is an ordered list of fields. Lookups compare names case-insensitively (ASCII), the
// order and case of names are preserved when the header is written out again. The zero value is
// an empty header ready to use.
type Header struct {
	fields []Field
}

// Len reports the number of fields.
func (h *Header) Len() int { return len(h.fields) }

// Fields returns the fields in order. The slice is owned by h: callers may modify values in
// place but must not keep it after the exchange ends.
func (h *Header) Fields() []Field { return h.fields }

// Reset removes all fields, keeping the storage for reuse.
func (h *Header) Reset() {
	clear(h.fields)
	h.fields = h.fields[:0]
}

// Add appends a field, keeping any existing fields of the same name.
func (h *Header) Add(name, value string) { h.fields = append(h.fields, Field{name, value}) }

// Get returns the value of the first field named name, or "" if there is none.
func (h *Header) Get(name string) string {
	for i := range h.fields {
		if EqualFold(h.fields[i].Name, name) {
			return h.fields[i].Value
		}
	}
	return ""
}

// Lookup is Get that also reports whether the field exists.
func (h *Header) Lookup(name string) (string, bool) {
	for i := range h.fields {
		if EqualFold(h.fields[i].Name, name) {
			return h.fields[i].Value, true
		}
	}
	return "", false
}

// Has reports whether a field named name exists.
func (h *Header) Has(name string) bool {
	_, ok := h.Lookup(name)
	return ok
}

// Count reports how many fields are named name.
func (h *Header) Count(name string) int {
	n := 0
	for i := range h.fields {
		if EqualFold(h.fields[i].Name, name) {
			n++
		}
	}
	return n
}

// Values calls fn for each value of the fields named name, in order, until fn returns false.
func (h *Header) Values(name string, fn func(value string) bool) {
	for i := range h.fields {
		if EqualFold(h.fields[i].Name, name) && !fn(h.fields[i].Value) {
			return
		}
	}
}

// Set replaces all fields named name with one field, at the position of the first one, or
// appends it when there was none.
func (h *Header) Set(name, value string) {
	for i := range h.fields {
		if EqualFold(h.fields[i].Name, name) {
			h.fields[i].Value = value
			h.delFrom(i+1, name)
			return
		}
	}
	h.Add(name, value)
}

// Del removes all fields named name.
func (h *Header) Del(name string) { h.delFrom(0, name) }

func (h *Header) delFrom(start int, name string) {
	j := start
	for i := start; i < len(h.fields); i++ {
		if !EqualFold(h.fields[i].Name, name) {
			h.fields[j] = h.fields[i]
			j++
		}
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// DeleteFunc removes the fields for which del returns true.
func (h *Header) DeleteFunc(del func(f *Field) bool) {
	j := 0
	for i := range h.fields {
		if !del(&h.fields[i]) {
			h.fields[j] = h.fields[i]
			j++
		}
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// CopyFrom replaces h's fields with src's. Strings are shared, not copied.
func (h *Header) CopyFrom(src *Header) {
	h.Reset()
	h.fields = append(h.fields, src.fields...)
}

// Clone returns a deep copy whose strings do not alias any codec buffer.
func (h *Header) Clone() Header {
	out := Header{fields: make([]Field, len(h.fields))}
	for i, f := range h.fields {
		out.fields[i] = Field{cloneString(f.Name), cloneString(f.Value)}
	}
	return out
}

// HasToken reports whether any field named name holds token in its comma-separated list,
// compared case-insensitively (RFC 9110 section 5.6.1), e.g. HasToken("Connection", "close").
func (h *Header) HasToken(name, token string) bool {
	found := false
	h.Values(name, func(v string) bool {
		found = ContainsToken(v, token)
		return !found
	})
	return found
}

// ContainsToken reports whether the comma-separated list v holds token (case-insensitive).
func ContainsToken(v, token string) bool {
	for len(v) > 0 {
		var part string
		if i := indexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, ""
		}
		if EqualFold(TrimOWS(part), token) {
			return true
		}
	}
	return false
}

// TrimOWS trims optional whitespace (SP and HTAB) at both ends.
func TrimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// EqualFold reports whether a and b are equal under ASCII case folding. It does not allocate.
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
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

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func cloneString(s string) string {
	if s == "" {
		return ""
	}
	b := make([]byte, len(s))
	copy(b, s)
	return string(b)
}

// ConnectionSpecific reports whether name is one of the fields that only describe the
// connection a message travels on: Connection, Keep-Alive, Proxy-Connection,
// Transfer-Encoding and Upgrade (RFC 9110 section 7.6.1, RFC 9113 section 8.2.2). Proxies
// drop them, HTTP/2 and HTTP/3 forbid them, and trailers must not carry them. TE is left to
// callers: "TE: trailers" is allowed where the rest is not.
func ConnectionSpecific(name string) bool {
	switch len(name) {
	case 7:
		return EqualFold(name, "Upgrade")
	case 10:
		return EqualFold(name, "Connection") || EqualFold(name, "Keep-Alive")
	case 16:
		return EqualFold(name, "Proxy-Connection")
	case 17:
		return EqualFold(name, "Transfer-Encoding")
	}
	return false
}
