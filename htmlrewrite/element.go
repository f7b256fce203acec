package htmlrewrite

import (
	"bytes"
	"html"
	"strings"
)

// ContentType says how inserted content is written: Text is escaped (&, <, > and quotes
// become character references), HTML is written as it is.
type ContentType uint8

const (
	// Text content is escaped.
	Text ContentType = iota
	// HTML content is inserted as markup, unchanged.
	HTML
)

// attr is an attribute of the current tag, as offsets into the tag.
type attr struct {
	name     [2]int
	val      [2]int // {-1, -1} when the attribute has no value
	rawStart int
	rawEnd   int
}

type attrMod struct {
	name    string // lowercase
	value   string
	remove  bool
	applied bool
}

// Element is a start tag matched by a selector, passed to a Handler. Its methods change the
// tag's attributes and insert content around and inside the element; they take effect when
// the handler returns. It is valid only during the handler call.
type Element struct {
	s       *Stream
	tag     []byte
	name    string
	nameEnd int
	closed  bool // void or self-closing: no content, no end tag
	slash   bool // written self-closing ("/>")
	parsed  bool
	scratch []byte

	// setNames holds the names SetAttr checked last, with their lower case forms: handlers
	// set the same few names on element after element.
	setNames     [4][2]string
	setNext      uint8
	mods         []attrMod
	attrsChanged bool
	before       []byte
	prepend      []byte
	inner        []byte
	append       []byte
	after        []byte
	innerSet     bool
	removed      bool
}

func (e *Element) reset(s *Stream, tag []byte, name string, nameEnd int, closed, slash bool) {
	e.s, e.tag, e.name, e.nameEnd, e.closed, e.slash, e.parsed = s, tag, name, nameEnd, closed, slash, false
}

func (e *Element) clear() {
	e.tag, e.mods = nil, e.mods[:0]
	e.attrsChanged, e.innerSet, e.removed = false, false, false
	e.before, e.prepend, e.inner, e.append, e.after = e.before[:0], e.prepend[:0], e.inner[:0], e.append[:0], e.after[:0]
}

// TagName returns the element's name in lower case.
func (e *Element) TagName() string { return e.name }

// Attr returns the value of the attribute name (compared without case), with character
// references decoded, after the changes made so far by handlers.
func (e *Element) Attr(name string) (string, bool) {
	name = strings.ToLower(name)
	for i := range e.mods {
		if e.mods[i].name == name {
			return e.mods[i].value, !e.mods[i].remove
		}
	}
	v, ok := e.attrValue(name)
	return string(v), ok
}

// Attribute is a name and value of an element's attribute.
type Attribute struct {
	Name, Value string
}

// Attrs returns the element's attributes as they are in the document (names in lower
// case, values decoded).
func (e *Element) Attrs() []Attribute {
	e.parse()
	out := make([]Attribute, 0, len(e.s.attrs))
	for _, a := range e.s.attrs {
		out = append(out, Attribute{Name: strings.ToLower(string(e.tag[a.name[0]:a.name[1]])), Value: string(e.decode(a))})
	}
	return out
}

// HasAttr reports whether the element has the attribute name.
func (e *Element) HasAttr(name string) bool {
	_, ok := e.Attr(name)
	return ok
}

// SetAttr sets the attribute name to value (escaped as needed), replacing its first
// occurrence or adding it at the end. A name that is not a valid attribute name (empty, or
// holding whitespace, quotes, "/", "=", ">" or "<") is ignored.
func (e *Element) SetAttr(name, value string) {
	for i := range e.setNames {
		if c := &e.setNames[i]; c[0] == name && name != "" {
			e.mod(c[1], value, false)
			return
		}
	}
	if !validAttrName(name) {
		return
	}
	c := &e.setNames[e.setNext%uint8(len(e.setNames))]
	e.setNext++
	c[0], c[1] = name, strings.ToLower(name)
	e.mod(c[1], value, false)
}

// RemoveAttr removes the attribute name.
func (e *Element) RemoveAttr(name string) {
	e.mod(strings.ToLower(name), "", true)
}

