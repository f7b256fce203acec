package htmlrewrite

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// scanTag runs the tag scanner over p from index from. When the tag started in an earlier
// chunk its bytes are in s.carry; otherwise it starts at p[0]. It returns the rest of p.
func (s *Stream) scanTag(p []byte, from int) []byte {
	i := from
	// The state lives in a local while scanning and is stored back on return.
	st := s.st
	for ; i < len(p); i++ {
		c := p[i]
		switch st {
		case stLT:
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
				st = stTagName
			case c == '/':
				st = stEndLT
			case c == '!':
				st = stBang
			case c == '?':
				return s.toMode(p, i+1, mBogus)
			default:
				// "<" that starts no tag is text.
				return s.toMode(p, i, mText)
			}
		case stEndLT:
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
				st, s.end = stTagName, true
			case c == '>':
				return s.toMode(p, i+1, mText)
			default:
				return s.toMode(p, i, mBogus)
			}
		case stBang:
			if c == '-' {
				st = stBangDash
			} else {
				return s.toMode(p, i, mBogus)
			}
		case stBangDash:
			if c == '-' {
				s.dashes = 2
				return s.toMode(p, i+1, mComment)
			}
			return s.toMode(p, i, mBogus)
		case stTagName:
			for i < len(p)-1 && cls[c] == 0 {
				i++
				c = p[i]
			}
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case isSpace(c):
				st = stBeforeAttr
			}
		case stBeforeAttr:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case !isSpace(c):
				st = stAttrName
			}
		case stAttrName:
			for i < len(p)-1 && cls[c] == 0 {
				i++
				c = p[i]
			}
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case c == '=':
				st = stBeforeVal
			case isSpace(c):
				st = stAfterName
			}
		case stAfterName:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
				st = stSlash
			case c == '=':
				st = stBeforeVal
			case !isSpace(c):
				st = stAttrName
			}
		case stBeforeVal:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '"':
				st = stDQ
			case c == '\'':
				st = stSQ
			case !isSpace(c):
				st = stUnquoted
			}
		case stDQ:
			// Skip to the closing quote at once.
			j := bytes.IndexByte(p[i:], '"')
			if j < 0 {
				i = len(p) - 1
				continue
			}
			i += j
			st = stBeforeAttr
		case stSQ:
			j := bytes.IndexByte(p[i:], '\'')
			if j < 0 {
				i = len(p) - 1
				continue
			}
			i += j
			st = stBeforeAttr
		case stUnquoted:
			for i < len(p)-1 && cls[c] == 0 {
				i++
				c = p[i]
			}
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case isSpace(c):
				st = stBeforeAttr
			}
		case stSlash:
			switch {
			case c == '>':
				s.st = st
				return s.tagDone(p, i)
			case c == '/':
			case isSpace(c):
				st = stBeforeAttr
			default:
				st = stAttrName
			}
		}
	}
	// The tag goes on in the next chunk.
	s.st = st
	s.carry = append(s.carry, p...)
	if len(s.carry) > MaxTagSize {
		// Too long to be a tag worth parsing: pass it on as text.
		s.emit(s.carry)
		s.carry = s.carry[:0]
		s.mode = mText
	}
	return nil
}