func (e *Element) mod(name, value string, remove bool) {
	e.attrsChanged = true
	for i := range e.mods {
		if e.mods[i].name == name {
			e.mods[i].value, e.mods[i].remove = value, remove
			return
		}
	}
	e.mods = append(e.mods, attrMod{name: name, value: value, remove: remove})
}

func validAttrName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case isSpace(c), c == '"', c == '\'', c == '/', c == '=', c == '>', c == '<', c < 0x20:
			return false
		}
	}
	return true
}

func appendContent(dst []byte, content string, t ContentType) []byte {
	if t == HTML {
		return append(dst, content...)
	}
	return appendEscaped(dst, content)
}

// Before inserts content before the element's start tag.
func (e *Element) Before(content string, t ContentType) {
	e.before = appendContent(e.before, content, t)
}

// After inserts content after the element's end tag (after the start tag of a void
// element).
func (e *Element) After(content string, t ContentType) {
	e.after = appendContent(e.after, content, t)
}

// Prepend inserts content at the start of the element's content. It does nothing on void
// and self-closing elements.
func (e *Element) Prepend(content string, t ContentType) {
	if !e.closed {
		e.prepend = appendContent(e.prepend, content, t)
	}
}

// Append inserts content at the end of the element's content, before its end tag. It does
// nothing on void and self-closing elements.
func (e *Element) Append(content string, t ContentType) {
	if !e.closed {
		e.append = appendContent(e.append, content, t)
	}
}

// SetInnerContent replaces the element's content with content (Prepend and Append still
// apply around it). It does nothing on void and self-closing elements.
func (e *Element) SetInnerContent(content string, t ContentType) {
	if !e.closed {
		e.inner = appendContent(e.inner[:0], content, t)
		e.innerSet = true
	}
}

// Replace replaces the whole element, tags and content, with content.
func (e *Element) Replace(content string, t ContentType) {
	e.before = appendContent(e.before, content, t)
	e.removed = true
}

// Remove removes the element: its start tag, content and end tag. Content inserted Before
// and After it stays.
func (e *Element) Remove() { e.removed = true }

// Removed reports whether Remove or Replace was called.
func (e *Element) Removed() bool { return e.removed }

// parse finds the tag's attributes (once per element).
func (e *Element) parse() {
	if e.parsed {
		return
	}
	e.parsed = true
	t := e.tag
	as := e.s.attrs[:0]
	i := e.nameEnd
	n := len(t) - 1 // the final ">"
	for i < n {
		for i < n && (isSpace(t[i]) || t[i] == '/') {
			i++
		}
		if i >= n {
			break
		}
		a := attr{rawStart: i, val: [2]int{-1, -1}}
		a.name[0] = i
		// The first character may be "=" (an attribute named "=..."); no ">" comes before n.
		i++
		for i < n && cls[t[i]] == 0 {
			i++
		}
		a.name[1] = i
		j := i
		for j < n && isSpace(t[j]) {
			j++
		}
		if j < n && t[j] == '=' {
			j++
			for j < n && isSpace(t[j]) {
				j++
			}
			switch {
			case j < n && (t[j] == '"' || t[j] == '\''):
				q := t[j]
				k := indexByte(t[j+1:n], q)
				if k < 0 {
					k = n - j - 1
					a.val = [2]int{j + 1, j + 1 + k}
					i = n
				} else {
					a.val = [2]int{j + 1, j + 1 + k}
					i = j + k + 2
				}
			default:
				k := j
				for k < n && !isSpace(t[k]) {
					k++
				}
				a.val = [2]int{j, k}
				i = k
			}
		}
		a.rawEnd = i
		as = append(as, a)
	}
	e.s.attrs = as
}

// attrValue returns the document's value of the attribute name (lowercase), decoded; the
// slice is valid until the next call.
func (e *Element) attrValue(name string) ([]byte, bool) {
	e.parse()
	for _, a := range e.s.attrs {
		if len(name) == a.name[1]-a.name[0] && bytesEqualFold(e.tag[a.name[0]:a.name[1]], name) {
			return e.decode(a), true
		}
	}
	return nil, false
}

func (e *Element) decode(a attr) []byte {
	if a.val[0] < 0 {
		return nil
	}
	v := e.tag[a.val[0]:a.val[1]]
	if bytes.IndexByte(v, '&') >= 0 {
		e.scratch = append(e.scratch[:0], html.UnescapeString(string(v))...)
		return e.scratch
	}
	return v
}

func bytesEqualFold(b []byte, lower string) bool {
	for i := range b {
		if lowerByte(b[i]) != lower[i] {
			return false
		}
	}
	return true
}

// serialize appends the start tag with the attribute changes applied: attributes left alone
// keep their bytes.
func (e *Element) serialize(dst []byte) []byte {
	t := e.tag
	if !e.changesExisting() {
		// Only new attributes: the tag as it is, then them.
		end := len(t) - 1
		if e.slash {
			end--
		}
		dst = append(dst, t[:end]...)
		for i := range e.mods {
			if m := &e.mods[i]; !m.remove {
				dst = append(dst, ' ')
				dst = append(dst, m.name...)
				dst = appendAttrValue(dst, m.value)
			}
		}
		if e.slash {
			return append(dst, '/', '>')
		}
		return append(dst, '>')
	}
	e.parse()
	dst = append(dst, t[:e.nameEnd]...)
	for _, a := range e.s.attrs {
		var m *attrMod
		for i := range e.mods {
			if !e.mods[i].applied && len(e.mods[i].name) == a.name[1]-a.name[0] && bytesEqualFold(t[a.name[0]:a.name[1]], e.mods[i].name) {
				m = &e.mods[i]
				break
			}
		}
		if m == nil {
			dst = append(dst, ' ')
			dst = append(dst, t[a.rawStart:a.rawEnd]...)
			continue
		}
		m.applied = true
		if m.remove {
			continue
		}
		dst = append(dst, ' ')
		dst = append(dst, t[a.name[0]:a.name[1]]...)
		dst = appendAttrValue(dst, m.value)
	}
	for i := range e.mods {
		m := &e.mods[i]
		if m.applied || m.remove {
			continue
		}
		dst = append(dst, ' ')
		dst = append(dst, m.name...)
		dst = appendAttrValue(dst, m.value)
	}
	if e.slash {
		return append(dst, " />"...)
	}
	return append(dst, '>')
}

// changesExisting reports whether a change names an attribute the tag has. When no
// selector needed the attributes, the tag is searched for the changed names first: a name
// that appears nowhere in it is no attribute's, and the attributes need no parsing.
func (e *Element) changesExisting() bool {
	t := e.tag
	if !e.parsed {
		found := false
		for i := range e.mods {
			if containsFold(t[e.nameEnd:], e.mods[i].name) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
		e.parse()
	}
	for _, a := range e.s.attrs {
		n := a.name[1] - a.name[0]
		for i := range e.mods {
			if len(e.mods[i].name) == n && bytesEqualFold(t[a.name[0]:a.name[1]], e.mods[i].name) {
				return true
			}
		}
	}
	return false
}

func appendAttrValue(dst []byte, v string) []byte {
	dst = append(dst, '=', '"')
	dst = appendEscaped(dst, v)
	return append(dst, '"')
}

// appendEscaped appends s with &, <, >, " and ' replaced by character references.
func appendEscaped(dst []byte, s string) []byte {
	i := 0
	for i < len(s) && !escTab[s[i]] {
		i++
	}
	dst = append(dst, s[:i]...)
	for ; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '"':
			dst = append(dst, "&#34;"...)
		case '\'':
			dst = append(dst, "&#39;"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// escTab marks the bytes appendEscaped replaces.
var escTab = [256]bool{'&': true, '<': true, '>': true, '"': true, '\'': true}

// containsFold reports whether b holds lower (lowercase, not empty), compared without
// ASCII case.
func containsFold(b []byte, lower string) bool {
	c0 := lower[0]
	for _, c := range [2]byte{c0, c0 &^ 0x20} {
		if c != c0 && (c0 < 'a' || c0 > 'z') {
			break // no upper case form
		}
		for off := 0; off+len(lower) <= len(b); {
			j := bytes.IndexByte(b[off:len(b)-len(lower)+1], c)
			if j < 0 {
				break
			}
			off += j
			if bytesEqualFold(b[off:off+len(lower)], lower) {
				return true
			}
			off++
		}
	}
	return false
}