// fastTag scans the start or end tag at the start of p (p[0] is "<") when it ends in p. It
// returns the index of its ">", the index just past its name (as tagName reads it), whether
// it is an end tag and whether it is written self-closing; gt is 0 when p does not start with "<" and a letter (or "</" and a letter)
// or the tag goes on past p. It makes the transitions of scanTag's states stTagName to
// stSlash, with the state held by the position in the code rather than in a variable.
func fastTag(p []byte) (gt, nameEnd int, end, slash bool) {
	n := len(p)
	i := 1
	if n < 3 {
		return 0, 0, false, false
	}
	if p[1] == '/' {
		end = true
		i = 2
	}
	if c := p[i] | 0x20; c < 'a' || c > 'z' {
		return 0, 0, false, false
	}
	// stTagName ("=" belongs to the scanned name, though not to the name tagName reads).
	for i++; ; i++ {
		for i < n && cls[p[i]] == 0 {
			i++
		}
		if i >= n {
			return 0, 0, false, false
		}
		if nameEnd == 0 {
			nameEnd = i
		}
		if c := p[i]; c == '>' {
			return i, nameEnd, end, false
		} else if c == '/' {
			goto slashState
		} else if c != '=' {
			goto beforeAttr // a space
		}
	}
beforeAttr:
	for i++; i < n && isSpace(p[i]); i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch p[i] {
	case '>':
		return i, nameEnd, end, false
	case '/':
		goto slashState
	}
attrName: // p[i] is the name's first byte, which may be "="
	for i++; i < n && cls[p[i]] == 0; i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch c := p[i]; {
	case c == '>':
		return i, nameEnd, end, false
	case c == '/':
		goto slashState
	case c == '=':
		goto beforeVal
	}
	// afterName
	for i++; i < n && isSpace(p[i]); i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch p[i] {
	case '>':
		return i, nameEnd, end, false
	case '/':
		goto slashState
	case '=':
		goto beforeVal
	}
	goto attrName
beforeVal:
	for i++; i < n && isSpace(p[i]); i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch q := p[i]; q {
	case '>':
		return i, nameEnd, end, false
	case '"', '\'':
		j := indexByte(p[i+1:], q)
		if j < 0 {
			return 0, 0, false, false
		}
		i += j + 1
		goto beforeAttr
	}
	// stUnquoted: "/" and "=" belong to the value.
	for {
		for i++; i < n && cls[p[i]] == 0; i++ {
		}
		if i >= n {
			return 0, 0, false, false
		}
		if c := p[i]; c == '>' {
			return i, nameEnd, end, false
		} else if isSpace(c) {
			goto beforeAttr
		}
	}
slashState:
	for i++; i < n && p[i] == '/'; i++ {
	}
	if i >= n {
		return 0, 0, false, false
	}
	switch c := p[i]; {
	case c == '>':
		return i, nameEnd, end, true
	case isSpace(c):
		goto beforeAttr
	}
	goto attrName
}

// indexByte is bytes.IndexByte for the short runs between the tags of a document and the
// short attribute values: it looks at the first 32 bytes itself, eight at a time in a
// word, which costs less than the call when the byte is near.
func indexByte(b []byte, c byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if len(b) > 0 && b[0] == c {
		return 0 // often: a tag right after a tag
	}
	pat := uint64(c) * ones
	i := 0
	for ; i+8 <= len(b); i += 8 {
		// x has a zero byte where b has c; the lowest bit of t marks the first of them.
		x := binary.LittleEndian.Uint64(b[i:]) ^ pat
		if t := (x - ones) &^ x & highs; t != 0 {
			return i + bits.TrailingZeros64(t)>>3
		}
		if i >= 24 {
			if j := bytes.IndexByte(b[i+8:], c); j >= 0 {
				return i + 8 + j
			}
			return -1
		}
	}
	for ; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// cls marks the bytes that change the tag scanner's state in names and unquoted values.
var cls = func() (t [256]uint8) {
	for _, c := range []byte(" \t\n\r\f>/=") {
		t[c] = 1
	}
	return t
}()

// toMode ends the scan of what turned out not to be a tag: the bytes up to p[i] are passed
// on and the stream continues in mode m with p[i:].
func (s *Stream) toMode(p []byte, i int, m uint8) []byte {
	s.emit(s.carry)
	s.carry = s.carry[:0]
	s.emit(p[:i])
	s.mode = m
	return p[i:]
}

// tagDone handles the tag ending at p[i] (">").
func (s *Stream) tagDone(p []byte, i int) []byte {
	tag := p[:i+1]
	if len(s.carry) > 0 {
		s.carry = append(s.carry, tag...)
		tag = s.carry
	}
	selfClosing := s.st == stSlash
	s.mode = mText
	if s.end {
		s.endTag(tag)
	} else {
		s.startTag(tag, selfClosing)
	}
	s.carry = s.carry[:0]
	return p[i+1:]
}

// comment passes on comment text up to and including "-->".
func (s *Stream) comment(p []byte) []byte {
	for {
		i := bytes.IndexByte(p, '>')
		if i < 0 {
			s.dashes = trailingDashes(p, s.dashes)
			s.emit(p)
			return nil
		}
		if trailingDashes(p[:i], s.dashes) >= 2 {
			s.emit(p[:i+1])
			s.mode = mText
			return p[i+1:]
		}
		s.emit(p[:i+1])
		p = p[i+1:]
		s.dashes = 0
	}
}

// trailingDashes counts the "-" ending b (up to 2), continuing prev when b is all dashes.
func trailingDashes(b []byte, prev int) int {
	n := 0
	for n < 2 && n < len(b) && b[len(b)-1-n] == '-' {
		n++
	}
	if n == len(b) {
		n += prev
	}
	return min(n, 2)
}

// raw passes on raw text up to the end tag of s.rawName, which it hands to the tag scanner.
// A possible end tag split across chunks waits in s.carry.
func (s *Stream) raw(p []byte) []byte {
	name := s.rawName
	for len(p) > 0 {
		if len(s.carry) == 0 {
			i := bytes.IndexByte(p, '<')
			if i < 0 {
				s.emit(p)
				return nil
			}
			s.emit(p[:i])
			// When the whole "</name" and the byte after it are in p, decide at once.
			if k := i + 2 + len(name); k < len(p) {
				if p[i+1] == '/' && bytesEqualFold(p[i+2:k], name) {
					if c := p[k]; isSpace(c) || c == '/' || c == '>' {
						s.carry = append(s.carry, p[i:k]...)
						s.mode, s.st, s.end = mTag, stTagName, true
						s.rawName = ""
						return p[k:]
					}
				}
				s.emit(p[i : i+1])
				p = p[i+1:]
				continue
			}
			s.carry = append(s.carry, '<')
			p = p[i+1:]
			continue
		}
		k := len(s.carry) // bytes of "</name" matched
		c := p[0]
		switch {
		case k == 1 && c == '/', k >= 2 && k < 2+len(name) && lowerByte(c) == name[k-2]:
			s.carry = append(s.carry, c)
			p = p[1:]
		case k == 2+len(name) && (isSpace(c) || c == '/' || c == '>'):
			// The end tag: scan it as a tag from here.
			s.mode, s.st, s.end = mTag, stTagName, true
			s.rawName = ""
			return p
		default:
			s.emit(s.carry)
			s.carry = s.carry[:0]
			if c != '<' {
				s.emit(p[:1])
				p = p[1:]
			}
		}
	}
	return nil
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// tagName returns the lowercase name of a tag, its flags and the index just past it.
func (s *Stream) tagName(tag []byte) (string, tagFlags, int) {
	i := 1
	if s.end {
		i = 2
	}
	j := i
	var seen uint8 // nameTab bits of the name's bytes
	for j < len(tag) {
		t := nameTab[tag[j]]
		if t&nEnd != 0 {
			break
		}
		seen |= t
		j++
	}
	raw := tag[i:j]
	if seen&nUpper != 0 {
		s.lname = s.lname[:0]
		for _, c := range raw {
			s.lname = append(s.lname, lowerByte(c))
		}
		raw = s.lname
	}
	// A direct-mapped cache of the names seen last saves the table's search.
	h := nameSlot(raw)
	if ce := &s.names[h]; ce.name != "" && ce.name == string(raw) {
		s.mask = ce.mask
		return ce.name, ce.flags, j
	}
	n, f := tagInfo(raw)
	if n == "" {
		n = string(raw)
	}
	s.mask = s.r.byTag[n]
	s.names[h] = nameCache{name: n, flags: f, mask: s.mask}
	return n, f, j
}

// nameTab classifies the bytes of a tag name: nEnd ends it (the bytes of cls), nUpper is
// an upper case ASCII letter.
var nameTab = func() (t [256]uint8) {
	for c := range 256 {
		if cls[c] != 0 {
			t[c] = nEnd
		} else if c >= 'A' && c <= 'Z' {
			t[c] = nUpper
		}
	}
	return t
}()

const (
	nEnd = 1 << iota
	nUpper
)

type nameCache struct {
	name  string
	flags tagFlags
	mask  uint64 // the compounds that name this tag
}

func nameSlot(b []byte) uint8 {
	if len(b) == 0 {
		return 0
	}
	return uint8(len(b)*31) ^ b[0]*7 ^ b[len(b)-1]
}

// candidates returns the compounds an element whose parent is top may match.
func (s *Stream) candidates() uint64 {
	r := s.r
	c := r.first
	if n := len(s.stack); n > 0 {
		top := &s.stack[n-1]
		c |= (top.matched&r.child)<<1 | (top.desc&r.desc)<<1
	}
	return c
}
